"""Property 1: history queries by symbol and time range use the (symbol, recorded_at) index.

The plans are read from the database with EXPLAIN on the exact querysets the selectors run,
after ANALYZE over a realistic spread (20,000 ticks over 50 symbols), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from analytics.dashboard import _spark_closes
from realtime.market import unbarred_ticks
from tests.builders import add_flat_minute_bars
from trading import history
from trading.api.ops import HealthCheck
from trading.models import Asset, MinuteBar, StockPriceHistory
from trading.quotes import newest_rows, prices_at

pytestmark = [pytest.mark.django_db, pytest.mark.db_backend]

SYMBOLS = [f"P{i:03d}" for i in range(50)]
TICKS_PER_SYMBOL = 400
BASE = dt.datetime(2024, 5, 6, 13, 30, tzinfo=dt.UTC)
TICK_TABLE = StockPriceHistory._meta.db_table


def seed() -> None:
    StockPriceHistory.objects.bulk_create(
        (
            StockPriceHistory(
                symbol=symbol,
                seq=seq,
                price_units=1_000_000 + seq,
                size=100,
                bid_units=999_900 + seq,
                bid_size=300,
                ask_units=1_000_100 + seq,
                ask_size=400,
                recorded_at=BASE + dt.timedelta(seconds=2 * seq),
            )
            for symbol in SYMBOLS
            for seq in range(1, TICKS_PER_SYMBOL + 1)
        ),
        batch_size=5000,
    )
    Asset.objects.bulk_create(Asset(symbol=symbol, name=symbol, sector="Test") for symbol in SYMBOLS)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


@pytest.fixture
def analyzed(db: None) -> None:
    seed()


def plan_of(queryset: object) -> str:
    return str(queryset.explain())  # type: ignore[attr-defined]


def indexes_in(plan: str) -> list[str]:
    if connection.vendor == "sqlite":
        # A WITHOUT ROWID table's own key is "USING PRIMARY KEY" (ticks: (symbol, seq)).
        found = re.findall(r"USING (?:COVERING )?INDEX (\w+)|USING (PRIMARY KEY)", plan)
        return [index or key for index, key in found]
    return re.findall(
        r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)", plan
    )


def index_columns(name: str, table: str) -> list[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite" and name == "PRIMARY KEY":
            cursor.execute(f"PRAGMA table_info({connection.ops.quote_name(table)})")
            return [row[1] for row in sorted(cursor.fetchall(), key=lambda row: row[5]) if row[5]]
        if connection.vendor == "sqlite":
            # Introspection does not name the automatic index behind an inline UNIQUE constraint.
            cursor.execute(f"PRAGMA index_info({connection.ops.quote_name(name)})")
            return [row[2] for row in sorted(cursor.fetchall())]
        constraints = connection.introspection.get_constraints(cursor, table)
    return list(constraints[name]["columns"]) if name in constraints else []


def assert_no_full_scan(plan: str, table: str) -> None:
    if connection.vendor == "sqlite":
        # "SCAN t" reads the whole table (or a whole index); "SEARCH t" seeks.
        assert not re.search(rf"\bSCAN {table}\b", plan), plan
    else:
        assert f"Seq Scan on {table}" not in plan, plan


def assert_time_index(plan: str, *, upper_bound: bool) -> None:
    """The query plan seeks tick_symbol_time_idx on symbol and the time range: Property 1 itself."""
    assert "tick_symbol_time_idx" in indexes_in(plan), plan
    if connection.vendor == "sqlite":
        seek = "symbol=? AND recorded_at>? AND recorded_at<?" if upper_bound else "symbol=? AND recorded_at>?"
        assert f"USING INDEX tick_symbol_time_idx ({seek})" in plan, plan
    else:
        condition = re.search(r"Index Cond: (.*)", plan.split("tick_symbol_time_idx", 1)[1])
        assert condition is not None, plan
        assert "symbol" in condition.group(1) and "recorded_at >=" in condition.group(1), plan
        assert ("recorded_at <=" in condition.group(1)) == upper_bound, plan
    assert_no_full_scan(plan, TICK_TABLE)


def test_property_1_time_range_queries_seek_the_symbol_time_index(analyzed: None) -> None:
    start = BASE + dt.timedelta(seconds=300)
    end = start + dt.timedelta(seconds=60)

    one_symbol = history.ticks_query(symbols=["P007"], start=start, end=end, count=101)
    assert_time_index(plan_of(one_symbol), upper_bound=True)

    many_symbols = history.ticks_query(symbols=["P007", "P008", "P009"], start=start, end=end, count=101)
    assert_time_index(plan_of(many_symbols), upper_bound=True)

    from_start = history.ticks_query(symbols=["P007"], start=start, count=101)
    assert_time_index(plan_of(from_start), upper_bound=False)

    descending = history.ticks_query(symbols=["P007"], start=start, end=end, sort="desc", count=101)
    assert_time_index(plan_of(descending), upper_bound=True)

    # A later page of the same range resumes from the cursor's time on the same index.
    cursor = history.TickCursor("P007", 160, BASE + dt.timedelta(seconds=320))
    resumed = history.ticks_query(symbols=["P007"], start=start, end=end, after=cursor, count=101)
    assert_time_index(plan_of(resumed), upper_bound=True)


def test_property_1_the_selector_runs_the_explained_query(
    analyzed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = BASE + dt.timedelta(seconds=300)
    end = start + dt.timedelta(seconds=60)
    ran: list[str] = []
    build = history.rows_query

    def spy(*args: Any, **kwargs: Any) -> Any:
        queryset = build(*args, **kwargs)
        ran.append(str(queryset.query))
        return queryset

    monkeypatch.setattr(history, "rows_query", spy)
    page = history.ticks_page(symbols=["P007"], start=start, end=end, limit=100)
    assert [tick.seq for tick in page.items] == list(range(150, 181)) and page.next_page_token is None
    monkeypatch.undo()
    explained = history.ticks_query(symbols=["P007"], start=start, end=end, count=101)
    assert ran == [str(explained.query)]


def test_deep_pages_seek_the_symbol_seq_key(analyzed: None) -> None:
    """Property 4's mechanism: a page after a cursor starts at the cursor, whatever its depth."""
    cursor = history.TickCursor("P007", 390, BASE + dt.timedelta(seconds=780))
    for sort in ("asc", "desc"):
        plan = plan_of(history.ticks_query(symbols=["P007"], after=cursor, sort=sort, count=101))
        used = indexes_in(plan)
        assert len(used) == 1, plan
        assert index_columns(used[0], TICK_TABLE) == ["symbol", "seq"], plan
        if connection.vendor == "sqlite":
            assert f"(symbol=? AND seq{'>' if sort == 'asc' else '<'}?)" in plan, plan
        else:
            assert re.search(rf"Index Cond: .*symbol.*seq {'>' if sort == 'asc' else '<'} 390", plan), plan
        assert_no_full_scan(plan, TICK_TABLE)


