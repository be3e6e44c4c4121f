"""The market process: simulate, persist, then publish, then trigger resting orders.

Threads and what they own:

- the main thread runs the clock: every window it asks the simulator for ticks, keeps them in
  the per-symbol ring buffers, rolls bars and hands the window to the tick pipeline, blocking
  while the pipeline's bounded queue is full (a slow database slows the market, drops no ticks);
- the writer thread commits each window in one transaction, and only then writes the latest
  quotes to Redis, publishes the window's one message and runs the trigger engine;
- the order-event subscriber thread queues order events for the trigger engine.

A restart resumes every symbol from its highest stored seq and last stored price, so ticks stay
gap-free and unique across a kill -9 (docs/architecture.md, Ticks to disk): windows lost in the
queue were never published, and their seqs are simply produced again. A database outage stops
nothing: the writer retries its window until the database answers (realtime/writer.py), the queue
fills and the clock waits, and the asset poll skips its turns meanwhile.

Every MARKET_HALT_POLL_S the clock re-reads the tradable assets: new listings start trading
(from their stored state, if any), delisted or no longer tradable symbols stop, and halts and
resumptions go out as trading statuses; no restart needed. With MARKET_HOURS=xnys no ticks are
produced while the NYSE session is closed: windows still go through the pipeline (empty), so bars
close and day orders expire on time. "Now" comes from an injectable clock.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from config.redis_pools import redis_client
from realtime.bars import BarRoller
from realtime.metrics import market_window_produced, market_window_published
from realtime.ring import SymbolHistory
from realtime.simulator import MarketSimulator, SymbolStart
from realtime.throttle import ThrottleController
from realtime.triggers import TriggerEngine
from realtime.wire import Window, WireTick
from realtime.writer import DATABASE_UNAVAILABLE, TickPipeline, TickWriter, WindowBatch, recorded_at
from trading import calendar
from trading.models import Asset, DailyBar, MinuteBar, StockPriceHistory
from trading.quotes import (
    LatestQuote,
    latest_quotes_store,
    latest_ticks_from_db,
    newest_per_symbol,
    newest_rows,
)

logger = logging.getLogger("realtime.market")

STATUS_HALTED = "H"
STATUS_TRADING = "T"


@dataclass(frozen=True)
class MarketConfig:
    seed: int
    symbols: int  # 0: all tradable assets
    window_ms: int
    tick_interval_s: float
    duration_s: float = 0.0  # 0: until stopped
    first_window: int = 1
    halt_poll_s: float = 2.0
    log_interval_s: float = 10.0

    @classmethod
    def from_settings(cls, **overrides: object) -> MarketConfig:
        values: dict[str, object] = {
            "seed": settings.MARKET_SEED,
            "symbols": settings.MARKET_SYMBOLS,
            "window_ms": settings.STREAM_BATCH_WINDOW_MS,
            "tick_interval_s": settings.MARKET_TICK_INTERVAL_S,
            "halt_poll_s": settings.MARKET_HALT_POLL_S,
            "log_interval_s": settings.MARKET_LOG_INTERVAL_S,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)  # type: ignore[arg-type]


def market_assets(*, limit: int) -> list[Asset]:
    assets = Asset.objects.filter(active=True, tradable=True).order_by("symbol")
    return list(assets[:limit] if limit > 0 else assets)


class SessionGate:
    """Whether the market trades now: always, or (MARKET_HOURS=xnys) inside an NYSE session.

    The calendar is asked again only once the next open or close has passed (or the clock was
    set back), not every window.
    """

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self._clock = clock
        self._open = True
        self._since: dt.datetime | None = None
        self._until: dt.datetime | None = None

    def is_open(self) -> bool:
        if calendar.always_open():
            return True
        now = self._clock()
        if self._since is None or self._until is None or not self._since <= now < self._until:
            was_open = self._open if self._until is not None else None
            session = calendar.clock_at(now)
            self._open = session.is_open
            self._since = now
            self._until = session.next_close if session.is_open else session.next_open
            if was_open != self._open:
                logger.info(
                    "market: session %s until %s",
                    "open" if self._open else "closed, no ticks",
                    self._until.isoformat(),
                )
        return self._open


def resume_starts(assets: list[Asset]) -> list[SymbolStart]:
    """Each symbol's starting point: its newest stored tick (one query), else its seed price."""
    stored = latest_ticks_from_db(symbols=[asset.symbol for asset in assets])
    starts = []
    for asset in assets:
        tick = stored.get(asset.symbol)
        starts.append(
            SymbolStart(
                symbol=asset.symbol,
                sector=asset.sector,
                price_units=tick.price if tick is not None else asset.initial_price_units,
                seq=tick.seq if tick is not None else 0,
                halted=asset.halted,
            )
        )
    return starts


