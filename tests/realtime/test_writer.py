"""The tick writer: one transaction per window on both backends, and backpressure (Property 9)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from django.db import IntegrityError, OperationalError, connection
from django.db.models import Count, Max

from config.metrics import metrics_snapshot, snapshot_value
from realtime.bars import BarRoller
from realtime.simulator import MarketSimulator, SymbolStart
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from realtime.writer import PATH_COPY, PATH_EXECUTEMANY, TickPipeline, TickWriter, WindowBatch
from trading.models import DailyBar, MinuteBar, StockPriceHistory

AT_NS = 1_764_000_030 * 1_000_000_000


def _metric(name: str) -> float:
    return snapshot_value(metrics_snapshot(), name) or 0.0


def tick(symbol: str, seq: int, price: int, *, at_ns: int = AT_NS, size: int = 100) -> WireTick:
    return WireTick(symbol, seq, price, size, price - 100, 300, price + 100, 400, at_ns)


def batch(number: int, ticks: list[WireTick], roller: BarRoller | None = None) -> WindowBatch:
    roller = roller or BarRoller()
    return WindowBatch(number=number, ticks=ticks, bars=roller.roll(ticks, now_ns=ticks[0].at_ns))


def unthrottled() -> ThrottleController:
    return ThrottleController(max_rows_per_s=0, max_txn_per_s=0)


@pytest.mark.django_db
def test_a_window_is_stored_with_its_bars_by_the_backends_fast_path() -> None:
    writer = TickWriter(throttle=unthrottled())
    roller = BarRoller()
    writer.write(batch(1, [tick("AAA", 1, 1_000_000), tick("BBB", 1, 2_000_000)], roller))
    writer.write(batch(2, [tick("AAA", 2, 1_010_000, size=300, at_ns=AT_NS + 10**8)], roller))
    # COPY on PostgreSQL, executemany on SQLite: the path must match the backend under test.
    assert writer.last_path == (PATH_COPY if connection.vendor == "postgresql" else PATH_EXECUTEMANY)
    stored = {
        (t.symbol, t.seq): (t.price_units, t.size, t.bid_units, t.bid_size, t.ask_units, t.ask_size)
        for t in StockPriceHistory.objects.all()
    }
    assert stored == {
        ("AAA", 1): (1_000_000, 100, 999_900, 300, 1_000_100, 400),
        ("BBB", 1): (2_000_000, 100, 1_999_900, 300, 2_000_100, 400),
        ("AAA", 2): (1_010_000, 300, 1_009_900, 300, 1_010_100, 400),
    }
    recorded = StockPriceHistory.objects.get(symbol="AAA", seq=1).recorded_at
    assert int(recorded.timestamp()) == AT_NS // 10**9
    # Nothing is stored for a forming minute; the window that ends it stores each closed bar once.
    assert not MinuteBar.objects.exists() and not DailyBar.objects.exists()
    writer.write(batch(3, [tick("BBB", 2, 2_000_000, at_ns=AT_NS + 30 * 10**9)], roller))
    minute = MinuteBar.objects.get(symbol="AAA")
    assert (minute.open_units, minute.close_units, minute.volume, minute.trade_count) == (
        1_000_000, 1_010_000, 400, 2,
    )  # fmt: skip
    assert minute.vwap_units == 1_007_500
    assert DailyBar.objects.get(symbol="AAA").volume == 400
    assert MinuteBar.objects.count() == 2 and DailyBar.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_window_is_all_or_nothing() -> None:
    writer = TickWriter(throttle=unthrottled())
    roller = BarRoller()
    writer.write(batch(1, [tick("AAA", 1, 1_000_000)], roller))
    # A duplicate (symbol, seq) in the middle of a window that also closes a minute: nothing of that
    # window may remain, its bars neither.
    later = AT_NS + 30 * 10**9
    broken = batch(
        2,
        [
            tick("BBB", 1, 2_000_000, at_ns=later),
            tick("AAA", 1, 1_000_000, at_ns=later),
            tick("CCC", 1, 3_000_000, at_ns=later),
        ],
        roller,
    )
    assert broken.bars.minute_rows and broken.bars.daily_rows
    with pytest.raises(IntegrityError):
        writer.write(broken)
    assert list(StockPriceHistory.objects.values_list("symbol", "seq")) == [("AAA", 1)]
    assert not MinuteBar.objects.exists() and not DailyBar.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_slow_writer_blocks_the_simulator_and_nothing_is_dropped() -> None:
    """Property 9: past the queue bound the producer waits; every produced tick is stored."""
    symbols = [SymbolStart(symbol=f"S{i}", sector="Energy", price_units=1_000_000) for i in range(5)]
    sim = MarketSimulator(symbols=symbols, seed=1, window_s=0.1, tick_interval_s=0.1)
    roller = BarRoller()
    committed: list[int] = []
    depth_seen: list[int] = []
    max_windows = 2
    # Each window is 5 ticks (its 3 s close no minute, so no bars); 50 rows/s is ten windows a
    # second, while the producer below offers them as fast as it can.
    pipeline = TickPipeline(
        writer=TickWriter(throttle=ThrottleController(max_rows_per_s=50, max_txn_per_s=0)),
        on_committed=lambda b: committed.append(b.number),
        max_windows=max_windows,
    )
    waits_before = _metric("market_throttle_waits_total")
    rows_before = _metric("market_rows_written_total")
    pipeline.start()
    produced: list[WireTick] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            depth_seen.append(pipeline.depth)
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.monotonic()
    try:
        for number in range(1, 31):
            at_ns = AT_NS + number * 10**8
            ticks = sim.step(at_ns=at_ns)
            produced += ticks
            pipeline.put(WindowBatch(number=number, ticks=ticks, bars=roller.roll(ticks, now_ns=at_ns)))
        production_s = time.monotonic() - started
    finally:
        pipeline.close()
        stop.set()
        watcher.join()
    # 30 windows x 5 rows at 50 rows/s, less the first second's burst: about 2 s of waiting.
    assert production_s > 1.0
    assert pipeline.blocked_s > 1.0
    # Property 31: the throttle's waits and the rows written reach their series.
    assert _metric("market_throttle_waits_total") > waits_before
    assert _metric("market_rows_written_total") - rows_before == 150
    assert max(depth_seen) <= max_windows and pipeline.max_depth <= max_windows
    assert committed == list(range(1, 31))
    stored = set(StockPriceHistory.objects.values_list("symbol", "seq", "price_units"))
    assert stored == {(t.symbol, t.seq, t.price) for t in produced}
    assert len(produced) == 150


# --- Database outages ------------------------------------------------------------------------------


class FakeClock:
    """Monotonic seconds that only move when the test (or a writer below) says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class UnreachableWriter(TickWriter):
    """The real writer, behind a database that cannot be reached for the listed windows' first
    attempts (``failing``: window -> failed attempts); each attempt at a listed window comes one
    second of ``clock`` after the one before."""

    def __init__(self, clock: FakeClock, *, failing: dict[int, int]) -> None:
        super().__init__(throttle=unthrottled())
        self.clock = clock
        self.failing = dict(failing)
        self.attempts: list[int] = []

    def write(self, batch: WindowBatch) -> None:
        self.attempts.append(batch.number)
        if batch.number in self.failing:
            self.clock.now += 1.0
        if self.failing.get(batch.number, 0) > 0:
            self.failing[batch.number] -= 1
            raise OperationalError("connection refused")
        super().write(batch)


