"""Process-local fan-out: one Redis subscription per web process, routed by symbol to its sockets.

The market publishes one message per batch window (realtime/wire.py). Each process runs ONE
listener task (SubscriptionManager), started lazily by the first stream connection, which decodes
a window once, encodes each event once per encoding (streams.EncodedWindow) and hands every
subscribed connection at most one frame per window holding only its symbols (MessageBatcher).
The naive design, a channel-layer ``group_send`` per tick per client, serialises and routes each
tick once per client through Redis; this one touches Redis once per window per process.

Delivery is one synchronous pass over the window's connections. Connections that take the same
symbols and channels share one frame, built once with its WebSocket header
(streams.EncodedSelection); under daphne it is written straight to each socket
(realtime/transport.py) rather than through ASGI, autobahn and a later turn of the event loop, so
a connection's frame is on the wire as soon as its turn comes and the last of 1,000 connections
waits only for the kernel copies before it. A connection that does not keep up, or is over its
byte budget, goes through its bounded outbox instead (realtime/outbox.py). The pass allocates no
container per connection, and the process's young-generation GC threshold is raised above a
window's peak (``raise_gc_threshold`` says why).

Redis pub/sub drops a subscriber whose output buffer overflows (a process that fell behind), so
the listener re-subscribes whenever its connection fails, and window numbers are checked: a jump
forward is counted and logged as missed windows, a jump backwards is a market restart. Windows
carry no incremental state, so the next window is already a full resync for routing; clients are
never sent replayed trades (bots would count them twice) and the dashboard refreshes from its
snapshot endpoint. A gap seen on a live subscription does not tear it down: the missed windows
are gone either way, and re-subscribing would also drop the windows already buffered behind it.

Order events (trading/events.py) arrive on the same subscription and are turned into
``trade_updates`` for the account's listeners on this process, one database read per event.
Leaderboard changes (analytics/events.py) arrive there too; the board is read once per process
and the same frame goes to every dashboard socket. Only the newest pending change is kept: a
dashboard needs the current board, not every board in between. What is read of the other apps'
data is in realtime/selectors.py; the limits shared across processes in realtime/limits.py.

Revoked credentials (trading/events.py) arrive on the same subscription and close the sockets
that authenticated with them (realtime/revocation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from config.redis_pools import ASYNC_REDIS_FAILURES, async_redis_pool
from realtime.limits import AuthFailureLimiter, ConnectionRegistry, SymbolBudget
from realtime.metrics import FanoutMetrics
from realtime.outbox import StreamConnection
from realtime.revocation import Revocations
from realtime.selectors import (
    ListedSymbols,
    account_snapshot_get,
    leaderboard_board_get,
    listed_symbols_get,
    order_shape_get,
)
from realtime.streams import CHANNEL_BITS, EncodedSelection, EncodedWindow, Encoding, trade_update_message
from realtime.wire import Window

logger = logging.getLogger(__name__)


class MessageBatcher:
    """Which parts of a window each connection gets: only its symbols and channels."""

    @staticmethod
    def selections(
        encoded: EncodedWindow,
        by_symbol: Mapping[str, Collection[StreamConnection]],
        wildcard: Collection[StreamConnection],
    ) -> dict[StreamConnection, int]:
        """Each connection's selection of the window (EncodedWindow), if it has one.

        No container per connection: a window's routing must not leave the cyclic garbage
        collector thousands of live objects to walk and promote (see ``raise_gc_threshold``).
        """
        selected: dict[StreamConnection, int] = {}
        for index, symbol in enumerate(encoded.symbols):
            present = encoded.present[symbol]
            shift = index * CHANNEL_BITS
            for connection in by_symbol.get(symbol, ()):
                mask = (connection.masks.get(symbol, 0) | connection.wildcard_mask) & present
                if mask:
                    selected[connection] = selected.get(connection, 0) | (mask << shift)
            for connection in wildcard:
                if symbol in connection.masks:
                    continue  # routed above with its named channels merged in
                mask = connection.wildcard_mask & present
                if mask:
                    selected[connection] = selected.get(connection, 0) | (mask << shift)
        return selected


class AccountListener(Protocol):
    """A trade_updates or dashboard socket listening to one account's order events."""

    wants_snapshot: bool

    async def account_event(self, trade_update: dict[str, Any], snapshot: dict[str, Any] | None) -> None: ...


class LeaderboardListener(Protocol):
    """A dashboard socket: sent the leaderboard frame whenever the board changed."""

    async def leaderboard_changed(self, frame: str) -> None: ...