def test_bar_ranges_seek_the_symbol_start_index(db: None) -> None:
    add_flat_minute_bars(SYMBOLS, start=BASE, minutes=200)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    start = BASE + dt.timedelta(minutes=50)
    queryset = history.rows_query(
        MinuteBar,
        fields=history.BAR_FIELDS,
        symbols=["P001", "P002"],
        where=Q(start__gte=start, start__lte=start + dt.timedelta(minutes=30)),
        key=("start",),
        after=None,
        descending=False,
        count=101,
    )
    plan = plan_of(queryset)
    used = indexes_in(plan)
    assert used and index_columns(used[0], MinuteBar._meta.db_table) == ["symbol", "start"], plan
    assert_no_full_scan(plan, MinuteBar._meta.db_table)


def test_latest_ticks_seek_each_symbol_instead_of_scanning_its_history(analyzed: None) -> None:
    newest = newest_rows(StockPriceHistory, symbols=["P001", "P002", "P003"], order_key="seq")
    rows = StockPriceHistory.objects.filter(newest)
    plan = plan_of(rows)
    assert_no_full_scan(plan, TICK_TABLE)
    assert any(index_columns(name, TICK_TABLE) == ["symbol", "seq"] for name in indexes_in(plan)), plan
    assert history.latest_ticks(symbols=["P001"])["P001"].seq == TICKS_PER_SYMBOL


def test_reads_across_symbols_seek_each_symbol_without_a_time_index(analyzed: None) -> None:
    """Ticks and minute bars have no index on time alone (docs/architecture.md, Storage): the
    reads that span symbols (the dashboard's sparklines, the market's recovery, /healthz) seek
    each symbol's (symbol, time) index instead of scanning the table."""
    add_flat_minute_bars(SYMBOLS, start=BASE, minutes=200)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with CaptureQueriesContext(connection) as queries:
        assert _spark_closes(set(SYMBOLS))
        assert HealthCheck(clock=lambda: BASE).run()["market"]["last_tick_at"] is not None
        unbarred_ticks(symbols=SYMBOLS)
    statements = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    reads = [sql for sql in statements if TICK_TABLE in sql or MinuteBar._meta.db_table in sql]
    assert len(reads) >= 4, statements
    for sql in reads:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # At this table's test size a window of every symbol is a sizeable share of the
                # rows, and PostgreSQL rightly prefers a scan; what this proves is that an index
                # serves each read when the table is large, so scans are priced out. Without a
                # usable index the plan is still a Seq Scan and the test fails.
                cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
            plan = "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())
        assert_no_full_scan(plan, TICK_TABLE)
        assert_no_full_scan(plan, MinuteBar._meta.db_table)


def test_prices_at_an_instant_seek_each_symbols_time_index_without_sorting_its_history(
    analyzed: None,
) -> None:
    """``prices_at`` (a game's final standings): each symbol's newest tick at or before an
    instant, ties on the time broken by seq. Each symbol's ticks are read down (symbol,
    recorded_at) from the instant: no scan of the tick table and no sort of it. PostgreSQL
    orders by the seq tiebreak within each run of equal times (an Incremental Sort presorted by
    recorded_at); SQLite needs no sort at all, its WITHOUT ROWID index ending in the key's seq."""
    at = BASE + dt.timedelta(seconds=301)
    with CaptureQueriesContext(connection) as queries:
        prices = prices_at(symbols=SYMBOLS[:5], at=at)
    assert prices == dict.fromkeys(SYMBOLS[:5], 1_000_000 + 150)
    (sql,) = [q["sql"] for q in queries.captured_queries if TICK_TABLE in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(("EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN ") + sql)
        plan = "\n".join(" ".join(str(part) for part in row) for row in cursor.fetchall())
    assert "tick_symbol_time_idx" in indexes_in(plan), plan
    assert_no_full_scan(plan, TICK_TABLE)
    if connection.vendor == "sqlite":
        assert "USING COVERING INDEX tick_symbol_time_idx (symbol=? AND recorded_at<?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        # A full Sort node reads every tick of the symbol up to the instant before its LIMIT 1.
        assert not re.search(r"(?:^|->)\s*Sort\s+\(", plan, re.MULTILINE), plan
        presorted = re.search(r"Incremental Sort.*?Presorted Key: ([^\n]*)", plan, re.DOTALL)
        assert presorted is not None and presorted.group(1).endswith("recorded_at"), plan
