"""Storage figures of ``benchmark ticks``: bytes per tick and minute-bar row with their indexes, and
the database's steady-state size at the default retentions, against the layout before.

``PLAIN_LAYOUT`` is the layout the tables had before the storage rework (docs/architecture.md,
Storage): times as ``DateTimeField``, ticks keyed by a row id and indexed on (symbol, seq),
(symbol, recorded_at) and recorded_at alone, minute bars on (symbol, start) and start. It is built beside the real tables
(same columns otherwise, its own table and index names) from the models' own migration state, so
both layouts come from one run on one database.

Each layout goes through the same life: a retention window's rows are written, then the window
turns over once (the oldest hour deleted, the next hour written, until every row is new), as the
hourly cleanup and the market do, and the size is taken at the peak (the window plus the hour
the cleanup leaves). The real tables are written by the market's writer and emptied by the real
retention rule; the plain ones by the same rows and a delete along their time index. Size is
what the database holds for the table: on SQLite the pages of the table and its indexes plus the
free pages the churn left in the file (``dbstat``, ``freelist_count``), on PostgreSQL
``pg_total_relation_size`` with autovacuum run as its default thresholds would (``Autovacuum``).
Keys are aged a year first (``MARKET_AGE_DAYS``).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, models, transaction
from django.db.migrations.state import ModelState, ProjectState

from config.retention import RETENTION_RULES
from jobs.retention import retention_cleanup_rule
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from realtime.writer import TickWriter, WindowBatch, recorded_at
from trading.models import MinuteBar, StockPriceHistory
from trading.units import UNITS_PER_CENT
from trading.universe import sp500, starting_price_units

PLAIN_LAYOUT = "plain"
COMPACT_LAYOUT = "compact"
PLAIN_PREFIX = "benchmark_plain_"
TICK_ROW_GOAL_BYTES = 100
SQLITE_STEADY_STATE_GOAL_BYTES = 4 * 10**9
# Minute bars before the rework were kept 90 days: the plain layout at those retentions is the
# "before" of the whole database.
PREVIOUS_MINUTE_BAR_RETENTION_DAYS = 90
HOUR_NS = 3600 * 10**9
MINUTE = dt.timedelta(minutes=1)
AT_NS = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
WINDOW_TICKS = 1_000
# Keys grow for ever (the primary key, each symbol's seq) and SQLite stores an integer in as few
# bytes as its value needs: rows are measured with the magnitudes a year of the default market
# gives them, not those of a fresh table.
MARKET_AGE_DAYS = 365
# Simulated retention windows: ticks 24 hours of rows/25 each (plus the hour before cleanup), bars
# 20 "days" (a day here is bar_rows/21/symbols minutes) plus one.
TICK_HOURS = 24
BAR_DAYS = 20


@dataclass(frozen=True)
class Measured:
    rows: int
    size: int

    @property
    def per_row(self) -> float:
        return self.size / self.rows


@dataclass(frozen=True)
class Layouts:
    """Bytes per row by layout: ticks and minute bars."""

    tick: dict[str, Measured]
    bar: dict[str, Measured]


def _plain_models() -> tuple[type[models.Model], type[models.Model]]:
    """The previous layout of both tables, as unregistered models with their own names."""
    state = ProjectState()
    for model, time_field, extra_index in (
        (StockPriceHistory, "recorded_at", "tick_time_idx"),
        (MinuteBar, "start", "minute_bar_start_idx"),
    ):
        current = ModelState.from_model(model)
        fields = dict(current.fields)
        fields[time_field] = models.DateTimeField()
        constraints = [
            models.UniqueConstraint(fields=list(constraint.fields), name=f"{PLAIN_PREFIX}{constraint.name}")
            for constraint in current.options.get("constraints", [])
            if isinstance(constraint, models.UniqueConstraint)
        ]
        if "pk" in fields:
            # Ticks are keyed by (symbol, seq) now; before, by a row id with (symbol, seq) unique.
            del fields["pk"]
            fields = {"id": models.BigAutoField(primary_key=True, serialize=False), **fields}
            constraints.append(
                models.UniqueConstraint(
                    fields=["symbol", "seq"], name=f"{PLAIN_PREFIX}tick_symbol_seq_unique"
                )
            )
        indexes = [
            models.Index(fields=list(index.fields), name=f"{PLAIN_PREFIX}{index.name}")
            for index in current.options.get("indexes", [])
            if index.name != extra_index
        ]
        indexes.append(models.Index(fields=[time_field], name=f"{PLAIN_PREFIX}{extra_index}"))
        state.add_model(
            ModelState(
                app_label="benchmarks",
                name=f"Plain{model.__name__}",
                fields=list(fields.items()),
                options={
                    "db_table": f"{PLAIN_PREFIX}{model._meta.db_table}",
                    "indexes": indexes,
                    "constraints": constraints,
                },
            )
        )
    return (
        state.apps.get_model("benchmarks", "PlainStockPriceHistory"),
        state.apps.get_model("benchmarks", "PlainMinuteBar"),
    )


def _tables_of(model: type[models.Model]) -> list[str]:
    """The table and every index of it (SQLite: sqlite_master names, automatic indexes included)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE tbl_name = %s", [model._meta.db_table])
        return [row[0] for row in cursor.fetchall()]