class LostAcknowledgementWriter(TickWriter):
    """The real writer; the listed windows' first commit lands in the database, but its
    answer is lost with the connection (the server went away right after committing)."""

    def __init__(self, *, lost: set[int]) -> None:
        super().__init__(throttle=unthrottled())
        self.lost = set(lost)

    def write(self, batch: WindowBatch) -> None:
        super().write(batch)
        if batch.number in self.lost:
            self.lost.discard(batch.number)
            raise OperationalError("server closed the connection unexpectedly")


def fast_pipeline(writer: TickWriter, committed: list[int], **options: Any) -> TickPipeline:
    options.setdefault("retry_base_s", 0.001)
    options.setdefault("retry_cap_s", 0.004)
    return TickPipeline(writer=writer, on_committed=lambda b: committed.append(b.number), **options)


def numbered_windows(count: int, symbols: int = 3) -> list[WindowBatch]:
    roller = BarRoller()
    windows = []
    for number in range(1, count + 1):
        ticks = [
            tick(f"S{i}", number, 1_000_000 + number, at_ns=AT_NS + number * 10**8) for i in range(symbols)
        ]
        windows.append(
            WindowBatch(number=number, ticks=ticks, bars=roller.roll(ticks, now_ns=ticks[0].at_ns))
        )
    return windows