def unbarred_ticks(*, symbols: list[str]) -> list[WireTick]:
    """The stored ticks of ``symbols`` that no stored minute bar holds yet, oldest first.

    Minutes close in the window that first passes their end, for every symbol at once and in that
    window's transaction, and ticks are stored with the window they belong to. So what no bar
    holds starts after the newest stored minute bar's minute, and at the earliest in the minute
    before the newest stored tick's (that minute's closing window may not have been stored); the
    later of the two bounds the read to a minute or two of ticks.
    """
    newest_bar = (
        MinuteBar.objects.filter(pk__in=newest_per_symbol(MinuteBar, symbols=symbols, order_key="start"))
        .order_by("-start")
        .values_list("start", flat=True)
        .first()
    )
    # The newest of each symbol's newest tick: one seek per symbol down (symbol, recorded_at),
    # as ticks have no index on time alone.
    newest_tick = (
        StockPriceHistory.objects.filter(
            newest_rows(StockPriceHistory, symbols=symbols, order_key="recorded_at")
        )
        .order_by("-recorded_at")
        .values_list("recorded_at", flat=True)
        .first()
    )
    if newest_tick is None:
        return []
    since = newest_tick.replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    if newest_bar is not None:
        since = max(since, newest_bar + dt.timedelta(minutes=1))
    rows = (
        StockPriceHistory.objects.filter(symbol__in=symbols, recorded_at__gte=since)
        .order_by("recorded_at", "seq")
        .values_list(
            "symbol",
            "seq",
            "price_units",
            "size",
            "bid_units",
            "bid_size",
            "ask_units",
            "ask_size",
            "recorded_at",
        )
    )
    return [WireTick(*row[:8], at_ns=_epoch_ns(row[8])) for row in rows]


def _epoch_ns(moment: dt.datetime) -> int:
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def _latest_quote(tick: WireTick) -> LatestQuote:
    return LatestQuote(
        symbol=tick.symbol,
        seq=tick.seq,
        price=tick.price,
        size=tick.size,
        bid=tick.bid,
        bid_size=tick.bid_size,
        ask=tick.ask,
        ask_size=tick.ask_size,
        # As stored (whole microseconds), so the latest trade read from here is the stored tick's.
        at=recorded_at(tick.at_ns),
    )


@dataclass
class _Stats:
    windows: int = 0
    ticks: int = 0
    since: float = 0.0
    windows_at_log: int = 0
    ticks_at_log: int = 0


