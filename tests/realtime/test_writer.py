"""The tick writer: one transaction per window on both backends, and backpressure (Property 9)."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import IntegrityError, connection

from realtime.bars import BarRoller
from realtime.simulator import MarketSimulator, SymbolStart
from realtime.throttle import ThrottleController
from realtime.wire import WireTick
from realtime.writer import PATH_COPY, PATH_EXECUTEMANY, TickPipeline, TickWriter, WindowBatch
from trading.models import DailyBar, MinuteBar, StockPriceHistory

AT_NS = 1_764_000_030 * 1_000_000_000


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
    # The forming minute bar was upserted in place, not duplicated.
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
    writer.write(batch(1, [tick("AAA", 1, 1_000_000)]))
    # A duplicate (symbol, seq) in the middle of a window: nothing of that window may remain.
    broken = batch(2, [tick("BBB", 1, 2_000_000), tick("AAA", 1, 1_000_000), tick("CCC", 1, 3_000_000)])
    with pytest.raises(IntegrityError):
        writer.write(broken)
    assert list(StockPriceHistory.objects.values_list("symbol", "seq")) == [("AAA", 1)]
    assert set(MinuteBar.objects.values_list("symbol", flat=True)) == {"AAA"}
    assert set(DailyBar.objects.values_list("symbol", flat=True)) == {"AAA"}


@pytest.mark.django_db(transaction=True)
def test_a_slow_writer_blocks_the_simulator_and_nothing_is_dropped() -> None:
    """Property 9: past the queue bound the producer waits; every produced tick is stored."""
    symbols = [SymbolStart(symbol=f"S{i}", sector="Energy", price_units=1_000_000) for i in range(5)]
    sim = MarketSimulator(symbols=symbols, seed=1, window_s=0.1, tick_interval_s=0.1)
    roller = BarRoller()
    committed: list[int] = []
    depth_seen: list[int] = []
    max_windows = 2
    # Each window is 5 ticks + 5 minute bars + 5 daily bars = 15 rows; 150 rows/s is ten windows
    # a second, while the producer below offers them as fast as it can.
    pipeline = TickPipeline(
        writer=TickWriter(throttle=ThrottleController(max_rows_per_s=150, max_txn_per_s=0)),
        on_committed=lambda b: committed.append(b.number),
        max_windows=max_windows,
    )
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
    # 30 windows x 15 rows at 150 rows/s, less the first second's burst: about 2 s of waiting.
    assert production_s > 1.0
    assert pipeline.blocked_s > 1.0
    assert max(depth_seen) <= max_windows and pipeline.max_depth <= max_windows
    assert committed == list(range(1, 31))
    stored = set(StockPriceHistory.objects.values_list("symbol", "seq", "price_units"))
    assert stored == {(t.symbol, t.seq, t.price) for t in produced}
    assert len(produced) == 150
