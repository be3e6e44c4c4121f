"""Keyset history pages (Properties 3 and 37), bar aggregation, tokens, latest values, snapshots."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext, override_settings
from hypothesis import HealthCheck, event, given, settings as hsettings, strategies as st

from tests.builders import add_flat_minute_bars, tick_row
from trading import calendar, history
from trading.errors import InvalidRequest
from trading.models import Asset, DailyBar, MinuteBar, StockPriceHistory

BASE = dt.datetime(2024, 3, 4, 14, 0, tzinfo=dt.UTC)
DB_EXAMPLES = hsettings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each Hypothesis example writes its rows in a transaction that is rolled back after it."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def seed_ticks(counts: dict[str, int], *, spacing: float = 1.0) -> None:
    StockPriceHistory.objects.bulk_create(
        tick_row(symbol, seq=seq, price_units=1_000_000, at=BASE + dt.timedelta(seconds=seq * spacing))
        for symbol, count in counts.items()
        for seq in range(1, count + 1)
    )


def all_pages(fetch: Any, *, limit: int, max_pages: int = 10_000) -> list[Any]:
    items: list[Any] = []
    token = None
    for _ in range(max_pages):
        page = fetch(limit=limit, page_token=token)
        assert len(page.items) <= limit
        items += page.items
        token = page.next_page_token
        assert token != ""
        if token is None:
            return items
    raise AssertionError("pagination did not end")


# --- Property 3: page size is bounded -----------------------------------------------------------


@pytest.mark.django_db
def test_property_3_page_size_never_exceeds_limit_or_maximum() -> None:
    seed_ticks({"AAA": 25, "BBB": 25, "CCC": 25})
    add_flat_minute_bars(("AAA", "BBB"), start=BASE, minutes=40)

    @DB_EXAMPLES
    @given(
        maximum=st.integers(1, 30),
        default=st.integers(1, 30),
        limit=st.one_of(st.none(), st.integers(-5, 40), st.integers(9_990, 10_010)),
        timeframe=st.sampled_from(["1Min", "3Min", "1Hour"]),
    )
    def check(maximum: int, default: int, limit: int | None, timeframe: str) -> None:
        with override_settings(HISTORY_PAGE_MAX=maximum, HISTORY_PAGE_DEFAULT=default):
            if limit is not None and not 1 <= limit <= 10_000:
                with pytest.raises(InvalidRequest):
                    history.ticks_page(symbols=["AAA", "BBB", "CCC"], limit=limit)
                with pytest.raises(InvalidRequest):
                    history.bars_page(symbols=["AAA", "BBB"], timeframe=timeframe, limit=limit)
                return
            bound = min(default if limit is None else limit, maximum)
            ticks = history.ticks_page(symbols=["AAA", "BBB", "CCC"], limit=limit)
            bars = history.bars_page(symbols=["AAA", "BBB"], timeframe=timeframe, limit=limit)
            assert len(ticks.items) == min(bound, 75)  # full pages while rows remain
            assert len(bars.items) <= bound
            assert (ticks.next_page_token is None) == (bound >= 75)

    check()


@pytest.mark.parametrize("limit", ["0", "-1", "10001", "abc", "1.5", True])
def test_property_3_out_of_range_limits_are_rejected(limit: Any) -> None:
    with pytest.raises(InvalidRequest):
        history.page_limit(limit)


@override_settings(HISTORY_PAGE_MAX=50, HISTORY_PAGE_DEFAULT=1000)
def test_page_limit_is_clamped_to_the_configured_maximum() -> None:
    # alpaca-py always asks for 10,000 rows a page: a lower maximum shortens pages, it is no error.
    assert history.page_limit("10000") == 50
    assert history.page_limit(None) == 50
    assert history.page_limit(7) == 7


# --- Property 37: pages concatenate to the ordered set under concurrent inserts ------------------

SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.mark.django_db
def test_property_37_pages_concatenate_without_duplicates_or_gaps_while_ticks_arrive() -> None:
    @DB_EXAMPLES
    @given(
        counts=st.fixed_dictionaries({symbol: st.integers(0, 12) for symbol in SYMBOLS}),
        limit=st.integers(1, 7),
        sort=st.sampled_from(["asc", "desc"]),
        ranged=st.sampled_from(["none", "start", "start_end"]),
        # Ticks inserted after each page: (symbol, how many, same timestamp as the previous tick?).
        inserts=st.lists(
            st.lists(st.tuples(st.sampled_from(SYMBOLS), st.integers(1, 3), st.booleans()), max_size=3),
            max_size=12,
        ),
        symbols=st.lists(st.sampled_from([*SYMBOLS, "ZZZ"]), min_size=1, max_size=4, unique=True),
    )
    def check(
        counts: dict[str, int],
        limit: int,
        sort: str,
        ranged: str,
        inserts: list[list[tuple[str, int, bool]]],
        symbols: list[str],
    ) -> None:
        with rolled_back():
            stored: dict[str, list[tuple[int, dt.datetime]]] = {symbol: [] for symbol in SYMBOLS}

            def add(symbol: str, same_time: bool) -> StockPriceHistory:
                seq = len(stored[symbol]) + 1
                last = stored[symbol][-1][1] if stored[symbol] else BASE
                # Timestamps tie now and then, so the (recorded_at, seq) keyset meets ties.
                at = last if same_time else last + dt.timedelta(seconds=1)
                stored[symbol].append((seq, at))
                return tick_row(symbol, seq=seq, price_units=1_000_000, at=at)

            StockPriceHistory.objects.bulk_create(
                add(symbol, seq % 3 == 0) for symbol in SYMBOLS for seq in range(counts[symbol])
            )
            start = BASE + dt.timedelta(seconds=2) if ranged != "none" else None
            end = BASE + dt.timedelta(seconds=8) if ranged == "start_end" else None

            def in_range(at: dt.datetime) -> bool:
                return (start is None or at >= start) and (end is None or at <= end)

            descending = sort == "desc"

            def order(key: tuple[str, int]) -> tuple[str, int]:
                return (key[0], -key[1] if descending else key[1])

            expected = {
                (symbol, seq)
                for symbol in symbols
                if symbol in stored
                for seq, at in stored[symbol]
                if in_range(at)
            }
            initial = len(expected)
            seen: list[tuple[str, int]] = []
            token = None
            pending = list(inserts)
            for _ in range(1000):
                page = history.ticks_page(
                    symbols=symbols, start=start, end=end, limit=limit, page_token=token, sort=sort
                )
                assert len(page.items) <= limit
                seen += [(item.symbol, item.seq) for item in page.items]
                token = page.next_page_token
                if token is None:
                    break
                cursor = order(seen[-1])
                # Ticks written between two page fetches: those after the cursor must appear.
                for symbol, count, same_time in pending.pop(0) if pending else []:
                    rows = [add(symbol, same_time) for _ in range(count)]
                    StockPriceHistory.objects.bulk_create(rows)
                    for row in rows:
                        key = (row.symbol, row.seq)
                        if row.symbol in symbols and in_range(row.recorded_at) and order(key) > cursor:
                            expected.add(key)
            else:
                raise AssertionError("pagination did not end")

            event(f"{sort}, range={ranged}, inserted ticks that had to appear: {len(seen) > initial}")
            assert len(seen) == len(set(seen)), "a tick was returned twice"
            assert seen == sorted(expected, key=order), "pages are not the ordered set"

    check()


# --- Tokens ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_next_page_token_is_none_exactly_at_the_end() -> None:
    seed_ticks({"AAA": 5})
    whole = history.ticks_page(symbols=["AAA"], limit=5)
    assert len(whole.items) == 5 and whole.next_page_token is None
    first = history.ticks_page(symbols=["AAA"], limit=4)
    assert len(first.items) == 4 and isinstance(first.next_page_token, str) and first.next_page_token
    last = history.ticks_page(symbols=["AAA"], limit=4, page_token=first.next_page_token)
    assert [item.seq for item in last.items] == [5] and last.next_page_token is None
    assert history.ticks_page(symbols=["NONE"]).next_page_token is None


@pytest.mark.django_db
def test_tampered_or_foreign_tokens_are_rejected() -> None:
    seed_ticks({"AAA": 5})
    add_flat_minute_bars(["AAA"], start=BASE, minutes=5)
    token = history.ticks_page(symbols=["AAA"], limit=2).next_page_token
    assert token
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    payload, _, signature = token.partition(":")
    for bad in (flipped, "garbage", f"{payload[:-2]}xx:{signature}", ":", token + "x"):
        with pytest.raises(InvalidRequest, match="invalid page_token"):
            history.ticks_page(symbols=["AAA"], limit=2, page_token=bad)
    # A token only resumes the kind of query and the order it came from.
    with pytest.raises(InvalidRequest):
        history.ticks_page(symbols=["AAA"], limit=2, page_token=token, sort="desc")
    with pytest.raises(InvalidRequest):
        history.bars_page(symbols=["AAA"], timeframe="1Min", limit=2, page_token=token)
    bar_token = history.bars_page(symbols=["AAA"], timeframe="1Min", limit=2).next_page_token
    assert bar_token
    with pytest.raises(InvalidRequest):
        history.bars_page(symbols=["AAA"], timeframe="5Min", limit=2, page_token=bar_token)


@pytest.mark.parametrize("sort", ["up", "ASC ", "descending"])
def test_invalid_sort_is_rejected(sort: str) -> None:
    with pytest.raises(InvalidRequest):
        history.parse_sort(sort)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1Min", "1Min"),
        ("15T", "15Min"),
        ("59Min", "59Min"),
        ("1H", "1Hour"),
        ("23Hour", "23Hour"),
        ("1D", "1Day"),
        ("1Week", "1Week"),
        ("6M", "6Month"),
        ("12Month", "12Month"),
    ],
)
def test_timeframes_parse_as_alpaca_spells_them(text: str, expected: str) -> None:
    assert str(history.Timeframe.parse(text)) == expected


@pytest.mark.parametrize(
    "text", ["", "0Min", "60Min", "24Hour", "2Day", "2Week", "5Month", "1Sec", "Min", "1min"]
)
def test_invalid_timeframes_are_rejected(text: str) -> None:
    with pytest.raises(InvalidRequest):
        history.Timeframe.parse(text)


# --- Bar aggregation -------------------------------------------------------------------------------


def reference_bars(
    rows: list[tuple[str, dt.datetime, int, int, int, int, int, int, int]],
    *,
    seconds: int,
    start: dt.datetime | None,
    end: dt.datetime | None,
    descending: bool,
) -> list[tuple[Any, ...]]:
    """Aggregate minute bars the obvious way, for comparison."""
    buckets: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in rows:
        epoch = int(row[1].timestamp())
        buckets.setdefault((row[0], epoch - epoch % seconds), []).append(row)
    result = []
    for (symbol, bucket), members in buckets.items():
        moment = dt.datetime.fromtimestamp(bucket, dt.UTC)
        if (start is not None and moment < start) or (end is not None and moment > end):
            continue
        members.sort(key=lambda row: row[1])
        volume = sum(row[6] for row in members)
        vwap = (
            round(Fraction(sum(row[8] * row[6] for row in members), volume))
            if volume
            else round(Fraction(sum(row[8] for row in members), len(members)))
        )
        result.append(
            (
                symbol,
                moment,
                members[0][2],
                max(row[3] for row in members),
                min(row[4] for row in members),
                members[-1][5],
                volume,
                sum(row[7] for row in members),
                vwap,
            )
        )
    result.sort(key=lambda bar: (bar[0], -bar[1].timestamp() if descending else bar[1].timestamp()))
    return result


minute_rows = st.lists(
    st.tuples(
        st.sampled_from(["AAA", "BBB"]),
        st.integers(0, 240),  # minute offset
        st.integers(900_000, 1_100_000),  # open
        st.integers(0, 5_000),  # high above max(open, close)
        st.integers(0, 5_000),  # low below min(open, close)
        st.integers(900_000, 1_100_000),  # close
        st.integers(0, 5_000),  # volume (zero allowed)
        st.integers(0, 50),  # trade count
    ),
    max_size=60,
    unique_by=lambda row: (row[0], row[1]),
)


@pytest.mark.django_db
def test_aggregated_bars_match_a_plain_reference() -> None:
    @DB_EXAMPLES
    @given(
        rows=minute_rows,
        timeframe=st.one_of(
            st.integers(1, 59).map(lambda n: (f"{n}Min", n * 60)),
            st.integers(1, 5).map(lambda n: (f"{n}Hour", n * 3600)),
        ),
        limit=st.integers(1, 9),
        sort=st.sampled_from(["asc", "desc"]),
        start=st.one_of(st.none(), st.integers(0, 240)),
        span=st.one_of(st.none(), st.integers(0, 240)),
    )
    def check(
        rows: list[tuple[Any, ...]],
        timeframe: tuple[str, int],
        limit: int,
        sort: str,
        start: int | None,
        span: int | None,
    ) -> None:
        with rolled_back():
            stored = []
            for symbol, minute, open_, up, down, close, volume, count in rows:
                stored.append(
                    (
                        symbol,
                        BASE + dt.timedelta(minutes=minute),
                        open_,
                        max(open_, close) + up,
                        min(open_, close) - down,
                        close,
                        volume,
                        count,
                        (open_ + close) // 2,
                    )
                )
            MinuteBar.objects.bulk_create(
                MinuteBar(
                    symbol=row[0],
                    start=row[1],
                    open_units=row[2],
                    high_units=row[3],
                    low_units=row[4],
                    close_units=row[5],
                    volume=row[6],
                    trade_count=row[7],
                    vwap_units=row[8],
                )
                for row in stored
            )
            start_at = None if start is None else BASE + dt.timedelta(minutes=start, seconds=17)
            end_at = None if span is None else (start_at or BASE) + dt.timedelta(minutes=span)
            name, seconds = timeframe

            def fetch(limit: int, page_token: str | None) -> history.PaginatedResult[history.Bar]:
                return history.bars_page(
                    symbols=["BBB", "AAA", "NONE"],
                    timeframe=name,
                    start=start_at,
                    end=end_at,
                    limit=limit,
                    page_token=page_token,
                    sort=sort,
                )

            got = [tuple(bar) for bar in all_pages(fetch, limit=limit)]
            expected = reference_bars(
                stored, seconds=seconds, start=start_at, end=end_at, descending=sort == "desc"
            )
            assert got == expected

    check()


@pytest.mark.django_db
def test_aggregated_pages_read_minute_bars_in_chunks() -> None:
    # 3 symbols x 600 minutes: a 2-bucket page of 1Hour bars reads far fewer rows than exist.
    MinuteBar.objects.bulk_create(
        MinuteBar(
            symbol=symbol,
            start=BASE + dt.timedelta(minutes=i),
            open_units=i,
            high_units=i + 10,
            low_units=max(i - 10, 0),
            close_units=i + 1,
            volume=10,
            trade_count=1,
            vwap_units=i,
        )
        for symbol in ("AAA", "BBB", "CCC")
        for i in range(600)
    )
    with CaptureQueriesContext(connection) as queries:
        page = history.bars_page(symbols=["AAA", "BBB", "CCC"], timeframe="1Hour", limit=2)
    assert [bar.start for bar in page.items] == [BASE, BASE + dt.timedelta(hours=1)]
    assert page.items[0].volume == 600 and page.items[0].trade_count == 60
    assert page.next_page_token is not None
    assert len(queries) == 1
    assert "LIMIT 500" in queries[0]["sql"]


@pytest.mark.django_db
def test_daily_weekly_and_monthly_bars() -> None:
    days = [dt.date(2024, 1, 29) + dt.timedelta(days=i) for i in range(21)]  # Mon 29 Jan .. Sun 18 Feb
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol="AAA",
            start=calendar.day_start(day),
            open_units=100 + i,
            high_units=200 + i,
            low_units=50 - i,
            close_units=101 + i,
            volume=1,
            trade_count=1,
            vwap_units=100 + i,
        )
        for i, day in enumerate(days)
    )
    daily = history.bars_page(symbols=["AAA"], timeframe="1Day", limit=3, sort="desc")
    assert [bar.start for bar in daily.items] == [calendar.day_start(day) for day in reversed(days[-3:])]

    weeks = history.bars_page(symbols=["AAA"], timeframe="1Week").items
    assert [bar.start for bar in weeks] == [
        calendar.day_start(days[0] + dt.timedelta(days=7 * i)) for i in range(3)
    ]
    assert [(bar.open_units, bar.close_units, bar.volume) for bar in weeks] == [
        (100, 107, 7),
        (107, 114, 7),
        (114, 121, 7),
    ]

    months = history.bars_page(symbols=["AAA"], timeframe="1Month").items
    assert [bar.start for bar in months] == [
        calendar.day_start(dt.date(2024, 1, 1)),
        calendar.day_start(dt.date(2024, 2, 1)),
    ]
    assert [bar.volume for bar in months] == [3, 18]
    assert months[0].low_units == 48 and months[1].high_units == 220


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("first_day", "days", "weeks", "months"),
    [
        # Weeks start on Mondays at New York midnight, in EST before the clocks go forward on
        # Sunday 8 March and in EDT after; so do months.
        (
            dt.date(2026, 2, 23),
            21,
            ["2026-02-23T05:00:00+00:00", "2026-03-02T05:00:00+00:00", "2026-03-09T04:00:00+00:00"],
            ["2026-02-01T05:00:00+00:00", "2026-03-01T05:00:00+00:00"],
        ),
        # The clocks go back on Sunday 1 November, the first day of a month.
        (
            dt.date(2026, 10, 26),
            14,
            ["2026-10-26T04:00:00+00:00", "2026-11-02T05:00:00+00:00"],
            ["2026-10-01T04:00:00+00:00", "2026-11-01T04:00:00+00:00"],
        ),
    ],
    ids=["spring-forward", "fall-back"],
)
def test_weekly_and_monthly_bars_start_at_new_york_midnight_across_dst(
    first_day: dt.date, days: int, weeks: list[str], months: list[str]
) -> None:
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol="AAA", start=calendar.day_start(first_day + dt.timedelta(days=i)), open_units=100 + i,
            high_units=100 + i, low_units=100 + i, close_units=100 + i, volume=1, trade_count=1,
            vwap_units=100 + i,
        )
        for i in range(days)
    )  # fmt: skip

    def starts(timeframe: str) -> list[str]:
        page = history.bars_page(symbols=["AAA"], timeframe=timeframe).items
        return [bar.start.astimezone(dt.UTC).isoformat() for bar in page]

    assert starts("1Week") == weeks
    assert starts("1Month") == months
    assert sum(bar.volume for bar in history.bars_page(symbols=["AAA"], timeframe="1Week").items) == days


# --- Latest values and snapshots -----------------------------------------------------------------


def bar(model: type[MinuteBar] | type[DailyBar], symbol: str, start: dt.datetime, close: int) -> Any:
    return model(
        symbol=symbol,
        start=start,
        open_units=close - 1,
        high_units=close + 1,
        low_units=close - 2,
        close_units=close,
        volume=10,
        trade_count=2,
        vwap_units=close,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 8])
def test_latest_values_and_snapshots_take_a_constant_number_of_queries(count: int) -> None:
    symbols = [f"S{i:02d}" for i in range(count)]
    Asset.objects.bulk_create(Asset(symbol=symbol, name=symbol, sector="Test") for symbol in symbols)
    seed_ticks(dict.fromkeys(symbols, 30))
    MinuteBar.objects.bulk_create(
        bar(MinuteBar, symbol, BASE + dt.timedelta(minutes=i), 1000 + i)
        for symbol in symbols
        for i in range(10)
    )
    DailyBar.objects.bulk_create(
        bar(DailyBar, symbol, BASE + dt.timedelta(days=i), 5000 + i) for symbol in symbols for i in range(4)
    )
    wanted = [*symbols, "UNKNOWN"]
    with CaptureQueriesContext(connection) as queries:
        trades = history.latest_ticks(symbols=wanted)
    assert len(queries) == 1
    assert sorted(trades) == symbols and {t.seq for t in trades.values()} == {30}
    with CaptureQueriesContext(connection) as queries:
        bars = history.latest_bars(symbols=wanted)
    assert len(queries) == 1
    assert {b.close_units for b in bars.values()} == {1009}
    with CaptureQueriesContext(connection) as queries:
        found = history.snapshots(symbols=wanted)
    assert len(queries) == 2  # the newest ticks (Redis has none), the bars
    assert sorted(found) == symbols
    snapshot = found[symbols[0]]
    assert snapshot.latest_tick is not None and snapshot.latest_tick.seq == 30
    assert snapshot.minute_bar is not None and snapshot.minute_bar.close_units == 1009
    assert snapshot.daily_bar is not None and snapshot.daily_bar.close_units == 5003
    assert snapshot.prev_daily_bar is not None and snapshot.prev_daily_bar.close_units == 5002


@pytest.mark.django_db
def test_snapshot_of_a_symbol_with_one_daily_bar_has_no_previous_bar() -> None:
    Asset.objects.create(symbol="ONE", name="One", sector="Test")
    bar(DailyBar, "ONE", BASE, 700).save()
    found = history.snapshots(symbols=["ONE"])
    assert found["ONE"].daily_bar is not None and found["ONE"].prev_daily_bar is None
    assert found["ONE"].latest_tick is None and found["ONE"].minute_bar is None