def _freelist_bytes() -> int:
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA freelist_count")
        free = int(cursor.fetchone()[0])
        cursor.execute("PRAGMA page_size")
        return free * int(cursor.fetchone()[0])


def _size(model: type[models.Model], *, free_before: int) -> int:
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_total_relation_size(%s)", [connection.ops.quote_name(table)])
            return int(cursor.fetchone()[0])
        names = _tables_of(model)
        cursor.execute(
            f"SELECT SUM(pgsize) FROM dbstat WHERE name IN ({', '.join(['%s'] * len(names))})", names
        )
        used = int(cursor.fetchone()[0] or 0)
    return used + max(0, _freelist_bytes() - free_before)


class Autovacuum:
    """PostgreSQL's autovacuum at its configured thresholds, run at once when one is crossed: a
    table is vacuumed after ``threshold + scale_factor x live rows`` rows died, and only then can
    new rows reuse their space. Nothing on SQLite, whose free pages are reused at once."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        self.dead = 0
        self.threshold, self.scale = 0, 0.0
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('autovacuum_vacuum_threshold')::int, "
                    "current_setting('autovacuum_vacuum_scale_factor')::float"
                )
                self.threshold, self.scale = cursor.fetchone()

    def deleted(self, rows: int) -> None:
        if connection.vendor != "postgresql":
            return
        self.dead += rows
        if self.dead > self.threshold + self.scale * self.model._default_manager.count():
            with connection.cursor() as cursor:
                cursor.execute(f"VACUUM {connection.ops.quote_name(self.model._meta.db_table)}")
            self.dead = 0


def _compact_file(model: type[models.Model]) -> int:
    """Start ``model``'s (empty) table with no space held: free pages back to the file system on
    SQLite, and on PostgreSQL the dead rows of earlier runs (the writer's rounds) dropped, which
    a plain DELETE leaves in the table until a vacuum. Returns the free bytes already in the file."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {connection.ops.quote_name(model._meta.db_table)}")
            return 0
        cursor.execute("VACUUM")
    return _freelist_bytes()


# --- Ticks ----------------------------------------------------------------------------------------


def _age_keys(model: type[models.Model], *, rows_so_far: int) -> None:
    """Start the table's row id where ``rows_so_far`` rows would have left it (nothing for a table
    without one: the ticks' (symbol, seq) key is aged through the seqs written)."""
    if not isinstance(model._meta.pk, models.AutoField):
        return
    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, rows_so_far])
        else:
            cursor.execute("DELETE FROM sqlite_sequence WHERE name = %s", [table])
            cursor.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)", [table, rows_so_far])