@pytest.mark.django_db(transaction=True)
def test_an_outage_holds_the_window_and_the_queue_then_stores_everything_once_in_order(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    outages_before = _metric("market_database_outages_total")
    writer = UnreachableWriter(clock, failing={3: 4})
    committed: list[int] = []
    pipeline = fast_pipeline(writer, committed, max_windows=2, clock=clock)
    windows = numbered_windows(12)
    pipeline.start()
    with caplog.at_level(logging.WARNING, logger="realtime.writer"):
        try:
            for window in windows:
                assert pipeline.put(window)
        finally:
            pipeline.close()
    assert pipeline.error is None
    # Window 3 was tried five times; the windows behind it waited in the queue, in order.
    assert writer.attempts[:7] == [1, 2, 3, 3, 3, 3, 3]
    assert committed == list(range(1, 13))
    stored = list(StockPriceHistory.objects.order_by("symbol", "seq").values_list("symbol", "seq"))
    assert stored == [(f"S{i}", seq) for i in range(3) for seq in range(1, 13)]
    assert (pipeline.outages, pipeline.failed_attempts, pipeline.outage_total_s) == (1, 4, 4.0)
    assert pipeline.outage_since is None and pipeline.outage_s() == 0.0
    # Property 31: the outage is counted, and over (its gauge back to 0).
    assert _metric("market_database_outages_total") - outages_before == 1
    assert _metric("market_database_unavailable") == 0
    # Logged once when it began and once when it ended, with its length.
    # The writer's own: the metrics read above may log too (a collect-time source that an earlier
    # test on this worker saw fail "reads again"), and caplog keeps every logger's records.
    messages = [record.getMessage() for record in caplog.records if record.name == "realtime.writer"]
    assert len(messages) == 2, messages
    assert "database unavailable (OperationalError: connection refused); holding window 3" in messages[0]
    assert "database available again after 4.0 s (outage 1); window 3 stored" in messages[1]


@pytest.mark.django_db(transaction=True)
def test_a_commit_whose_answer_was_lost_is_not_written_again() -> None:
    writer = LostAcknowledgementWriter(lost={2, 4})
    committed: list[int] = []
    pipeline = fast_pipeline(writer, committed)
    pipeline.start()
    try:
        for window in numbered_windows(5):
            pipeline.put(window)
    finally:
        pipeline.close()
    assert pipeline.error is None
    assert committed == [1, 2, 3, 4, 5]  # published once each, after their commit
    assert pipeline.outages == 2
    counts = StockPriceHistory.objects.values_list("symbol").annotate(n=Count("seq"), hi=Max("seq"))
    assert sorted(counts) == [("S0", 5, 5), ("S1", 5, 5), ("S2", 5, 5)]


class LateCommitWriter(TickWriter):
    """The first attempt at each listed window fails; its commit lands while the retry is
    already under way (the server finished it late), so the retry meets the stored rows."""

    def __init__(self, *, late: set[int]) -> None:
        super().__init__(throttle=unthrottled())
        self.late = set(late)
        self.pending: dict[int, WindowBatch] = {}

    def write(self, batch: WindowBatch) -> None:
        if batch.number in self.late:
            self.late.discard(batch.number)
            self.pending[batch.number] = batch
            raise OperationalError("server closed the connection unexpectedly")
        if batch.number in self.pending:
            super().write(self.pending.pop(batch.number))  # the late commit
        super().write(batch)


@pytest.mark.django_db(transaction=True)
def test_a_retry_that_meets_the_late_commit_of_its_first_attempt_keeps_one_copy() -> None:
    committed: list[int] = []
    pipeline = fast_pipeline(LateCommitWriter(late={2}), committed)
    pipeline.start()
    try:
        for window in numbered_windows(3):
            pipeline.put(window)
    finally:
        pipeline.close()
    assert pipeline.error is None
    assert committed == [1, 2, 3]
    assert StockPriceHistory.objects.count() == 9


@pytest.mark.django_db(transaction=True)
def test_stopping_during_an_outage_gives_up_the_unstored_windows_without_publishing_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    committed: list[int] = []
    writer = UnreachableWriter(clock, failing={2: 10**9})
    # Retries every 60 s: only the stop request can end the wait.
    pipeline = fast_pipeline(writer, committed, max_windows=2, clock=clock, retry_base_s=60, retry_cap_s=60)
    pipeline.start()
    windows = numbered_windows(5)
    for window in windows[:3]:
        assert pipeline.put(window)
    deadline = time.monotonic() + 10
    while pipeline.outage_since is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pipeline.put(windows[3])  # fills the queue: 3 and 4 wait behind 2
    pipeline.request_stop()
    # The database is down and the process stops: the producer no longer waits for room.
    assert pipeline.put(windows[4]) is False
    with caplog.at_level(logging.ERROR, logger="realtime.writer"):
        pipeline.close(timeout=10)
    assert pipeline.error is None
    assert committed == [1]
    # 2 and the queued 3 and 4 (and 5, when it slipped in as the writer gave up) are not stored.
    assert pipeline.windows_abandoned in (3, 4)
    assert f"windows 2-{pipeline.windows_abandoned + 1} ({pipeline.windows_abandoned}) were not stored" in (
        caplog.text
    )
    assert list(StockPriceHistory.objects.values_list("seq", flat=True).distinct()) == [1]
    assert writer.attempts == [1, 2, 2]  # one more attempt after the stop request, then no more


@pytest.mark.django_db(transaction=True)
def test_an_error_that_is_not_an_outage_still_stops_the_writer() -> None:
    committed: list[int] = []
    pipeline = fast_pipeline(TickWriter(throttle=unthrottled()), committed)
    pipeline.start()
    first, second = numbered_windows(2)
    pipeline.put(first)
    pipeline.put(first)  # the same seqs again: a bug, not an outage
    with pytest.raises(RuntimeError, match="tick writer failed") as failed:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pipeline.put(second)
            time.sleep(0.05)
    assert isinstance(failed.value.__cause__, IntegrityError)
    assert committed == [1]
    with pytest.raises(RuntimeError):
        pipeline.close()


class CutMidCopyWriter(TickWriter):
    """The real COPY path; the first window's server session is terminated half way through
    its rows (as a server restart or a dropped connection does)."""

    def __init__(self) -> None:
        super().__init__(throttle=unthrottled())
        self.cut = True

    def _copy_ticks(self, ticks: Sequence[WireTick]) -> None:  # type: ignore[override]
        if not self.cut:
            return TickWriter._copy_ticks(ticks)
        self.cut = False
        backend = connection.connection.info.backend_pid

        def rows() -> Iterator[WireTick]:
            for index, row in enumerate(ticks):
                if index == len(ticks) // 2:
                    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
                        admin.execute("SELECT pg_terminate_backend(%s)", [backend])
                yield row

        # A generator: the rows are produced while the COPY runs, so the cut lands inside it.
        return TickWriter._copy_ticks(rows())  # type: ignore[arg-type]


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_in_the_middle_of_a_copy_is_replaced_and_the_window_stored_once() -> None:
    writer = CutMidCopyWriter()
    committed: list[int] = []
    pipeline = fast_pipeline(writer, committed)
    pipeline.start()
    try:
        for window in numbered_windows(3, symbols=50):
            pipeline.put(window)
    finally:
        pipeline.close()
    assert pipeline.error is None
    assert not writer.cut and pipeline.outages == 1
    assert committed == [1, 2, 3]
    assert writer.last_path == PATH_COPY
    counts = StockPriceHistory.objects.values_list("symbol").annotate(n=Count("seq"), hi=Max("seq"))
    assert sorted(counts) == sorted((f"S{i}", 3, 3) for i in range(50))
