"""Bar rollup on Alpaca's cadence, with injected timestamps: a minute bar goes out once, closed,
when its minute is over; the daily bar goes out with it and aggregates the day's closed minutes;
nothing is sent for a forming minute and no updated bar is ever sent. Checked against a plain
reference, at minute boundaries, across New York midnight and across both DST changes."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from zoneinfo import ZoneInfo

from hypothesis import given, strategies as st

from realtime.bars import MINUTE_NS, BarRoller, BarRollup, divide_half_even
from realtime.streams import BARS, DAILY_BARS, window_events
from realtime.wire import Window, WireBar, WireTick
from trading import calendar
from trading.models import BarFields

NEW_YORK = ZoneInfo("America/New_York")
SECOND = 1_000_000_000
BASE_NS = 1_764_000_000 * SECOND  # a whole minute: 2025-11-24 16:00 UTC, 11:00 in New York


def ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * SECOND + moment.microsecond * 1000


def at_new_york(year: int, month: int, day: int, hour: int, minute: int, second: float = 0) -> int:
    whole = dt.datetime(year, month, day, hour, minute, int(second), tzinfo=NEW_YORK)
    return ns(whole) + round((second % 1) * SECOND)


def tick(symbol: str, seq: int, price: int, at_ns: int, size: int = 100) -> WireTick:
    return WireTick(symbol, seq, price, size, price - 100, 300, price + 100, 400, at_ns)


def kinds(rollup: BarRollup) -> list[tuple[str, str, int]]:
    return [(bar.kind, bar.symbol, bar.start_ns) for bar in rollup.wire]


def ohlcv(bar: WireBar | BarFields) -> tuple[int, ...]:
    if isinstance(bar, WireBar):
        return (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count, bar.vwap)
    return (
        bar.open_units, bar.high_units, bar.low_units, bar.close_units,
        bar.volume, bar.trade_count, bar.vwap_units,
    )  # fmt: skip


def reference_bar(ticks: list[WireTick]) -> tuple[int, ...]:
    prices = [t.price for t in ticks]
    volume = sum(t.size for t in ticks)
    # Round half to even, written independently of the code under test.
    vwap = round(Fraction(sum(t.price * t.size for t in ticks), volume))
    return prices[0], max(prices), min(prices), prices[-1], volume, len(ticks), vwap


def minute_of(at_ns: int) -> int:
    return at_ns - at_ns % MINUTE_NS


def day_start_ns(at_ns: int) -> int:
    moment = dt.datetime.fromtimestamp(at_ns // SECOND, tz=dt.UTC)
    return ns(calendar.day_start(calendar.trading_day_of(moment)))


# Starts just before New York midnight on ordinary days and on both DST days of 2025, so the
# windows below cross day boundaries of 24, 23 and 25 hours.
STARTS = [
    BASE_NS,
    at_new_york(2025, 11, 24, 23, 50),
    at_new_york(2025, 3, 8, 23, 55),  # the next day is 23 hours long
    at_new_york(2025, 3, 9, 23, 55),
    at_new_york(2025, 11, 1, 23, 55),  # the next day is 25 hours long
    at_new_york(2025, 11, 2, 23, 55),
]

windows_strategy = st.lists(
    st.tuples(
        st.integers(1, 90 * SECOND),  # gap to the previous window
        st.lists(
            st.tuples(st.sampled_from(["AAA", "BBB", "CCC"]), st.integers(1, 5_000), st.integers(1, 900)),
            max_size=5,
        ),
    ),
    min_size=1,
    max_size=40,
)


@given(start=st.sampled_from(STARTS), windows=windows_strategy)
def test_bars_go_out_closed_once_and_match_a_plain_rollup(start: int, windows: list) -> None:
    roller = BarRoller()
    seqs: dict[str, int] = {}
    at = start
    all_ticks: list[WireTick] = []
    minute_rows: dict[tuple[str, int], tuple[int, ...]] = {}
    daily_rows: dict[tuple[str, int], tuple[int, ...]] = {}
    sent_minutes: list[tuple[str, int]] = []

    def absorb(rollup: BarRollup, now: int) -> None:
        closed = {bar.symbol for bar in rollup.wire if bar.kind == "b"}
        for bar in rollup.wire:
            assert bar.kind in ("b", "d")  # never a forming ("u") bar
            if bar.kind == "b":
                # Closed only once its minute is over, stamped with the minute's start.
                assert bar.start_ns + MINUTE_NS <= now and bar.start_ns % MINUTE_NS == 0
                sent_minutes.append((bar.symbol, bar.start_ns))
            else:
                # A daily bar goes out with its symbol's closed minute, and holds exactly the
                # day's ticks before this window's minute mark: the day's closed minutes.
                assert bar.symbol in closed
                held = [
                    t for t in all_ticks
                    if t.symbol == bar.symbol and day_start_ns(t.at_ns) == bar.start_ns
                    and minute_of(t.at_ns) < minute_of(now)
                ]  # fmt: skip
                assert ohlcv(bar) == reference_bar(held)
        for row in rollup.minute_rows:
            minute_rows[(row.symbol, ns(row.start))] = ohlcv(row)
        for daily in rollup.daily_rows:
            daily_rows[(daily.symbol, ns(daily.start))] = ohlcv(daily)

    for gap, trades in windows:
        at += gap
        ticks = []
        for symbol, price, size in trades:
            seqs[symbol] = seqs.get(symbol, 0) + 1
            ticks.append(tick(symbol, seqs[symbol], price * 100, at, size))
        all_ticks += ticks
        absorb(roller.roll(ticks, now_ns=at), at)
    # A quiet window after the last minute closes everything still forming.
    end = minute_of(at) + MINUTE_NS
    absorb(roller.roll([], now_ns=end), end)

    by_minute: dict[tuple[str, int], list[WireTick]] = {}
    by_day: dict[tuple[str, int], list[WireTick]] = {}
    for t in all_ticks:
        by_minute.setdefault((t.symbol, minute_of(t.at_ns)), []).append(t)
        by_day.setdefault((t.symbol, day_start_ns(t.at_ns)), []).append(t)
    assert minute_rows == {key: reference_bar(ticks) for key, ticks in by_minute.items()}
    assert daily_rows == {key: reference_bar(ticks) for key, ticks in by_day.items()}
    assert sorted(sent_minutes) == sorted(by_minute)  # each minute sent exactly once


def test_nothing_goes_out_while_a_minute_forms_and_it_closes_without_a_new_trade() -> None:
    roller = BarRoller()
    first = roller.roll([tick("AAA", 1, 1_000_000, BASE_NS + 5 * SECOND)], now_ns=BASE_NS + 5 * SECOND)
    second = roller.roll([tick("AAA", 2, 1_010_000, BASE_NS + 40 * SECOND)], now_ns=BASE_NS + 40 * SECOND)
    quiet = roller.roll([], now_ns=BASE_NS + 59 * SECOND)
    assert first.wire == second.wire == quiet.wire == []
    assert not (first.minute_rows or first.daily_rows or second.minute_rows or quiet.daily_rows)
    assert roller.forming_minute("AAA") is not None

    closing = roller.roll([], now_ns=BASE_NS + MINUTE_NS + 10**8)
    assert kinds(closing) == [("b", "AAA", BASE_NS), ("d", "AAA", day_start_ns(BASE_NS))]
    minute, day = closing.wire
    assert ohlcv(minute) == ohlcv(day) == (1_000_000, 1_010_000, 1_000_000, 1_010_000, 200, 2, 1_005_000)
    assert [row.start for row in closing.minute_rows] == [
        dt.datetime.fromtimestamp(BASE_NS // SECOND, dt.UTC)
    ]
    assert roller.forming_minute("AAA") is None
    # Later windows of the next minute send nothing more for it.
    assert roller.roll([], now_ns=BASE_NS + MINUTE_NS + 30 * SECOND).wire == []


def test_a_window_straddling_a_minute_boundary() -> None:
    """The window stamped 10:59:59.95 holds its ticks in that minute; the next one, stamped after
    the boundary, closes the minute with exactly those ticks and starts the next with its own."""
    roller = BarRoller()
    before, after = BASE_NS + MINUTE_NS - 5 * 10**7, BASE_NS + MINUTE_NS + 5 * 10**7
    assert roller.roll([tick("AAA", 1, 1_000_000, before)], now_ns=before).wire == []
    closing = roller.roll([tick("AAA", 2, 2_000_000, after), tick("BBB", 1, 3_000_000, after)], now_ns=after)
    assert kinds(closing) == [("b", "AAA", BASE_NS), ("d", "AAA", day_start_ns(BASE_NS))]
    assert closing.wire[0].close == closing.wire[0].high == 1_000_000 and closing.wire[0].volume == 100
    assert roller.forming_minute("AAA").open == 2_000_000  # type: ignore[union-attr]
    assert roller.forming_minute("BBB").start_ns == BASE_NS + MINUTE_NS  # type: ignore[union-attr]


def test_a_tick_stamped_before_a_closed_minute_counts_in_the_open_one() -> None:
    """No trade is ever late here, so a closed bar never changes: a tick stamped into a minute
    already sent (a clock stepping back) goes to the first minute still open, and no updated bar
    goes out."""
    roller = BarRoller()
    roller.roll([tick("AAA", 1, 1_000_000, BASE_NS + 30 * SECOND)], now_ns=BASE_NS + 30 * SECOND)
    closing = roller.roll([], now_ns=BASE_NS + MINUTE_NS)
    assert kinds(closing)[0] == ("b", "AAA", BASE_NS)
    late = roller.roll(
        [tick("AAA", 2, 1_020_000, BASE_NS + 59 * SECOND)], now_ns=BASE_NS + MINUTE_NS + SECOND
    )
    assert late.wire == [] and late.minute_rows == []
    forming = roller.forming_minute("AAA")
    assert forming is not None and (forming.start_ns, forming.close) == (BASE_NS + MINUTE_NS, 1_020_000)
    later = roller.roll([], now_ns=BASE_NS + 2 * MINUTE_NS)
    assert kinds(later) == [("b", "AAA", BASE_NS + MINUTE_NS), ("d", "AAA", day_start_ns(BASE_NS))]
    assert later.wire[1].volume == 200


def test_the_day_turns_at_new_york_midnight() -> None:
    roller = BarRoller()
    last_minute = at_new_york(2025, 11, 24, 23, 59)
    roller.roll([tick("AAA", 1, 1_000_000, last_minute + 30 * SECOND)], now_ns=last_minute + 30 * SECOND)
    midnight = at_new_york(2025, 11, 25, 0, 0)
    turn = roller.roll([tick("AAA", 2, 1_100_000, midnight + SECOND)], now_ns=midnight + SECOND)
    # The last minute of Monday closes with Monday's final daily bar, stamped 05:00 UTC (EST).
    assert kinds(turn) == [
        ("b", "AAA", last_minute),
        ("d", "AAA", ns(dt.datetime(2025, 11, 24, 5, tzinfo=dt.UTC))),
    ]
    assert turn.wire[1].close == 1_000_000
    assert turn.daily_rows[0].start == dt.datetime(2025, 11, 24, 5, tzinfo=dt.UTC)
    # Tuesday's daily bar starts with Tuesday's first closed minute.
    tuesday = roller.roll([], now_ns=midnight + MINUTE_NS)
    assert kinds(tuesday) == [("b", "AAA", midnight), ("d", "AAA", midnight)]
    assert ohlcv(tuesday.wire[1])[:5] == (1_100_000, 1_100_000, 1_100_000, 1_100_000, 100)


def test_days_of_23_and_25_hours_at_the_dst_changes() -> None:
    for day, utc_start, utc_end in (
        (
            dt.date(2025, 3, 9),
            dt.datetime(2025, 3, 9, 5, tzinfo=dt.UTC),
            dt.datetime(2025, 3, 10, 4, tzinfo=dt.UTC),
        ),
        (
            dt.date(2025, 11, 2),
            dt.datetime(2025, 11, 2, 4, tzinfo=dt.UTC),
            dt.datetime(2025, 11, 3, 5, tzinfo=dt.UTC),
        ),
    ):
        roller = BarRoller()
        first, last = ns(utc_start), ns(utc_end) - MINUTE_NS
        roller.roll([tick("AAA", 1, 1_000_000, first)], now_ns=first)
        roller.roll([tick("AAA", 2, 1_200_000, last)], now_ns=last)  # closes the day's first minute
        turn = roller.roll([tick("AAA", 3, 1_300_000, ns(utc_end))], now_ns=ns(utc_end))
        days = [bar for bar in turn.wire if bar.kind == "d"]
        assert [bar.start_ns for bar in days] == [first], day
        assert ohlcv(days[0])[:6] == (1_000_000, 1_200_000, 1_000_000, 1_200_000, 200, 2), day
        assert calendar.trading_day_of(utc_end - dt.timedelta(microseconds=1)) == day
        nxt = roller.roll([], now_ns=ns(utc_end) + MINUTE_NS)
        assert [bar.start_ns for bar in nxt.wire if bar.kind == "d"] == [ns(utc_end)], day


def test_resume_continues_the_stored_day_and_the_unbarred_ticks() -> None:
    roller = BarRoller()
    roller.roll([tick("AAA", 1, 1_000_000, BASE_NS + SECOND)], now_ns=BASE_NS + SECOND)
    stored = roller.roll([], now_ns=BASE_NS + MINUTE_NS).daily_rows  # the day as stored at 16:01
    # Ticks of 16:01 were stored, then the process stopped before 16:02 closed them.
    unbarred = [
        tick("AAA", 2, 1_010_000, BASE_NS + MINUTE_NS + SECOND, size=300),
        tick("BBB", 1, 2_000_000, BASE_NS + MINUTE_NS + 2 * SECOND),
    ]
    resumed = BarRoller()
    resumed.resume(daily_bars=stored, ticks=unbarred)
    assert resumed.knows("AAA") and resumed.knows("BBB") and not resumed.knows("CCC")
    third = tick("AAA", 3, 1_020_000, BASE_NS + 2 * MINUTE_NS + SECOND)
    rollup = resumed.roll([third], now_ns=third.at_ns)
    bars = {(bar.kind, bar.symbol): bar for bar in rollup.wire}
    assert set(bars) == {("b", "AAA"), ("d", "AAA"), ("b", "BBB"), ("d", "BBB")}
    assert bars["b", "AAA"].start_ns == BASE_NS + MINUTE_NS and bars["b", "AAA"].volume == 300
    day = bars["d", "AAA"]
    assert (day.open, day.high, day.close, day.volume, day.trade_count) == (
        1_000_000,
        1_010_000,
        1_010_000,
        400,
        2,
    )
    assert day.vwap == 1_007_500
    # A symbol already rolled is not overwritten by a later resume.
    resumed.resume(daily_bars=[], ticks=[tick("AAA", 9, 9_000_000, BASE_NS + 2 * MINUTE_NS)])
    assert resumed.forming_minute("AAA").close == 1_020_000  # type: ignore[union-attr]


def test_window_events_send_closed_bars_stamped_with_their_minute_and_day() -> None:
    roller = BarRoller()
    roller.roll([tick("AAA", 1, 1_000_000, BASE_NS + SECOND)], now_ns=BASE_NS + SECOND)
    after = tick("AAA", 2, 1_010_000, BASE_NS + MINUTE_NS + SECOND)
    rollup = roller.roll([after], now_ns=after.at_ns)
    events = window_events(Window(number=1, ticks=[after], bars=rollup.wire), status_at_ns=after.at_ns)["AAA"]
    bars = [(channel, message["T"], message["t"]) for channel, message in events if message["T"] in "bud"]
    assert bars == [(BARS, "b", BASE_NS), (DAILY_BARS, "d", day_start_ns(BASE_NS))]
    assert events[0][1]["T"] == "t" and events[0][1]["t"] == after.at_ns


@given(numerator=st.integers(0, 10**15), denominator=st.integers(1, 10**9))
def test_divide_half_even(numerator: int, denominator: int) -> None:
    assert divide_half_even(numerator, denominator) == round(Fraction(numerator, denominator))