def _hour_of_ticks(
    *, hour: int, rows: int, names: Sequence[str], seqs: dict[str, int], chooser: random.Random
) -> list[WireTick]:
    """Ticks as the market makes them: the universe's prices ($10 to $900), spreads of one to
    four cents a side, sizes in round and odd lots."""
    ticks = []
    for offset in range(rows):
        symbol = chooser.choice(names)
        seq = seqs[symbol] = seqs[symbol] + 1
        price = starting_price_units(symbol) + chooser.randrange(-50, 51) * UNITS_PER_CENT
        half_spread = chooser.randint(1, 4) * UNITS_PER_CENT
        at_ns = AT_NS + hour * HOUR_NS + offset * (HOUR_NS // rows)
        ticks.append(
            WireTick(
                symbol, seq, price, chooser.randint(1, 500), price - half_spread, chooser.randint(1, 10) * 100,
                price + half_spread, chooser.randint(1, 10) * 100, at_ns,
            )
        )  # fmt: skip
    return ticks


def _write_plain_ticks(model: type[models.Model], ticks: Sequence[WireTick]) -> None:
    model._default_manager.bulk_create(
        [
            model(
                symbol=t.symbol, seq=t.seq, price_units=t.price, size=t.size, bid_units=t.bid,
                bid_size=t.bid_size, ask_units=t.ask, ask_size=t.ask_size, recorded_at=recorded_at(t.at_ns),
            )
            for t in ticks
        ],
        batch_size=WINDOW_TICKS,
    )  # fmt: skip


def _tick_life(
    *, layout: str, plain: type[models.Model], rows: int, symbols: int, log: Callable[[str], None]
) -> Measured:
    per_hour = max(1, rows // (TICK_HOURS + 1))
    names = [f"ST{index:04d}" for index in range(symbols)]
    steady = steady_state_at_defaults()
    aged = round(steady.ticks_per_s * MARKET_AGE_DAYS * 86_400)
    seqs = dict.fromkeys(names, aged // steady.symbols)
    _age_keys(StockPriceHistory if layout == COMPACT_LAYOUT else plain, rows_so_far=aged)
    chooser = random.Random(14)
    writer = TickWriter(throttle=ThrottleController(max_rows_per_s=0, max_txn_per_s=0))
    rule = RETENTION_RULES["ticks"]
    free_before = _compact_file(StockPriceHistory if layout == COMPACT_LAYOUT else plain)
    autovacuum = Autovacuum(StockPriceHistory if layout == COMPACT_LAYOUT else plain)
    number = 0

    def write(hour: int) -> None:
        nonlocal number
        ticks = _hour_of_ticks(hour=hour, rows=per_hour, names=names, seqs=seqs, chooser=chooser)
        for start in range(0, len(ticks), WINDOW_TICKS):
            window = ticks[start : start + WINDOW_TICKS]
            if layout == COMPACT_LAYOUT:
                number += 1
                writer.write(WindowBatch(number=number, ticks=window))
            else:
                with transaction.atomic():
                    _write_plain_ticks(plain, window)

    def expire(hour: int) -> None:
        # Everything before the end of ``hour`` has aged out.
        cutoff = dt.datetime.fromtimestamp((AT_NS + (hour + 1) * HOUR_NS) / 10**9, tz=dt.UTC)
        if layout == COMPACT_LAYOUT:
            retention = rule.retention()
            assert retention is not None
            autovacuum.deleted(retention_cleanup_rule(rule=rule, now=cutoff + retention))
        else:
            autovacuum.deleted(plain._default_manager.filter(recorded_at__lt=cutoff).delete()[0])

    for hour in range(TICK_HOURS + 1):
        write(hour)
    for hour in range(TICK_HOURS + 1):
        expire(hour)
        write(TICK_HOURS + 1 + hour)
    model = StockPriceHistory if layout == COMPACT_LAYOUT else plain
    stored = model._default_manager.count()
    if stored != per_hour * (TICK_HOURS + 1):
        raise RuntimeError(
            f"{layout} ticks: {stored:,} rows at the peak, expected {per_hour * (TICK_HOURS + 1):,}"
        )
    measured = Measured(rows=stored, size=_size(model, free_before=free_before))
    log(
        f"storage: {layout} ticks: {measured.size:,} bytes for {stored:,} rows ({measured.per_row:.1f} B/row)"
    )
    model._default_manager.all().delete()
    return measured


# --- Minute bars ----------------------------------------------------------------------------------


def _minute_of_bars(model: type[models.Model], *, minute: int, names: Sequence[str]) -> list[models.Model]:
    start = dt.datetime.fromtimestamp(AT_NS / 10**9, tz=dt.UTC) + minute * MINUTE
    bars = []
    for index, symbol in enumerate(names):
        price = starting_price_units(symbol) + ((minute * 7919 + index) % 101 - 50) * UNITS_PER_CENT
        bars.append(
            model(
                symbol=symbol, start=start, open_units=price, high_units=price + 3 * UNITS_PER_CENT, low_units=price - 2 * UNITS_PER_CENT,
                close_units=price + 100, volume=100 * (1 + (minute + index) % 2_000), trade_count=1 + (minute + index) % 60,
                vwap_units=price + (minute + index) % 100,
            )
        )  # fmt: skip
    return bars


def _bar_life(
    *, layout: str, plain: type[models.Model], rows: int, symbols: int, log: Callable[[str], None]
) -> Measured:
    model = MinuteBar if layout == COMPACT_LAYOUT else plain
    minutes_per_day = max(1, rows // ((BAR_DAYS + 1) * symbols))
    names = [f"SB{index:04d}" for index in range(symbols)]
    steady = steady_state_at_defaults()
    _age_keys(model, rows_so_far=steady.symbols * 1440 * MARKET_AGE_DAYS)
    free_before = _compact_file(model)
    autovacuum = Autovacuum(model)

    def write(day: int) -> None:
        for minute in range(day * minutes_per_day, (day + 1) * minutes_per_day):
            with transaction.atomic():
                model._default_manager.bulk_create(_minute_of_bars(model, minute=minute, names=names))

    def expire(day: int) -> None:
        cutoff = dt.datetime.fromtimestamp(AT_NS / 10**9, tz=dt.UTC) + (day + 1) * minutes_per_day * MINUTE
        autovacuum.deleted(model._default_manager.filter(start__lt=cutoff).delete()[0])

    for day in range(BAR_DAYS + 1):
        write(day)
    for day in range(BAR_DAYS + 1):
        expire(day)
        write(BAR_DAYS + 1 + day)
    stored = model._default_manager.count()
    measured = Measured(rows=stored, size=_size(model, free_before=free_before))
    log(
        f"storage: {layout} minute bars: {measured.size:,} bytes for {stored:,} rows ({measured.per_row:.1f} B/row)"
    )
    model._default_manager.all().delete()
    return measured


# --- Both -------------------------------------------------------------------------------------------


def layouts_measure(*, tick_rows: int, bar_rows: int, symbols: int, log: Callable[[str], None]) -> Layouts:
    """Bytes per row of both layouts of both tables, on the current (throwaway) database."""
    plain_tick, plain_bar = _plain_models()
    with connection.schema_editor() as editor:
        editor.create_model(plain_tick)
        editor.create_model(plain_bar)
    try:
        tick = {
            layout: _tick_life(layout=layout, plain=plain_tick, rows=tick_rows, symbols=symbols, log=log)
            for layout in (PLAIN_LAYOUT, COMPACT_LAYOUT)
        }
        bar = {
            layout: _bar_life(layout=layout, plain=plain_bar, rows=bar_rows, symbols=symbols, log=log)
            for layout in (PLAIN_LAYOUT, COMPACT_LAYOUT)
        }
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(plain_tick)
            editor.delete_model(plain_bar)
    return Layouts(tick=tick, bar=bar)


@dataclass(frozen=True)
class SteadyState:
    """Rows held at the default retentions, at the peak before the hourly cleanup."""

    symbols: int
    ticks_per_s: float
    tick_rows: int
    minute_bar_rows: int
    daily_bar_rows: int

    def size(self, layouts: Layouts, layout: str, *, minute_bar_rows: int | None = None) -> float:
        bars = self.minute_bar_rows if minute_bar_rows is None else minute_bar_rows
        # Daily bars keep the plain layout (DateTimeField, no time index: the plain minute bar's
        # bytes overstate them slightly).
        return (
            self.tick_rows * layouts.tick[layout].per_row
            + bars * layouts.bar[layout].per_row
            + self.daily_bar_rows * layouts.bar[PLAIN_LAYOUT].per_row
        )


def steady_state_at_defaults() -> SteadyState:
    """The default market (every symbol trading once per MARKET_TICK_INTERVAL_S, around the clock)
    held for the default retentions, each table an hour past it (cleanup runs hourly), and a
    year of daily bars (252 sessions; they are kept for ever)."""
    symbols = settings.MARKET_SYMBOLS or len(sp500())
    ticks_per_s = symbols / settings.MARKET_TICK_INTERVAL_S
    return SteadyState(
        symbols=symbols,
        ticks_per_s=ticks_per_s,
        tick_rows=round(ticks_per_s * (settings.TICK_RETENTION_HOURS + 1) * 3600),
        minute_bar_rows=symbols * (settings.MINUTE_BAR_RETENTION_DAYS * 1440 + 60),
        daily_bar_rows=symbols * 252,
    )


def previous_minute_bar_rows(steady: SteadyState) -> int:
    return steady.symbols * (PREVIOUS_MINUTE_BAR_RETENTION_DAYS * 1440 + 60)


def gigabytes(value: float) -> str:
    return f"{value / 10**9:.2f} GB"


def storage_note(steady: SteadyState) -> str:
    return (
        f"steady state at defaults: {steady.symbols} symbols at {steady.ticks_per_s:,.1f} ticks/s, "
        f"{steady.tick_rows:,} ticks ({settings.TICK_RETENTION_HOURS} h + the hour before cleanup), "
        f"{steady.minute_bar_rows:,} minute bars ({settings.MINUTE_BAR_RETENTION_DAYS} days + an hour), "
        f"{steady.daily_bar_rows:,} daily bars (a year); the other tables (accounts, orders) are not counted"
    )