class MarketProcess:
    def __init__(
        self,
        config: MarketConfig,
        *,
        throttle: ThrottleController | None = None,
        max_queue_windows: int | None = None,
        triggers: bool = True,
        clock: Callable[[], dt.datetime] = timezone.now,
    ) -> None:
        self.config = config
        self.session = SessionGate(clock)
        self._clock = clock
        self._last_at_ns = 0
        self.window_s = config.window_ms / 1000
        self._stop = threading.Event()
        self.history: SymbolHistory[WireTick] = SymbolHistory()
        self.roller = BarRoller()
        self.pipeline = TickPipeline(
            writer=TickWriter(throttle=throttle),
            on_committed=self._after_commit,
            max_windows=max_queue_windows,
        )
        self.engine: TriggerEngine | None = TriggerEngine(clock=clock) if triggers else None
        self.simulator: MarketSimulator | None = None
        self._number = config.first_window
        self._stats = _Stats()
        self._publish_failures = 0
        self._poll_failing = False
        self.published = 0
        # Windows fully handled (stored, published, triggers run): what a caller may wait for.
        self.windows_done = 0

    def request_stop(self) -> None:
        self._stop.set()
        self.pipeline.request_stop()

    def _resume_bars(self, symbols: list[str]) -> None:
        """Hand the roller what a previous run left: each symbol's newest daily bar and the stored
        ticks no stored minute bar holds yet (the minute that was forming, or one that was over
        but not yet closed, when the process stopped)."""
        symbols = [symbol for symbol in symbols if not self.roller.knows(symbol)]
        if not symbols:
            return
        daily = DailyBar.objects.filter(
            pk__in=newest_per_symbol(DailyBar, symbols=symbols, order_key="start")
        )
        self.roller.resume(daily_bars=daily, ticks=unbarred_ticks(symbols=symbols))

    def setup(self) -> None:
        assets = market_assets(limit=self.config.symbols)
        if not assets:
            raise RuntimeError("no tradable assets: run `manage.py seed_demo` first")
        starts = resume_starts(assets)
        self.simulator = MarketSimulator(
            symbols=starts,
            seed=self.config.seed,
            window_s=self.window_s,
            tick_interval_s=self.config.tick_interval_s,
        )
        self._resume_bars([start.symbol for start in starts])
        resumed = sum(1 for start in starts if start.seq)
        logger.info(
            "market: %d symbols (%d resumed from stored ticks, highest seq %d), seed %d, window %d ms, "
            "one tick per symbol every %.2f s on average",
            len(starts),
            resumed,
            max((start.seq for start in starts), default=0),
            self.config.seed,
            self.config.window_ms,
            self.config.tick_interval_s,
        )
        if self.engine is not None:
            self.engine.start()
        self.pipeline.start()

    def run(self) -> None:
        """Run until ``request_stop`` (or the configured duration), then flush and return."""
        if self.simulator is None:
            self.setup()
        assert self.simulator is not None
        started = time.monotonic()
        self._stats.since = started
        next_window = started
        next_halt_poll = started + self.config.halt_poll_s
        next_log = started + self.config.log_interval_s
        try:
            while not self._stop.is_set():
                now = time.monotonic()
                if self.config.duration_s and now - started >= self.config.duration_s:
                    break
                poll = now >= next_halt_poll
                if poll:
                    next_halt_poll = now + self.config.halt_poll_s
                self.run_window(poll=poll)
                if now >= next_log:
                    self._log()
                    next_log = now + self.config.log_interval_s
                next_window += self.window_s
                delay = next_window - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
                else:
                    # Behind (backpressure or a slow window): carry on from now rather than
                    # bursting to catch up; the market simply produced fewer windows.
                    next_window = time.monotonic()
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        try:
            self.pipeline.close()
        finally:
            if self.engine is not None:
                self.engine.stop()
            self._log()
            connection.close()

    def run_window(self, *, poll: bool = False) -> WindowBatch:
        """One window of the clock: re-read the assets when ``poll``, then simulate (in session)."""
        assert self.simulator is not None
        statuses = self._poll_assets_if_reachable() if poll else {}
        at_ns = self._now_ns()
        ticks = self.simulator.step(at_ns=at_ns) if self.session.is_open() else []
        return self.submit_window(ticks, statuses=statuses, at_ns=at_ns)

    def submit_window(
        self, ticks: Sequence[WireTick], *, statuses: dict[str, str] | None = None, at_ns: int | None = None
    ) -> WindowBatch:
        """Hand one window's ticks on: history and bars here, then (on the writer thread) persist,
        publish and trigger. Blocks while the pipeline's queue is full (backpressure). The
        simulator's windows come through here; tests feed scripted prices the same way."""
        ticks = list(ticks)
        at_ns = self._now_ns() if at_ns is None else at_ns
        for tick in ticks:
            self.history.append(tick.symbol, tick)
        bars = self.roller.roll(ticks, now_ns=at_ns)
        batch = WindowBatch(number=self._number, ticks=ticks, bars=bars, statuses=statuses or {})
        self._number += 1
        if self.pipeline.put(batch):
            self._stats.windows += 1
            self._stats.ticks += len(ticks)
            market_window_produced(
                ticks=len(ticks), queue_depth=self.pipeline.depth, queue_capacity=self.pipeline.max_windows
            )
        return batch

    def _now_ns(self) -> int:
        """The window's time stamp: the clock, never behind the previous window's. A clock stepping
        back (NTP) would stamp trades into minutes already closed and sent; held here, ticks stay in
        time order and a published minute bar stays final."""
        self._last_at_ns = max(_epoch_ns(self._clock()), self._last_at_ns)
        return self._last_at_ns

    def _poll_assets_if_reachable(self) -> dict[str, str]:
        """``_poll_assets``, or nothing while the database is unavailable: the market keeps
        trading the symbols it has (the tick writer holds their windows until it is back)."""
        try:
            statuses = self._poll_assets()
        except DATABASE_UNAVAILABLE as error:
            # This thread's connection may be dead: closed, Django opens a new one next time.
            with contextlib.suppress(DatabaseError):
                connection.close()
            if not self._poll_failing:
                logger.warning(
                    "market: cannot re-read the assets (%s); trading the current ones until the database answers",
                    type(error).__name__,
                )
            self._poll_failing = True
            return {}
        if self._poll_failing:
            logger.info("market: re-reading the assets again")
            self._poll_failing = False
        return statuses

    def _poll_assets(self) -> dict[str, str]:
        """Follow the asset table: listings, delistings, halts. Returns the changed trading statuses."""
        assert self.simulator is not None
        listed = dict(
            Asset.objects.filter(active=True, tradable=True)
            .order_by("symbol")
            .values_list("symbol", "halted")
        )
        simulated = set(self.simulator.symbols)
        gone = sorted(simulated - listed.keys())
        for symbol in gone:
            self.simulator.remove_symbol(symbol)
        new = [symbol for symbol in listed if symbol not in simulated]
        if self.config.symbols > 0:
            # A symbol limit caps the set; it never pushes out a symbol already trading.
            new = new[: max(0, self.config.symbols - (len(simulated) - len(gone)))]
        if new:
            for start in resume_starts(list(Asset.objects.filter(symbol__in=new).order_by("symbol"))):
                self.simulator.add_symbol(start)
            # Bars of a symbol seen earlier in this run are already here, and newer than stored.
            self._resume_bars(new)
        if gone or new:
            logger.info("market: now trading %s; stopped %s", new or "-", gone or "-")
        statuses: dict[str, str] = {}
        for symbol, halted in listed.items():
            # The simulator's own flag is the reference, so a re-listed symbol is set right too.
            if self.simulator.set_halted(symbol, halted):
                statuses[symbol] = STATUS_HALTED if halted else STATUS_TRADING
        if statuses:
            logger.info("market: trading status changed: %s", statuses)
        return statuses

    def _after_commit(self, batch: WindowBatch) -> None:
        """Runs on the writer thread once the window is committed: publish, then trigger."""
        latest: dict[str, WireTick] = {}
        for tick in batch.ticks:
            latest[tick.symbol] = tick
        try:
            if latest:
                latest_quotes_store(quotes=[_latest_quote(tick) for tick in latest.values()])
            window = Window(
                number=batch.number,
                ticks=batch.ticks,
                bars=batch.bars.wire,
                statuses=batch.statuses,
                published_ns=time.time_ns(),
            )
            redis_client().publish(settings.MARKET_WINDOWS_CHANNEL, window.encode())
            self.published += 1
            market_window_published(ok=True)
        except redis.RedisError as error:
            # The ticks are stored; subscribers see the window-number gap and resync.
            market_window_published(ok=False)
            self._publish_failures += 1
            if self._publish_failures in (1, 10) or self._publish_failures % 100 == 0:
                logger.warning("market: window %d not published (%s)", batch.number, error)
        if self.engine is not None:
            try:
                self.engine.on_window(batch.ticks)
            except Exception:
                logger.exception("market: resting-order triggers failed for window %d", batch.number)
        self.windows_done += 1

    def _log(self) -> None:
        now = time.monotonic()
        stats = self._stats
        elapsed = max(now - stats.since, 1e-9)
        windows = stats.windows - stats.windows_at_log
        ticks = stats.ticks - stats.ticks_at_log
        pipeline = self.pipeline
        outage = pipeline.outage_s()
        logger.info(
            "market: %d windows, %.0f ticks/s, %d ticks in total, queue %d/%d, writer lag %.0f ms, "
            "producer blocked %.1f s, published %d windows, %d rows written, "
            "database outages %d (%.1f s)%s",
            windows,
            ticks / elapsed,
            stats.ticks,
            pipeline.depth,
            pipeline.max_windows,
            pipeline.last_lag_s * 1000,
            pipeline.blocked_s,
            self.published,
            pipeline.writer.rows_written,
            pipeline.outages,
            pipeline.outage_total_s + outage,
            f", database unavailable for {outage:.1f} s now" if pipeline.outage_since is not None else "",
        )
        stats.since, stats.windows_at_log, stats.ticks_at_log = now, stats.windows, stats.ticks
