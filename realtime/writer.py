"""The tick writer: each window's ticks and bars committed in one transaction, under the throttle.

Persist, then publish (docs/architecture.md, Ticks to disk): nothing of a window is published or
used for a fill until the transaction holding it has committed, so whatever anyone saw is stored.
The producer hands windows over through a bounded queue; when the database falls behind, ``put``
blocks and the simulator slows down instead of dropping windows. When the database cannot be reached
the same holds: the writer retries the window it holds until it is stored, the queue fills and the
simulator waits; the market resumes by itself once the database answers.

Ticks go in by the backend's fastest path: COPY on PostgreSQL, one prepared INSERT run over every
row (executemany) on SQLite, bulk_create elsewhere; bars are upserted with bulk_create.
``manage.py benchmark ticks`` measures the path against plain bulk_create (and COPY).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, IntegrityError, InterfaceError, OperationalError, connection, transaction

from config.backoff import backoff_delay
from realtime.bars import BAR_UPDATE_FIELDS, BarRollup
from realtime.metrics import market_database_outage, market_throttle_waited, market_window_committed
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from trading.fields import datetime_from_micros
from trading.models import DailyBar, MinuteBar, StockPriceHistory

logger = logging.getLogger(__name__)

TICK_COLUMNS = (
    "symbol", "seq", "price_units", "size", "bid_units", "bid_size", "ask_units", "ask_size", "recorded_at",
)  # fmt: skip
PATH_COPY = "copy"
PATH_EXECUTEMANY = "executemany"
PATH_BULK_CREATE = "bulk_create"

# Errors that mean the database cannot be reached right now (stopped, restarting, connection
# lost, locked), as opposed to a write it refuses: a window failing with one is retried.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# Retry delays after a failed write: 0.1, 0.2, 0.4 ... 2 s, so the market resumes within about
# 2 s of the database's return; a refused connection every 2 s costs nothing.
WRITE_RETRY_BASE_S = 0.1
WRITE_RETRY_CAP_S = 2.0


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
    """A tick's time as stored: whole microseconds, the rest of the nanoseconds dropped."""
    return datetime_from_micros(at_ns // 1000)


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
        market_throttle_waited(self.throttle.acquire(rows=batch.rows))
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
        # recorded_at is integer microseconds (trading/fields.py): no datetime on the way.
        with connection.cursor() as cursor:
            cursor.executemany(
                statement,
                [
                    (t.symbol, t.seq, t.price, t.size, t.bid, t.bid_size, t.ask, t.ask_size,
                     t.at_ns // 1000)
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
                     t.at_ns // 1000)
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

    A database that cannot be reached (stopped, restarting, connection lost) stops nothing: the
    writer keeps the window it holds and tries it again with capped exponential backoff, on a new
    connection, while the queue holds the windows after it; once the queue is full the simulator
    waits in ``put``. Windows are stored in order, each once, so per-symbol seqs stay contiguous,
    and nothing is published or filled before its commit. An outage is logged when it starts and
    when it ends (with its duration) and counted in ``outages``. Any other error (a bug, bad data)
    still stops the writer and makes the next ``put`` raise.
    """

    _STOP = None

    def __init__(
        self,
        *,
        writer: TickWriter,
        on_committed: Callable[[WindowBatch], None],
        max_windows: int | None = None,
        retry_base_s: float = WRITE_RETRY_BASE_S,
        retry_cap_s: float = WRITE_RETRY_CAP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.writer = writer
        self.on_committed = on_committed
        self.max_windows = settings.MARKET_QUEUE_MAX_WINDOWS if max_windows is None else max_windows
        self.retry_base_s = retry_base_s
        self.retry_cap_s = retry_cap_s
        self._clock = clock
        self._queue: queue.Queue[WindowBatch | None] = queue.Queue(maxsize=self.max_windows)
        self._thread = threading.Thread(target=self._run, name="tick-writer", daemon=True)
        self._stopping = threading.Event()
        self.error: BaseException | None = None
        self.blocked_s = 0.0
        self.max_depth = 0
        self.last_lag_s = 0.0
        self.windows_committed = 0
        # Database outages seen by the writer: how many, their total length once over, when the
        # current one began (None: none now), and the failed attempts in all of them.
        self.outages = 0
        self.outage_total_s = 0.0
        self.outage_since: float | None = None
        self.failed_attempts = 0
        # Windows given up when the process stopped during an outage (never published).
        self._gave_up = False
        self.windows_abandoned = 0

    def start(self) -> None:
        self._thread.start()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def outage_s(self) -> float:
        """How long the current outage has lasted (0 when there is none)."""
        since = self.outage_since
        return 0.0 if since is None else self._clock() - since

    def put(self, batch: WindowBatch) -> bool:
        """Queue the window, waiting while the queue is full. False when the window was not
        queued because the process is stopping while the database is unavailable."""
        started = time.monotonic()
        while True:
            if self.error is not None:
                raise RuntimeError("tick writer failed") from self.error
            if self._gave_up:
                return False
            try:
                self._queue.put(batch, timeout=0.5)
                break
            except queue.Full:
                if self._stopping.is_set() and (self.outage_since is not None or not self._thread.is_alive()):
                    return False
        self.blocked_s += time.monotonic() - started
        self.max_depth = max(self.max_depth, self._queue.qsize())
        # The writer may have given up while this window went in: nobody will store it.
        return not self._gave_up

    def request_stop(self) -> None:
        """The process is stopping: during an outage, stop waiting for the database (one more
        attempt, then the unstored windows are given up). Safe to call from a signal handler."""
        self._stopping.set()

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, then stop the writer thread (during an outage: see
        ``request_stop``)."""
        self._stopping.set()
        while self._thread.is_alive():
            try:
                self._queue.put(self._STOP, timeout=0.5)
                break
            except queue.Full:
                continue
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.error is not None:
            raise RuntimeError("tick writer failed") from self.error

    def _run(self) -> None:
        try:
            while True:
                batch = self._queue.get()
                if batch is None:
                    return
                if not self._store(batch):
                    self._abandon(batch)
                    return
                self.last_lag_s = time.monotonic() - batch.produced_at
                self.windows_committed += 1
                market_window_committed(rows=batch.rows, lag_s=self.last_lag_s, queue_depth=self.depth)
                self.on_committed(batch)
        except BaseException as error:
            logger.exception("tick writer stopped")
            self.error = error
        finally:
            connection.close()

    def _store(self, batch: WindowBatch) -> bool:
        """Commit the window, retrying while the database is unavailable. False when the process
        is stopping and the database still does not answer."""
        failures = 0
        while True:
            # Stopping: one more attempt after a failure, then the window is given up.
            last_chance = failures > 0 and self._stopping.is_set()
            try:
                self._attempt(batch, retrying=failures > 0)
            except DATABASE_UNAVAILABLE as error:
                # What a failed attempt leaves (a COPY cut off half way, a transaction the server
                # already dropped, a dead socket) goes with its connection; Django opens a new one
                # for the next attempt.
                with contextlib.suppress(DatabaseError):
                    connection.close()
                failures += 1
                self.failed_attempts += 1
                if self.outage_since is None:
                    self._outage_begins(batch, error)
                if last_chance:
                    return False
                self._stopping.wait(
                    backoff_delay(failures=failures, base_s=self.retry_base_s, cap_s=self.retry_cap_s)
                )
                continue
            if self.outage_since is not None:
                self._outage_ends(batch)
            return True

    def _attempt(self, batch: WindowBatch, *, retrying: bool) -> None:
        """One try at storing the window. A retry first checks whether an earlier attempt was
        committed after all (the commit reached the server, its answer was lost with the
        connection): the window's first tick is stored exactly when the whole window is."""
        if retrying and self._stored_already(batch):
            logger.warning(
                "tick writer: window %d was committed before its connection was lost; not writing it again",
                batch.number,
            )
            return
        try:
            self.writer.write(batch)
        except IntegrityError:
            # A retry can also run into that earlier commit while the server is still finishing
            # it; the (symbol, seq) key then refuses the second copy.
            if not retrying or not self._stored_already(batch):
                raise
            logger.warning("tick writer: window %d was already committed; not writing it again", batch.number)

    @staticmethod
    def _stored_already(batch: WindowBatch) -> bool:
        if not batch.ticks:
            return False  # bars only: upserting the same bars again changes nothing
        first = batch.ticks[0]
        return StockPriceHistory.objects.filter(symbol=first.symbol, seq=first.seq).exists()

    def _outage_begins(self, batch: WindowBatch, error: BaseException) -> None:
        self.outage_since = self._clock()
        self.outages += 1
        market_database_outage(begins=True)
        logger.warning(
            "tick writer: database unavailable (%s: %s); holding window %d and retrying every %.1f s "
            "at most; the queue holds %d windows, then the simulator waits",
            type(error).__name__,
            str(error).strip().splitlines()[0] if str(error).strip() else "",
            batch.number,
            self.retry_cap_s,
            self.max_windows,
        )

    def _outage_ends(self, batch: WindowBatch) -> None:
        assert self.outage_since is not None
        duration = self._clock() - self.outage_since
        self.outage_total_s += duration
        self.outage_since = None
        market_database_outage(begins=False)
        logger.warning(
            "tick writer: database available again after %.1f s (outage %d); window %d stored, "
            "%d windows queued behind it",
            duration,
            self.outages,
            batch.number,
            self._queue.qsize(),
        )

    def _abandon(self, batch: WindowBatch) -> None:
        self._gave_up = True
        numbers = [batch.number]
        while True:
            try:
                queued = self._queue.get_nowait()
            except queue.Empty:
                break
            if queued is not None:
                numbers.append(queued.number)
        self.windows_abandoned = len(numbers)
        logger.error(
            "tick writer: stopping while the database is unavailable; windows %d-%d (%d) were not "
            "stored. None was published; a restart resumes every symbol from its stored seq",
            min(numbers),
            max(numbers),
            len(numbers),
        )


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
