"""``benchmark db``: keyset history pages against OFFSET, batched portfolio loads against N+1.

Seeds a throwaway database (``--ticks`` rows over ``--symbols`` symbols, bulk inserts with
progress), runs ANALYZE, then measures, each as the median of ``--repeat`` runs:

- history page 1 and page 1,000 through the real selector (``trading.history.ticks_page``),
  jumping straight to page 1,000 with the token of the row before it, against plain OFFSET
  paging (``queryset[offset:offset + limit]``). Goals: page 1,000 within 2x of page 1 (Property 4,
  docs/properties.md) and at least 10x faster than OFFSET at page 1,000;
- Property 4 across growth: keyset page 1, page 1,000 and a deep page that crosses into the
  following symbols, with one page size, timed when the table holds 1/``--growth`` of its ticks and
  again when it holds them all. Goal: each deep page within 1.5x of its time across the growth.
  A page costs one read when its rows and the next page's first row are in the cursor's symbol,
  and two when that row is in a following symbol (the second read seeks the following symbols);
  each shape is compared with itself, since the seeded counts would otherwise put page 1,000 at
  the small table's very end (one read) and on a symbol boundary of the full one (two reads);
- a portfolio of ``--holdings`` positions through ``trading.selectors.portfolio_positions``
  against the naive loop (load positions, then one query per position for its latest price).
  Goal: a constant number of queries (<= 5) where the loop takes holdings + 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from benchmarks._database import database_arguments_add, throwaway_database
from benchmarks._report import Report, Row, median_database_seconds, median_seconds, ms, speedup
from trading import history, services
from trading.models import Account, Asset, Position, StockPriceHistory
from trading.units import shares_to_units

HELP = "history pages (keyset vs OFFSET) and portfolio loads (batched vs N+1) on a throwaway database"

TARGET_PAGE = 1000
QUERY_GOAL = 5
DEPTH_GOAL = 2.0
# Property 4 across table growth: page 1,000 at GROWTH times the rows within GROWTH_GOAL of its time.
GROWTH = 20
GROWTH_GOAL = 1.5
OFFSET_GOAL = 10.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ticks", type=int, default=1_000_000, help="tick rows to seed (default 1,000,000)")
    parser.add_argument(
        "--symbols", type=int, default=200, help="symbols the ticks are spread over (default 200)"
    )
    parser.add_argument("--holdings", type=int, default=200, help="positions in the portfolio (default 200)")
    parser.add_argument(
        "--page-size",
        type=int,
        default=None,
        help="rows per history page (default HISTORY_PAGE_DEFAULT, Alpaca's 1,000; lowered so page 1,000 exists)",
    )
    parser.add_argument("--repeat", type=int, default=15, help="timed runs per measurement (default 15)")
    parser.add_argument(
        "--growth",
        type=int,
        default=GROWTH,
        help=f"Property 4 across growth: pages timed at 1/N of --ticks and at all of it (default {GROWTH})",
    )
    parser.add_argument(
        "--batch-size", type=int, default=10_000, help="rows per bulk insert (default 10,000)"
    )
    database_arguments_add(parser)


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    ticks, symbol_count = int(options["ticks"]), int(options["symbols"])
    holdings = int(options["holdings"])
    if ticks < TARGET_PAGE:
        raise CommandError(f"--ticks must be at least {TARGET_PAGE} so that page {TARGET_PAGE} exists")
    if symbol_count < 1 or holdings < 1 or holdings > symbol_count:
        raise CommandError("--symbols must be >= 1 and --holdings between 1 and --symbols")
    page_size = max(1, min(int(options["page_size"] or settings.HISTORY_PAGE_DEFAULT), ticks // TARGET_PAGE))
    repeat = max(1, int(options["repeat"]))

    growth = int(options.get("growth") or GROWTH)
    with throwaway_database(name=options.get("db_name"), keep=bool(options.get("keep")), log=log) as name:
        symbols = [f"BM{index:04d}" for index in range(symbol_count)]
        full = _per_symbol(ticks, symbols)
        # Property 4 across growth: the same pages timed at 1/growth of the table, then at all of it.
        small = [count // growth for count in full]
        small_total = sum(small)
        if small_total < TARGET_PAGE:
            raise CommandError(
                f"--ticks / --growth must leave at least {TARGET_PAGE:,} ticks for page {TARGET_PAGE:,}"
            )
        growth_page_size = max(1, min(page_size, small_total // TARGET_PAGE))
        batch_size = int(options["batch_size"])
        _seed(
            symbols=symbols,
            upto=small,
            already=[0] * len(symbols),
            total=ticks,
            batch_size=batch_size,
            log=log,
        )
        _analyze()
        at_small = _keyset_times(
            symbols=symbols, counts=small, page_size=growth_page_size, repeat=repeat, log=log
        )
        _seed(symbols=symbols, upto=full, already=small, total=ticks, batch_size=batch_size, log=log)
        account = _seed_portfolio(symbols=symbols[:holdings])
        _analyze()
        report = Report(
            title=(
                f"benchmark db: {connection.vendor} ({name}), {ticks:,} ticks over {symbol_count} symbols, "
                f"{page_size} rows/page, median of {repeat} runs"
            )
        )
        _history_rows(report, symbols=symbols, page_size=page_size, repeat=repeat, log=log)
        at_full = _keyset_times(
            symbols=symbols, counts=full, page_size=growth_page_size, repeat=repeat, log=log
        )
        _growth_rows(
            report, small=at_small, full=at_full, sizes=(small_total, ticks), page_size=growth_page_size
        )
        _portfolio_rows(report, account=account, holdings=holdings, repeat=repeat, log=log)
    return report


def _analyze() -> None:
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


@dataclass(frozen=True)
class KeysetTimes:
    """Median seconds of keyset pages through the real selector, and the reads each took."""

    first: float
    deep: float
    deep_reads: int
    crossing: float | None  # None: a single symbol has nothing to cross into
    crossing_reads: int


def _cursor_token(symbol: str, seq: int) -> str:
    row = StockPriceHistory.objects.filter(symbol=symbol, seq=seq).values_list("symbol", "seq", "recorded_at")
    return history.tick_page_token(history.TickCursor(*row.get()))


def _keyset_times(
    *, symbols: list[str], counts: list[int], page_size: int, repeat: int, log: Callable[[str], None]
) -> KeysetTimes:
    """Keyset page 1, page 1,000 and a deep page crossing into the following symbols.

    The seeded ticks of symbol i are seqs 1..counts[i] and pages follow (symbol, seq), so a row's
    place in the whole request is known without reading. Page 1,000 starts after row
    999 x page_size; when that page and the next page's first row (the look-ahead that says there
    is a next page) do not fit in the cursor's symbol, the cursor moves back a few rows so that they
    do: the page then takes one read at every table size. The crossing page ends exactly at the end
    of the middle symbol's history, so its look-ahead reads the following half of the symbols.
    """
    starts = [0]
    for count in counts:
        starts.append(starts[-1] + count)

    def symbol_of(index: int) -> int:
        return next(number for number, end in enumerate(starts[1:]) if index < end)

    cursor = (TARGET_PAGE - 1) * page_size - 1
    owner = symbol_of(cursor)
    if starts[owner + 1] - cursor - 1 < page_size + 1:
        cursor = max(starts[owner], starts[owner + 1] - page_size - 2)
    deep_token = _cursor_token(symbols[owner], cursor - starts[owner] + 1)
    crossing_token = None
    middle = len(symbols) // 2 - 1
    if middle >= 0 and counts[middle] > page_size:
        crossing_token = _cursor_token(symbols[middle], counts[middle] - page_size)

    def page(token: str | None) -> Callable[[], list[history.Tick]]:
        return lambda: history.ticks_page(symbols=symbols, limit=page_size, page_token=token).items

    log(
        f"timing keyset pages 1, {TARGET_PAGE:,} and a crossing one at {page_size} rows/page ({repeat} runs each)"
    )
    first = median_seconds(page(None), repeat=repeat)
    deep = median_seconds(page(deep_token), repeat=repeat)
    crossing = None if crossing_token is None else median_seconds(page(crossing_token), repeat=repeat)
    return KeysetTimes(
        first=first,
        deep=deep,
        deep_reads=_count_queries(page(deep_token)),
        crossing=crossing,
        crossing_reads=0 if crossing_token is None else _count_queries(page(crossing_token)),
    )


def _reads(count: int) -> str:
    return f"{count} read{'' if count == 1 else 's'}"


def _growth_rows(
    report: Report,
    *,
    small: KeysetTimes,
    full: KeysetTimes,
    sizes: tuple[int, int],
    page_size: int,
) -> None:
    growth = sizes[1] / sizes[0]
    ratio = full.deep / small.deep
    report.add(
        Row(
            f"P4 keyset page {TARGET_PAGE:,} at {sizes[1]:,} vs {sizes[0]:,} ticks ({growth:.0f}x), "
            f"{page_size} rows/page, {_reads(full.deep_reads)} vs {_reads(small.deep_reads)}",
            ms(full.deep),
            ms(small.deep),
            f"{ratio:.2f}x",
            f"<= {GROWTH_GOAL}x",
            ratio <= GROWTH_GOAL,
        )
    )
    if full.crossing is not None and small.crossing is not None:
        crossing = full.crossing / small.crossing
        report.add(
            Row(
                f"P4 deep page crossing into the following symbols at {sizes[1]:,} vs {sizes[0]:,} ticks, "
                f"{_reads(full.crossing_reads)} vs {_reads(small.crossing_reads)}",
                ms(full.crossing),
                ms(small.crossing),
                f"{crossing:.2f}x",
                f"<= {GROWTH_GOAL}x",
                crossing <= GROWTH_GOAL,
            )
        )
    report.add(
        Row(
            f"  keyset page 1 at {sizes[1]:,} vs {sizes[0]:,} ticks",
            ms(full.first),
            ms(small.first),
            f"{full.first / small.first:.2f}x",
            "-",
            None,
        )
    )


# --- Seeding ----------------------------------------------------------------------------------


def _per_symbol(ticks: int, symbols: list[str]) -> list[int]:
    per_symbol, extra = divmod(ticks, len(symbols))
    return [per_symbol + (1 if index < extra else 0) for index in range(len(symbols))]


def _seed(
    *,
    symbols: list[str],
    upto: list[int],
    already: list[int],
    total: int,
    batch_size: int,
    log: Callable[[str], None],
) -> None:
    """Each symbol's ticks from seq ``already[i] + 1`` to ``upto[i]`` (assets first, when none is
    there yet); progress counts towards ``total``, the full table."""
    if not already or not any(already):
        Asset.objects.bulk_create(
            Asset(symbol=symbol, name=f"{symbol} Corp.", sector="Benchmark") for symbol in symbols
        )
    base = dt.datetime(2024, 1, 2, 14, 30, tzinfo=dt.UTC)
    step = max(total // 10, 1)
    written = sum(already)
    next_report, started, at_start = (written // step + 1) * step, time.perf_counter(), written
    batch: list[StockPriceHistory] = []

    def flush() -> None:
        with transaction.atomic():
            StockPriceHistory.objects.bulk_create(batch)
        batch.clear()

    for index, symbol in enumerate(symbols):
        for seq in range(already[index] + 1, upto[index] + 1):
            price = 1_000_000 + index * 1_000 + (seq * 7919 + index) % 2_001 - 1_000
            batch.append(
                StockPriceHistory(
                    symbol=symbol,
                    seq=seq,
                    price_units=price,
                    size=100,
                    bid_units=price - 100,
                    bid_size=300,
                    ask_units=price + 100,
                    ask_size=400,
                    recorded_at=base + dt.timedelta(seconds=2 * seq),
                )
            )
            if len(batch) >= batch_size:
                written += len(batch)
                flush()
                if written >= next_report:
                    rate = (written - at_start) / (time.perf_counter() - started)
                    log(f"  ticks: {written:,} / {total:,} ({written * 100 // total}%), {rate:,.0f} rows/s")
                    next_report += step
    if batch:
        written += len(batch)
        flush()
    log(
        f"  ticks: {written:,} / {total:,} ({written * 100 // total}%) in {time.perf_counter() - started:.1f} s"
    )


def _seed_portfolio(*, symbols: list[str]) -> Account:
    user = get_user_model().objects.create_user(username="benchmark", password=None)
    account = services.account_open(user=user)
    assets = Asset.objects.filter(symbol__in=symbols)
    Position.objects.bulk_create(
        Position(account=account, asset=asset, qty=shares_to_units(10), cost_basis_cents=100_000)
        for asset in assets
    )
    return account


# --- History pages ----------------------------------------------------------------------------


def _history_rows(
    report: Report, *, symbols: list[str], page_size: int, repeat: int, log: Callable[[str], None]
) -> None:
    offset = (TARGET_PAGE - 1) * page_size
    ordered = StockPriceHistory.objects.filter(symbol__in=symbols).order_by("symbol", "seq")
    # The row before page 1,000, read once (untimed) to build the token a client would hold.
    before = ordered.values_list("symbol", "seq", "recorded_at")[offset - 1]
    token = history.tick_page_token(history.TickCursor(*before))

    def keyset_first() -> list[history.Tick]:
        return history.ticks_page(symbols=symbols, limit=page_size).items

    def keyset_deep() -> list[history.Tick]:
        return history.ticks_page(symbols=symbols, limit=page_size, page_token=token).items

    def offset_page(start: int) -> Callable[[], list[tuple[Any, ...]]]:
        return lambda: list(ordered.values_list(*history.TICK_FIELDS)[start : start + page_size])

    deep_keyset = [(tick.symbol, tick.seq) for tick in keyset_deep()]
    deep_offset = [(row[0], row[1]) for row in offset_page(offset)()]
    if deep_keyset != deep_offset:
        raise RuntimeError("keyset page 1,000 differs from OFFSET page 1,000")

    log(f"timing history pages ({repeat} runs each)")
    keyset_1 = median_seconds(keyset_first, repeat=repeat)
    keyset_n = median_seconds(keyset_deep, repeat=repeat)
    offset_1 = median_seconds(offset_page(0), repeat=repeat)
    offset_n = median_seconds(offset_page(offset), repeat=repeat)

    report.add(
        Row(
            "history page 1: keyset vs OFFSET",
            ms(keyset_1),
            ms(offset_1),
            speedup(offset_1, keyset_1),
            "-",
            None,
        )
    )
    deep_ratio = offset_n / keyset_n
    report.add(
        Row(
            f"history page {TARGET_PAGE:,}: keyset vs OFFSET",
            ms(keyset_n),
            ms(offset_n),
            speedup(offset_n, keyset_n),
            f">= {OFFSET_GOAL:.0f}x faster",
            deep_ratio >= OFFSET_GOAL,
        )
    )
    # Context for the row above: the database's own share, without the per-row conversion to
    # Python values that both sides pay alike.
    database_n = median_database_seconds(keyset_deep, repeat=repeat)
    database_offset_n = median_database_seconds(offset_page(offset), repeat=repeat)
    report.add(
        Row(
            "  of which database time (execute)",
            ms(database_n),
            ms(database_offset_n),
            speedup(database_offset_n, database_n),
            "-",
            None,
        )
    )
    depth = keyset_n / keyset_1
    report.add(
        Row(
            f"keyset page {TARGET_PAGE:,} vs page 1 (Property 4)",
            ms(keyset_n),
            ms(keyset_1),
            f"{depth:.2f}x of page 1",
            f"<= {DEPTH_GOAL:.0f}x of page 1",
            depth <= DEPTH_GOAL,
        )
    )


# --- Portfolio --------------------------------------------------------------------------------


def _naive_portfolio(account: Account) -> list[tuple[Position, int | None]]:
    """The ordinary way: the positions, then one query per position for its latest price."""
    positions = list(Position.objects.filter(account=account).select_related("asset"))
    return [
        (
            position,
            StockPriceHistory.objects.filter(symbol=position.asset.symbol)
            .order_by("-seq")
            .values_list("price_units", flat=True)
            .first(),
        )
        for position in positions
    ]


def _count_queries(action: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured)


def _portfolio_rows(
    report: Report, *, account: Account, holdings: int, repeat: int, log: Callable[[str], None]
) -> None:
    naive = lambda: _naive_portfolio(account)  # noqa: E731
    naive_queries = _count_queries(naive)
    log(f"timing portfolio loads ({repeat} runs each)")
    naive_time = median_seconds(naive, repeat=repeat)
    try:
        # Imported late: written separately, and the benchmark must report its absence, not crash.
        from trading.selectors import portfolio_positions
    except ImportError as error:
        missing = f"unavailable ({error})"
        report.add(
            Row(
                f"portfolio of {holdings}: queries",
                missing,
                str(naive_queries),
                "-",
                f"<= {QUERY_GOAL}",
                False,
            )
        )
        report.add(Row(f"portfolio of {holdings}: time", missing, ms(naive_time), "-", "-", None))
        return

    def optimised() -> Any:
        values = portfolio_positions(account=account)
        if len(values) != holdings:
            raise RuntimeError(f"portfolio_positions returned {len(values)} positions, expected {holdings}")
        return values

    try:
        queries = _count_queries(optimised)
    except Exception as error:  # reported in the table: the other rows still stand
        failed = f"failed ({type(error).__name__}: {error})"
        report.add(
            Row(
                f"portfolio of {holdings}: queries",
                failed,
                str(naive_queries),
                "-",
                f"<= {QUERY_GOAL}",
                False,
            )
        )
        report.add(Row(f"portfolio of {holdings}: time", failed, ms(naive_time), "-", "-", None))
        return
    optimised_time = median_seconds(optimised, repeat=repeat)
    report.add(
        Row(
            f"portfolio of {holdings}: queries (batched vs N+1)",
            str(queries),
            str(naive_queries),
            f"{naive_queries / max(queries, 1):.1f}x fewer",
            f"<= {QUERY_GOAL} (constant)",
            queries <= QUERY_GOAL,
            load_free=True,
        )
    )
    report.add(
        Row(
            f"portfolio of {holdings}: time (batched vs N+1)",
            ms(optimised_time),
            ms(naive_time),
            speedup(naive_time, optimised_time),
            "-",
            None,
        )
    )
    if optimised_time > naive_time:
        report.notes.append(
            "note: portfolio_positions takes fewer queries but more time than the N+1 loop; "
            "EXPLAIN its price lookups (a subquery evaluated per stored row scans each symbol's history)."
        )