@dataclass
class FanoutStats:
    windows: int = 0
    gaps: int = 0
    missed_windows: int = 0
    restarts: int = 0
    resubscribes: int = 0
    frames: int = 0
    bytes: int = 0
    slow_disconnects: int = 0
    # Windows a connection over its byte budget had conflated instead of sent.
    throttled: int = 0
    # Windows folded into a connection's conflated batch (throttled or fallen behind).
    conflated: int = 0
    order_events: int = 0
    order_events_dropped: int = 0
    leaderboard_changes: int = 0
    revocations: int = 0
    revoked_sockets: int = 0
    last_window: int | None = None


def raise_gc_threshold() -> None:
    """Raise the collector's young-generation threshold to STREAM_GC_GEN0_THRESHOLD (never lower it).

    A window allocates a few thousand short-lived objects (decoded ticks, encoded events). At
    Python's default of 700 they set off collections mid-window that promoted the window in
    flight to older generations, which in turn triggered full collections walking every
    connection's objects: pauses of 150-250 ms with 1,000 connections. Above the window's peak the
    window is freed by reference counting before any collection starts, and collections run only
    as long-lived objects (new connections) accumulate.
    """
    wanted = settings.STREAM_GC_GEN0_THRESHOLD
    young, middle, old = gc.get_threshold()
    if wanted > young:
        gc.set_threshold(wanted, middle, old)


# --- The manager --------------------------------------------------------------------------------------


