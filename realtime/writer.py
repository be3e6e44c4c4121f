"""The tick writer: each window's ticks and bars committed in one transaction, under the throttle.

Persist, then publish (DESIGN.md 5a): nothing of a window is published or used for a fill until
the transaction holding it has committed, so whatever anyone saw is stored. The producer hands
windows over through a bounded queue; when the database falls behind, ``put`` blocks and the
simulator slows down instead of dropping windows (Property 9).

Ticks go in by the backend's fastest path: COPY on PostgreSQL, one prepared INSERT run over every
row (executemany) on SQLite, bulk_create elsewhere; bars are upserted with bulk_create.
``manage.py benchmark ticks`` measures the path against plain bulk_create (and COPY).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction

from realtime.bars import BAR_UPDATE_FIELDS, BarRollup
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from trading.models import DailyBar, MinuteBar, StockPriceHistory

logger = logging.getLogger(__name__)

TICK_COLUMNS = (
    "symbol", "seq", "price_units", "size", "bid_units", "bid_size", "ask_units", "ask_size", "recorded_at",
)  # fmt: skip
PATH_COPY = "copy"
PATH_EXECUTEMANY = "executemany"
PATH_BULK_CREATE = "bulk_create"


@dataclass
class WindowBatch:
    """One window on its way to the database and then to subscribers."""

    number: int
    ticks: list[WireTick]
    bars: BarRollup = field(default_factory=BarRollup)
    statuses: dict[str, str] = field(default_factory=dict)
    produced_at: float = field(default_factory=time.monotonic)

    @property
    def rows(self) -> int:
        return len(self.ticks) + len(self.bars.minute_rows) + len(self.bars.daily_rows)


def recorded_at(at_ns: int) -> dt.datetime:
    seconds, rest = divmod(at_ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=rest // 1000)


class TickWriter:
    def __init__(self, *, throttle: ThrottleController | None = None) -> None:
        self.throttle = throttle or ThrottleController()
        self.last_path = ""
        self.rows_written = 0
        self.windows_written = 0

    @property
    def insert_path(self) -> str:
        """How ticks are inserted on this connection's backend."""
        if connection.vendor == "postgresql":
            return PATH_COPY
        if connection.vendor == "sqlite":
            return PATH_EXECUTEMANY
        return PATH_BULK_CREATE

    def write(self, batch: WindowBatch) -> None:
        """Commit the window's ticks and bar upserts in one transaction (nothing when it is empty)."""
        if not batch.rows:
            return
        self.throttle.acquire(rows=batch.rows)
        path = self.insert_path
        with transaction.atomic():
            if batch.ticks:
                if path == PATH_COPY:
                    self._copy_ticks(batch.ticks)
                elif path == PATH_EXECUTEMANY:
                    self._insert_ticks(batch.ticks)
                else:
                    ticks_bulk_create(batch.ticks)
            self._upsert(MinuteBar, batch.bars.minute_rows)
            self._upsert(DailyBar, batch.bars.daily_rows)
        self.last_path = path
        self.rows_written += batch.rows
        self.windows_written += 1

    @staticmethod
    def _insert_ticks(ticks: Sequence[WireTick]) -> None:
        # SQLite: one INSERT statement prepared once and run for every row (executemany), the
        # values adapted exactly as Django adapts them for this backend. bulk_create spends about
        # 80% of its time building model instances and preparing each field of each row in Python
        # (measured: ``benchmark ticks``); the database's own work is the same.
        table = connection.ops.quote_name(StockPriceHistory._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(column) for column in TICK_COLUMNS)
        statement = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(TICK_COLUMNS))})"
        adapt_datetime = connection.ops.adapt_datetimefield_value
        with connection.cursor() as cursor:
            cursor.executemany(
                statement,
                [
                    (t.symbol, t.seq, t.price, t.size, t.bid, t.bid_size, t.ask, t.ask_size,
                     adapt_datetime(recorded_at(t.at_ns)))
                    for t in ticks
                ],
            )  # fmt: skip

    @staticmethod
    def _copy_ticks(ticks: Sequence[WireTick]) -> None:
        # PostgreSQL only: COPY FROM STDIN (psycopg 3) streams rows without per-row SQL, about
        # three times bulk_create's throughput; it runs inside the surrounding transaction, so a
        # duplicate (symbol, seq) still rolls back the whole window.
        table = StockPriceHistory._meta.db_table
        statement = f"COPY {table} ({', '.join(TICK_COLUMNS)}) FROM STDIN"
        # COPY bypasses Django's execute wrappers: translate driver errors (a duplicate key is
        # IntegrityError) as every other query's are.
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(statement) as copy:
            for t in ticks:
                copy.write_row(
                    (t.symbol, t.seq, t.price, t.size, t.bid, t.bid_size, t.ask, t.ask_size,
                     recorded_at(t.at_ns))
                )  # fmt: skip

    @staticmethod
    def _upsert(model: type[MinuteBar] | type[DailyBar], rows: list[MinuteBar] | list[DailyBar]) -> None:
        if rows:
            model.objects.bulk_create(
                rows,  # type: ignore[arg-type]
                update_conflicts=True,
                unique_fields=["symbol", "start"],
                update_fields=BAR_UPDATE_FIELDS,
            )


class TickPipeline:
    """A writer thread fed through a bounded queue; ``on_committed`` runs after each commit.

    ``put`` blocks while the queue is full: backpressure, never a drop. ``close`` flushes every
    queued window before returning.
    """

    _STOP = None

    def __init__(
        self,
        *,
        writer: TickWriter,
        on_committed: Callable[[WindowBatch], None],
        max_windows: int | None = None,
    ) -> None:
        self.writer = writer
        self.on_committed = on_committed
        self.max_windows = settings.MARKET_QUEUE_MAX_WINDOWS if max_windows is None else max_windows
        self._queue: queue.Queue[WindowBatch | None] = queue.Queue(maxsize=self.max_windows)
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self.error: BaseException | None = None
        self.blocked_s = 0.0
        self.max_depth = 0
        self.last_lag_s = 0.0
        self.windows_committed = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def put(self, batch: WindowBatch) -> None:
        started = time.monotonic()
        while True:
            if self.error is not None:
                raise RuntimeError("tick writer failed") from self.error
            try:
                self._queue.put(batch, timeout=0.5)
                break
            except queue.Full:
                continue
        self.blocked_s += time.monotonic() - started
        self.max_depth = max(self.max_depth, self._queue.qsize())

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(self._STOP)
            self._thread.join(timeout)
        if self.error is not None:
            raise RuntimeError("tick writer failed") from self.error

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                self.writer.write(batch)
                self.last_lag_s = time.monotonic() - batch.produced_at
                self.windows_committed += 1
                self.on_committed(batch)
        except BaseException as error:
            logger.exception("tick writer stopped")
            self.error = error
        finally:
            connection.close()


def ticks_bulk_create(ticks: Sequence[WireTick]) -> None:
    """Django's plain ``bulk_create``: the path for backends without a faster one, and the
    baseline ``benchmark ticks`` measures the others against."""
    StockPriceHistory.objects.bulk_create(
        [
            StockPriceHistory(
                symbol=t.symbol,
                seq=t.seq,
                price_units=t.price,
                size=t.size,
                bid_units=t.bid,
                bid_size=t.bid_size,
                ask_units=t.ask,
                ask_size=t.ask_size,
                recorded_at=recorded_at(t.at_ns),
            )
            for t in ticks
        ]
    )
