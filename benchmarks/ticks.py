"""``benchmark ticks``: persisting ticks through the market's writer against plain ``bulk_create``.

The market process commits each batch window's ticks in one transaction (realtime/writer.py,
``TickWriter.write``): COPY on PostgreSQL, ``bulk_create`` elsewhere. This benchmark feeds the
same ``--rows`` ticks, in windows of ``--window-ticks`` (one transaction each), to:

- the writer, exactly as the market calls it (its write-rate limit switched off: the limit is a
  setting, not the speed of the path);
- the ordinary way: ``StockPriceHistory.objects.bulk_create`` of model instances built from the
  ticks, one ``transaction.atomic()`` per window;
- on PostgreSQL, the ceiling: psycopg's ``COPY ... FROM STDIN`` of the same rows on the same
  connection, outside Django (no ORM, no transaction wrapper), one transaction per window.

Each contender runs ``--rounds`` times, in rotating order, on an emptied table (emptying is not
timed); the table shows the median rows/s. The machine may be shared, so the ratios of one run
are the figures to trust, not the absolute rates. Run it once per backend: the configured
database decides (``DATABASE_URL=postgres://... manage.py benchmark ticks`` for PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError
from django.db import connection, transaction

from benchmarks._database import throwaway_database
from benchmarks._report import Report, Row
from benchmarks._storage import (
    COMPACT_LAYOUT,
    PLAIN_LAYOUT,
    PREVIOUS_MINUTE_BAR_RETENTION_DAYS,
    SQLITE_STEADY_STATE_GOAL_BYTES,
    TICK_ROW_GOAL_BYTES,
    Layouts,
    gigabytes,
    layouts_measure,
    previous_minute_bar_rows,
    steady_state_at_defaults,
    storage_note,
)
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from realtime.writer import TICK_COLUMNS, TickWriter, WindowBatch, ticks_bulk_create
from trading.models import StockPriceHistory

HELP = (
    "tick persistence: the market's writer vs plain bulk_create (and PostgreSQL COPY) on a throwaway database"
)

BULK_CREATE_GOAL = 0.9
COPY_GOAL = 0.7
AT_NS = 1_767_225_600 * 1_000_000_000  # 2026-01-01T00:00:00Z


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=100_000, help="ticks per measurement (default 100,000)")
    parser.add_argument(
        "--window-ticks",
        type=int,
        default=1_000,
        help="ticks per window, one transaction each (default 1,000: a busy market's 100 ms window)",
    )
    parser.add_argument(
        "--symbols", type=int, default=500, help="symbols the ticks are spread over (default 500)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs of each contender, median reported (default 3)"
    )
    parser.add_argument(
        "--storage-rows",
        type=int,
        default=100_000,
        help="ticks held at the peak of the storage run, and as many minute bars (default 100,000; 0 skips it)",
    )
    parser.add_argument(
        "--db-name", default=None, help="throwaway database (file on SQLite, name on PostgreSQL)"
    )


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    rows, per_window = int(options["rows"]), int(options["window_ticks"])
    symbols, rounds = int(options["symbols"]), int(options["rounds"])
    if rows < 1 or per_window < 1 or symbols < 1 or rounds < 1:
        raise CommandError("--rows, --window-ticks, --symbols and --rounds must be positive")
    windows = _windows(rows=rows, per_window=per_window, symbols=symbols)
    with throwaway_database(name=options.get("db_name"), log=log) as name:
        contenders: dict[str, Callable[[list[list[WireTick]]], None]] = {
            "writer": _through_writer,
            "bulk_create": _through_bulk_create,
        }
        if connection.vendor == "postgresql":
            contenders["copy"] = _through_psycopg_copy
        path = TickWriter().insert_path
        rates: dict[str, list[float]] = {name: [] for name in contenders}
        order = list(contenders)
        for number in range(rounds):
            for contender in order[number % len(order) :] + order[: number % len(order)]:
                StockPriceHistory.objects.all().delete()
                started = time.perf_counter()
                contenders[contender](windows)
                elapsed = time.perf_counter() - started
                stored = StockPriceHistory.objects.count()
                if stored != rows:
                    raise CommandError(f"{contender} stored {stored:,} of {rows:,} ticks")
                rates[contender].append(rows / elapsed)
                log(f"round {number + 1}/{rounds}: {contender}: {rows / elapsed:,.0f} rows/s")
        StockPriceHistory.objects.all().delete()
        storage_rows = int(options.get("storage_rows") or 0)
        layouts = (
            layouts_measure(tick_rows=storage_rows, bar_rows=storage_rows, symbols=symbols, log=log)
            if storage_rows > 0
            else None
        )
        report = Report(
            title=(
                f"benchmark ticks: {rows:,} ticks over {symbols} symbols in windows of {per_window:,} "
                f"(one transaction each), {connection.vendor} ({name}), median of {rounds} rounds"
            )
        )
        _rows(report, rates=rates, path=path)
        if layouts is not None:
            _storage_rows(report, layouts=layouts)
    report.notes.append(
        "rows/s per round: "
        + "; ".join(
            f"{name} " + ", ".join(f"{rate:,.0f}" for rate in values) for name, values in rates.items()
        )
        + f"; load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    return report


def _windows(*, rows: int, per_window: int, symbols: int) -> list[list[WireTick]]:
    """The ticks a market would produce: random symbols, per-symbol seq from 1, time moving on."""
    names = [f"BT{index:04d}" for index in range(symbols)]
    chooser = random.Random(39)
    seqs = dict.fromkeys(names, 0)
    windows: list[list[WireTick]] = []
    for start in range(0, rows, per_window):
        window: list[WireTick] = []
        for offset in range(min(per_window, rows - start)):
            symbol = chooser.choice(names)
            seq = seqs[symbol] = seqs[symbol] + 1
            price = 1_000_000 + (seq * 7919) % 20_000
            at_ns = AT_NS + (start + offset) * 1_000_000
            window.append(WireTick(symbol, seq, price, 100, price - 100, 300, price + 100, 400, at_ns))
        windows.append(window)
    return windows


def _through_writer(windows: list[list[WireTick]]) -> None:
    writer = TickWriter(throttle=ThrottleController(max_rows_per_s=0, max_txn_per_s=0))
    for number, ticks in enumerate(windows, start=1):
        writer.write(WindowBatch(number=number, ticks=ticks))


def _through_bulk_create(windows: list[list[WireTick]]) -> None:
    for ticks in windows:
        with transaction.atomic():
            ticks_bulk_create(ticks)


def _through_psycopg_copy(windows: list[list[WireTick]]) -> None:
    # PostgreSQL only: the driver's own COPY on Django's connection, bypassing Django entirely.
    connection.ensure_connection()
    raw = connection.connection
    statement = f"COPY {StockPriceHistory._meta.db_table} ({', '.join(TICK_COLUMNS)}) FROM STDIN"
    for ticks in windows:
        with raw.transaction(), raw.cursor() as cursor, cursor.copy(statement) as copy:
            for t in ticks:
                copy.write_row(
                    (t.symbol, t.seq, t.price, t.size, t.bid, t.bid_size, t.ask, t.ask_size,
                     t.at_ns // 1000)
                )  # fmt: skip


def _rate(value: float) -> str:
    return f"{value:,.0f} rows/s"


def _rows(report: Report, *, rates: dict[str, list[float]], path: str) -> None:
    writer = statistics.median(rates["writer"])
    bulk = statistics.median(rates["bulk_create"])
    report.add(
        Row(
            f"ticks persisted: market writer ({path}) vs plain bulk_create",
            _rate(writer),
            _rate(bulk),
            f"{writer / bulk:.2f}x",
            f">= {BULK_CREATE_GOAL}x",
            writer >= BULK_CREATE_GOAL * bulk,
        )
    )
    if "copy" in rates:
        copy = statistics.median(rates["copy"])
        report.add(
            Row(
                f"ticks persisted: market writer ({path}) vs psycopg COPY (ceiling)",
                _rate(writer),
                _rate(copy),
                f"{writer / copy:.2f}x",
                f">= {COPY_GOAL}x",
                writer >= COPY_GOAL * copy,
            )
        )


def _bytes(value: float) -> str:
    return f"{value:.1f} B"


def _storage_rows(report: Report, *, layouts: Layouts) -> None:
    tick, bar = layouts.tick, layouts.bar
    # The goals are SQLite's (the default deployment): PostgreSQL's 24-byte tuple header and
    # per-tuple index entries alone come near 100 bytes; its figures are reported.
    sqlite = connection.vendor == "sqlite"
    report.add(
        Row(
            f"tick row with its indexes: compact vs {PLAIN_LAYOUT} layout",
            _bytes(tick[COMPACT_LAYOUT].per_row),
            _bytes(tick[PLAIN_LAYOUT].per_row),
            f"{tick[COMPACT_LAYOUT].per_row / tick[PLAIN_LAYOUT].per_row:.2f}x",
            f"<= {TICK_ROW_GOAL_BYTES} B" if sqlite else "-",
            tick[COMPACT_LAYOUT].per_row <= TICK_ROW_GOAL_BYTES if sqlite else None,
            load_free=True,
        )
    )
    report.add(
        Row(
            f"minute bar row with its indexes: compact vs {PLAIN_LAYOUT} layout",
            _bytes(bar[COMPACT_LAYOUT].per_row),
            _bytes(bar[PLAIN_LAYOUT].per_row),
            f"{bar[COMPACT_LAYOUT].per_row / bar[PLAIN_LAYOUT].per_row:.2f}x",
            "-",
            None,
            load_free=True,
        )
    )
    steady = steady_state_at_defaults()
    compact, plain = steady.size(layouts, COMPACT_LAYOUT), steady.size(layouts, PLAIN_LAYOUT)
    report.add(
        Row(
            f"steady state at default retentions: compact vs {PLAIN_LAYOUT} layout",
            gigabytes(compact),
            gigabytes(plain),
            f"{compact / plain:.2f}x",
            f"<= {gigabytes(SQLITE_STEADY_STATE_GOAL_BYTES)}" if sqlite else "-",
            compact <= SQLITE_STEADY_STATE_GOAL_BYTES if sqlite else None,
            load_free=True,
        )
    )
    before = steady.size(layouts, PLAIN_LAYOUT, minute_bar_rows=previous_minute_bar_rows(steady))
    report.notes.append(storage_note(steady))
    report.notes.append(
        f"before the rework ({PLAIN_LAYOUT} layout, minute bars kept {PREVIOUS_MINUTE_BAR_RETENTION_DAYS} days): "
        f"{gigabytes(before)} at these tick retentions; compact is {compact / before:.2f}x of it"
    )