class SubscriptionManager:
    """The process's one Redis subscription and its routing tables."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pool = async_redis_pool(client_name=f"{settings.STREAM_REDIS_CLIENT_NAME}-{os.getpid()}")
        self.redis = aioredis.Redis(connection_pool=self.pool)
        self.windows_channel = settings.MARKET_WINDOWS_CHANNEL.encode()
        self.orders_channel = settings.ORDER_EVENTS_CHANNEL.encode()
        self.leaderboard_channel = settings.LEADERBOARD_EVENTS_CHANNEL.encode()
        self.revocations_channel = settings.STREAM_REVOCATIONS_CHANNEL.encode()
        # dict as an ordered set: ~half a set's memory for the 40-odd connections of a symbol.
        self.by_symbol: dict[str, dict[StreamConnection, None]] = {}
        self.wildcard: set[StreamConnection] = set()
        self.connections: weakref.WeakSet[StreamConnection] = weakref.WeakSet()
        self.backlogged: set[StreamConnection] = set()
        self.accounts: dict[str, set[AccountListener]] = {}
        self.leaderboard_listeners: set[LeaderboardListener] = set()
        self.revocations = Revocations(clock=clock)
        self.stats = FanoutStats()
        self.metrics = FanoutMetrics(self.stats)
        self.token = uuid.uuid4().hex[:12]
        self.registry = ConnectionRegistry(
            self.redis, ttl=settings.STREAM_CONNECTION_TTL_S, prefix=settings.STREAM_REDIS_PREFIX
        )
        self.auth_failures = AuthFailureLimiter(
            self.redis,
            limit=settings.STREAM_AUTH_FAILURES_MAX,
            window_s=settings.STREAM_AUTH_FAILURES_WINDOW_S,
            prefix=settings.STREAM_REDIS_PREFIX,
        )
        self.symbol_budget = SymbolBudget(
            self.redis,
            limit=settings.STREAM_MAX_SYMBOLS_PER_ACCOUNT,
            ttl=settings.STREAM_CONNECTION_TTL_S,
            prefix=settings.STREAM_REDIS_PREFIX,
        )
        self.listed = ListedSymbols(listed_symbols_get, clock=clock)
        self.subscribed = asyncio.Event()
        self._order_queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.STREAM_ORDER_EVENT_QUEUE)
        self._leaderboard_pending: bytes | None = None
        self._leaderboard_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def ensure_started(self) -> None:
        if not self._tasks:
            raise_gc_threshold()
            self._tasks = [
                asyncio.create_task(self._listen(), name="stream-fanout"),
                asyncio.create_task(self._order_worker(), name="stream-order-events"),
                asyncio.create_task(self._leaderboard_worker(), name="stream-leaderboard"),
                asyncio.create_task(self._refresh_registry(), name="stream-registry"),
            ]
        # A client that subscribes right after connecting must not miss the first windows
        # because the subscription was still being set up; Redis being down must not hang it.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.subscribed.wait(), settings.REDIS_POOL_TIMEOUT + 1)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            await self.pool.aclose()

    # Routing tables

    def update(self, connection: StreamConnection, masks: dict[str, int], wildcard_mask: int) -> None:
        for symbol in connection.masks.keys() - masks.keys():
            holders = self.by_symbol.get(symbol)
            if holders is not None:
                holders.pop(connection, None)
                if not holders:
                    del self.by_symbol[symbol]
        for symbol in masks.keys() - connection.masks.keys():
            self.by_symbol.setdefault(symbol, {})[connection] = None
        connection.masks = masks
        connection.wildcard_mask = wildcard_mask
        if wildcard_mask:
            self.wildcard.add(connection)
        else:
            self.wildcard.discard(connection)
        self.connections.add(connection)

    def remove(self, connection: StreamConnection) -> None:
        connection.closed = True
        self.update(connection, {}, 0)
        self.backlogged.discard(connection)
        self.connections.discard(connection)

    def listen_account(self, account_id: str, listener: AccountListener) -> None:
        self.accounts.setdefault(account_id, set()).add(listener)

    def unlisten_account(self, account_id: str, listener: AccountListener) -> None:
        listeners = self.accounts.get(account_id)
        if listeners is not None:
            listeners.discard(listener)
            if not listeners:
                del self.accounts[account_id]

    def listen_leaderboard(self, listener: LeaderboardListener) -> None:
        self.leaderboard_listeners.add(listener)

    def unlisten_leaderboard(self, listener: LeaderboardListener) -> None:
        self.leaderboard_listeners.discard(listener)

    # Revocation

    def revoke(self, payload: bytes | str) -> None:
        """A revocation message (trading.events): close every socket holding a credential in it."""
        closed = self.revocations.revoke(payload)
        if closed is not None:
            self.stats.revocations += 1
            self.stats.revoked_sockets += closed

    # Windows

    def _check_sequence(self, number: int) -> None:
        last = self.stats.last_window
        self.stats.last_window = number
        if last is None or number == last + 1:
            return
        if number > last + 1:
            missed = number - last - 1
            self.stats.gaps += 1
            self.stats.missed_windows += missed
            logger.warning("fan-out missed %d market window(s) (%d -> %d)", missed, last, number)
        else:
            self.stats.restarts += 1
            logger.info("market restarted: window %d after %d", number, last)

    async def publish_window(self, payload: bytes) -> None:
        """Route one window message to this process's connections."""
        window = Window.decode(payload)
        self.stats.windows += 1
        self._check_sequence(window.number)
        if not (self.by_symbol or self.wildcard or self.backlogged):
            self.metrics.window_done(None)
            return
        await self.deliver(EncodedWindow(window))
        self.metrics.window_done(window.published_ns)

    async def deliver(self, encoded: EncodedWindow) -> None:
        """Each connection's selection of the window, framed once per distinct selection.

        Connections that keep up are written in one synchronous pass, straight to their sockets
        (DaphneSocket), so each frame is on the wire as soon as its turn comes; the rest go
        through their outboxes.
        """
        stats = self.stats
        now = self.clock()
        selected = MessageBatcher.selections(encoded, self.by_symbol, self.wildcard)
        sharing: dict[int, int] = {}
        for wanted in selected.values():
            sharing[wanted] = sharing.get(wanted, 0) + 1
        # Frames of the selections several connections share, per encoding. The others are built,
        # written and dropped at once, so a window holds few objects alive at any moment.
        shared: dict[Encoding, dict[int, EncodedSelection]] = {Encoding.JSON: {}, Encoding.MSGPACK: {}}
        for connection, wanted in selected.items():
            encoding = connection.encoding
            selection = shared[encoding].get(wanted) if sharing[wanted] > 1 else None
            if selection is None or selection.limit != connection.frame_limit:
                parts = encoded.selected_parts(encoding, wanted)
                selection = EncodedSelection(encoding, parts, connection.frame_limit)
                if sharing[wanted] > 1:
                    shared[encoding][wanted] = selection
            if not connection.write_now(selection, stats, now):
                await self._offer(connection, selection, now)
        if self.backlogged:
            # A stalled or throttled client with nothing new this window still gets its chance
            # to drain or time out.
            for connection in [c for c in self.backlogged if c not in selected]:
                await self._offer(
                    connection, EncodedSelection(connection.encoding, [], connection.frame_limit), now
                )

    async def _offer(self, connection: StreamConnection, selection: EncodedSelection, now: float) -> None:
        try:
            await connection.offer(selection, self.stats, now)
        except Exception:
            logger.exception("stream send failed; dropping the connection from the fan-out")
            self.remove(connection)
            return
        if connection.closed:
            self.remove(connection)
        elif connection.outbox.backlogged:
            self.backlogged.add(connection)
        else:
            self.backlogged.discard(connection)

    async def _listen(self) -> None:
        backoff = 0.05
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(
                    self.windows_channel,
                    self.orders_channel,
                    self.leaderboard_channel,
                    self.revocations_channel,
                )
                self.subscribed.set()
                backoff = 0.05
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    if message["channel"] == self.windows_channel:
                        try:
                            await self.publish_window(message["data"])
                        except (ValueError, KeyError, TypeError):
                            logger.exception("malformed market window ignored")
                    elif message["channel"] == self.orders_channel:
                        self._queue_order_event(message["data"])
                    elif message["channel"] == self.leaderboard_channel:
                        self._leaderboard_pending = message["data"]
                        self._leaderboard_wakeup.set()
                    elif message["channel"] == self.revocations_channel:
                        self.revoke(message["data"])
            except asyncio.CancelledError:
                raise
            except ASYNC_REDIS_FAILURES as error:
                logger.warning("fan-out subscription lost (%s); resubscribing in %.2fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*ASYNC_REDIS_FAILURES):
                    await pubsub.aclose()
            self.stats.resubscribes += 1

    # Order events

    def _queue_order_event(self, payload: bytes) -> None:
        try:
            self._order_queue.put_nowait(payload)
        except asyncio.QueueFull:
            self.stats.order_events_dropped += 1
            logger.warning("order event dropped: the trade_updates queue is full")

    async def _order_worker(self) -> None:
        # One worker, so one account's events reach its sockets in the order they were published.
        while True:
            payload = await self._order_queue.get()
            try:
                await self.dispatch_order_event(payload)
            except Exception:
                logger.exception("order event could not be delivered")

    async def dispatch_order_event(self, payload: bytes | str) -> None:
        event = json.loads(payload)
        listeners = self.accounts.get(str(event.get("account_id")))
        if not listeners:
            return
        self.stats.order_events += 1
        order = await database_sync_to_async(order_shape_get)(
            account_id=event["account_id"], order_id=event["order_id"], state=event.get("order_state")
        )
        if order is None:
            return
        message = trade_update_message(event, order)
        snapshot = None
        if any(listener.wants_snapshot for listener in listeners):
            snapshot = await database_sync_to_async(account_snapshot_get)(account_id=event["account_id"])
        for listener in list(listeners):
            try:
                await listener.account_event(message, snapshot)
            except Exception:
                logger.exception("trade update not sent to one listener")

    # Leaderboard changes

    async def _leaderboard_worker(self) -> None:
        while True:
            await self._leaderboard_wakeup.wait()
            self._leaderboard_wakeup.clear()
            payload, self._leaderboard_pending = self._leaderboard_pending, None
            if payload is None:
                continue
            try:
                await self.dispatch_leaderboard_change(payload)
            except Exception:
                logger.exception("leaderboard change could not be delivered")

    async def dispatch_leaderboard_change(self, payload: bytes | str) -> None:
        if not self.leaderboard_listeners:
            return
        event = json.loads(payload)
        board = await database_sync_to_async(leaderboard_board_get)(
            period=str(event["period"]), snapshot_id=int(event["snapshot_id"])
        )
        if board is None:
            return
        self.stats.leaderboard_changes += 1
        frame = json.dumps({"stream": "leaderboard", "data": board}, separators=(",", ":"))
        for listener in list(self.leaderboard_listeners):
            try:
                await listener.leaderboard_changed(frame)
            except Exception:
                logger.exception("leaderboard not sent to one dashboard")

    async def _refresh_registry(self) -> None:
        while True:
            await asyncio.sleep(self.registry.ttl / 3)
            await self.registry.refresh()
            await self.symbol_budget.refresh()


# --- One manager per event loop -------------------------------------------------------------------------

_managers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SubscriptionManager] = (
    weakref.WeakKeyDictionary()
)


def manager() -> SubscriptionManager:
    """This process's manager (one per event loop: asyncio objects cannot cross loops)."""
    loop = asyncio.get_running_loop()
    found = _managers.get(loop)
    if found is None:
        found = _managers[loop] = SubscriptionManager()
    return found


async def shutdown() -> None:
    """Stop this loop's manager (tests, and servers shutting down cleanly)."""
    found = _managers.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.stop()
