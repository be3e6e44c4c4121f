"""Bar rollup against a plain reference: OHLC, volume, trade count and exact vwap per minute/day."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from realtime.bars import MINUTE_NS, BarRoller, current_bar_starts, divide_half_even
from realtime.wire import WireTick
from tests.conftest import NEW_YORK, new_york

BASE_NS = 1_764_000_000 * 1_000_000_000  # a whole minute: 2025-11-24 16:00 UTC


def _ns(moment: dt.datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000


# Where a run of windows (at most 40 x 40 s) starts: mid-day, and a quarter of an hour before a New
# York midnight, a month's end (already May in UTC), and both DST changes, so days roll over in it.
BASES_NS = [
    BASE_NS,
    _ns(new_york(2026, 3, 4, 23, 45)),
    _ns(new_york(2026, 4, 30, 23, 45)),
    _ns(new_york(2026, 3, 8, 1, 45)),  # 02:00 EST becomes 03:00 EDT
    _ns(new_york(2026, 11, 1, 1, 45)),  # 02:00 EDT becomes 01:00 EST
]

windows_strategy = st.lists(
    st.tuples(
        st.integers(1, 40_000_000_000),  # gap to the previous window, ns (up to 40 s)
        st.lists(
            st.tuples(st.sampled_from(["AAA", "BBB", "CCC"]), st.integers(1, 5_000), st.integers(1, 900)),
            max_size=5,
        ),
    ),
    min_size=1,
    max_size=40,
)


def reference_bar(ticks: list[WireTick]) -> tuple[int, int, int, int, int, int, int]:
    prices = [t.price for t in ticks]
    volume = sum(t.size for t in ticks)
    vwap = Fraction(sum(t.price * t.size for t in ticks), volume)
    # Round half to even, written independently of the code under test.
    rounded = round(vwap)
    return prices[0], max(prices), min(prices), prices[-1], volume, len(ticks), rounded


@given(windows=windows_strategy, base=st.sampled_from(BASES_NS))
def test_minute_and_daily_bars_match_a_plain_rollup(windows: list, base: int) -> None:
    roller = BarRoller()
    seqs: dict[str, int] = {}
    at = base
    all_ticks: list[WireTick] = []
    minute_rows: dict[tuple[str, dt.datetime], tuple] = {}
    daily_rows: dict[tuple[str, dt.datetime], tuple] = {}
    wire_kinds: list[tuple[str, str, int]] = []
    for gap, trades in windows:
        at += gap
        ticks = []
        for symbol, price, size in trades:
            seqs[symbol] = seqs.get(symbol, 0) + 1
            ticks.append(
                WireTick(
                    symbol, seqs[symbol], price * 100, size, price * 100, 100, price * 100 + 100, 100, at
                )
            )
        all_ticks += ticks
        rollup = roller.roll(ticks, now_ns=at)
        for row in rollup.minute_rows:
            minute_rows[(row.symbol, row.start)] = (
                row.open_units, row.high_units, row.low_units, row.close_units,
                row.volume, row.trade_count, row.vwap_units,
            )  # fmt: skip
        for daily in rollup.daily_rows:
            daily_rows[(daily.symbol, daily.start)] = (
                daily.open_units, daily.high_units, daily.low_units, daily.close_units,
                daily.volume, daily.trade_count, daily.vwap_units,
            )  # fmt: skip
        wire_kinds += [(b.kind, b.symbol, b.start_ns) for b in rollup.wire]
        # Every symbol that traded this window gets an updated minute bar and a daily bar.
        for symbol in {t.symbol for t in ticks}:
            assert ("u", symbol, at - at % MINUTE_NS) in wire_kinds
            assert any(kind == "d" and s == symbol for kind, s, _ in wire_kinds[-len(rollup.wire) :])
    # The plain reference: group by (symbol, minute) and (symbol, New York date), written
    # independently of the calendar module.
    by_minute: dict[tuple[str, dt.datetime], list[WireTick]] = {}
    by_day: dict[tuple[str, dt.datetime], list[WireTick]] = {}
    for tick in all_ticks:
        minute = dt.datetime.fromtimestamp((tick.at_ns - tick.at_ns % MINUTE_NS) / 1e9, tz=dt.UTC)
        by_minute.setdefault((tick.symbol, minute), []).append(tick)
        day = dt.datetime.combine(tick.at.astimezone(NEW_YORK).date(), dt.time(), tzinfo=NEW_YORK)
        by_day.setdefault((tick.symbol, day), []).append(tick)
    assert minute_rows == {key: reference_bar(ticks) for key, ticks in by_minute.items()}
    assert daily_rows == {key: reference_bar(ticks) for key, ticks in by_day.items()}
    # Each minute closes ("b") at most once, and only after its minute is over.
    closed = [(s, start) for kind, s, start in wire_kinds if kind == "b"]
    assert len(closed) == len(set(closed))
    for _symbol, start in closed:
        assert start + MINUTE_NS <= at


def test_a_minute_closes_when_it_is_over_even_without_a_new_trade() -> None:
    roller = BarRoller()
    tick = WireTick("AAA", 1, 1_000_000, 100, 999_900, 100, 1_000_100, 100, BASE_NS + 5 * 10**9)
    first = roller.roll([tick], now_ns=tick.at_ns)
    assert [b.kind for b in first.wire] == ["u", "d"]
    quiet = roller.roll([], now_ns=BASE_NS + 30 * 10**9)
    assert quiet.wire == [] and quiet.minute_rows == []
    later = roller.roll([], now_ns=BASE_NS + MINUTE_NS + 10**8)
    assert [(b.kind, b.symbol, b.volume) for b in later.wire] == [("b", "AAA", 100)]
    assert roller.forming_minute("AAA") is None


def test_resume_continues_stored_bars() -> None:
    roller = BarRoller()
    tick = WireTick("AAA", 1, 1_000_000, 100, 999_900, 100, 1_000_100, 100, BASE_NS + 10**9)
    rollup = roller.roll([tick], now_ns=tick.at_ns)
    resumed = BarRoller()
    resumed.resume(minute_bars=rollup.minute_rows, daily_bars=rollup.daily_rows)
    second = WireTick("AAA", 2, 1_010_000, 300, 1_009_900, 100, 1_010_100, 100, BASE_NS + 2 * 10**9)
    bars = {b.kind: b for b in resumed.roll([second], now_ns=second.at_ns).wire}
    assert (bars["u"].open, bars["u"].high, bars["u"].close, bars["u"].volume) == (
        1_000_000,
        1_010_000,
        1_010_000,
        400,
    )
    assert bars["u"].trade_count == 2 and bars["d"].trade_count == 2
    assert bars["u"].vwap == 1_007_500


def _tick(seq: int, at: dt.datetime, price: int = 1_000_000) -> WireTick:
    return WireTick("AAA", seq, price, 100, price - 100, 100, price + 100, 100, _ns(at))


@pytest.mark.parametrize(
    ("first", "second", "same_day"),
    [
        (new_york(2026, 3, 4, 23, 59, 59), new_york(2026, 3, 5, 0, 0, 1), False),
        (new_york(2026, 4, 30, 23, 59, 59), new_york(2026, 5, 1, 0, 0, 1), False),
        (new_york(2026, 4, 30, 20, 30), new_york(2026, 4, 30, 23, 59, 59), True),  # May 1st in UTC
        # Across the spring-forward gap and through the repeated hour: one day each.
        (new_york(2026, 3, 8, 1, 59, 59), new_york(2026, 3, 8, 3, 0, 1), True),
        (new_york(2026, 11, 1, 1, 30), new_york(2026, 11, 1, 1, 30, fold=1), True),
        (new_york(2026, 3, 8, 23, 59, 59), new_york(2026, 3, 9, 0, 0, 1), False),
        (new_york(2026, 11, 1, 23, 59, 59), new_york(2026, 11, 2, 0, 0, 1), False),
    ],
)
def test_daily_bars_turn_over_at_new_york_midnight(
    first: dt.datetime, second: dt.datetime, same_day: bool
) -> None:
    roller = BarRoller()
    one = roller.roll([_tick(1, first, 1_000_000)], now_ns=_ns(first)).daily_rows
    two = roller.roll([_tick(2, second, 1_100_000)], now_ns=_ns(second)).daily_rows
    first_day = new_york(*first.astimezone(NEW_YORK).timetuple()[:3])
    second_day = new_york(*second.astimezone(NEW_YORK).timetuple()[:3])
    assert [(row.start, row.open_units, row.close_units, row.volume) for row in one] == [
        (first_day, 1_000_000, 1_000_000, 100)
    ]
    if same_day:
        assert [(row.start, row.open_units, row.close_units, row.volume) for row in two] == [
            (first_day, 1_000_000, 1_100_000, 200)
        ]
    else:
        assert [(row.start, row.open_units, row.close_units, row.volume) for row in two] == [
            (second_day, 1_100_000, 1_100_000, 100)
        ]


def test_a_resumed_daily_bar_ends_at_its_own_new_york_midnight() -> None:
    """After a restart the market resumes the day's stored bar; the first tick after that day's
    New York midnight starts the next day's bar instead of growing the old one."""
    before = new_york(2026, 3, 7, 23, 59, 50)  # the night the clocks go forward
    stored = BarRoller().roll([_tick(1, before)], now_ns=_ns(before)).daily_rows
    assert current_bar_starts(before)[1] == stored[0].start == new_york(2026, 3, 7)
    resumed = BarRoller()
    resumed.resume(minute_bars=[], daily_bars=stored)
    after = new_york(2026, 3, 8, 0, 0, 10)
    (row,) = resumed.roll([_tick(2, after, 1_050_000)], now_ns=_ns(after)).daily_rows
    assert (row.start, row.open_units, row.volume) == (new_york(2026, 3, 8), 1_050_000, 100)
    assert current_bar_starts(after)[1] == row.start


@given(numerator=st.integers(0, 10**15), denominator=st.integers(1, 10**9))
def test_divide_half_even(numerator: int, denominator: int) -> None:
    assert divide_half_even(numerator, denominator) == round(Fraction(numerator, denominator))
