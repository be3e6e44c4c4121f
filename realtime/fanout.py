"""Process-local fan-out: one Redis subscription per web process, routed by symbol to its sockets.

The market publishes one message per batch window (realtime/wire.py). Each process runs ONE
listener task (SubscriptionManager), started lazily by the first stream connection, which decodes
a window once, encodes each event once per encoding (streams.EncodedWindow) and hands every
subscribed connection at most one frame per window holding only its symbols (MessageBatcher).
The naive design, a channel-layer ``group_send`` per tick per client, serialises and routes each
tick once per client through Redis; this one touches Redis once per window per process.

Each connection owns a bounded outbox (BackpressureManager). While the socket drains, frames go
straight out; when the server's send buffer for that socket is over STREAM_SEND_BUFFER_BYTES the
client is not reading, so windows queue up to STREAM_OUTBOX_HIGH_WATER, then conflate to the
newest event per (channel, symbol); a client still stalled after STREAM_OUTBOX_MAX_FRAMES windows
gets Alpaca's 407 "slow client" and is closed. Memory per stalled client is therefore bounded by
its subscription, never by how long it stalls.

Redis pub/sub drops a subscriber whose output buffer overflows (a process that fell behind), so
the listener re-subscribes whenever its connection fails, and window numbers are checked: a jump
forward is counted and logged as missed windows, a jump backwards is a market restart. Windows
carry no incremental state, so the next window is already a full resync for routing; clients are
never sent replayed trades (bots would count them twice) and the dashboard refreshes from its
snapshot endpoint. A gap seen on a live subscription does not tear it down: the missed windows
are gone either way, and re-subscribing would also drop the windows already buffered behind it.

Order events (trading/events.py) arrive on the same subscription and are turned into
``trade_updates`` for the account's listeners on this process, one database read per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from realtime.streams import EncodedWindow, Encoding, Part, PartKey, frames_for, trade_update_message
from realtime.wire import Window

logger = logging.getLogger(__name__)

RedisFailure = (redis.RedisError, OSError, asyncio.TimeoutError)
Send = Callable[[dict[str, Any]], Awaitable[None]]


# --- The transport: how full is this socket's send buffer? ------------------------------------------


def unwrap_send(send: Send) -> tuple[Send, Callable[[], int] | None]:
    """The innermost ASGI send and, under daphne, a probe of the socket's unsent bytes.

    ASGI has no back-pressure signal, and daphne's send never blocks: it appends to the Twisted
    transport's buffer, which grows without bound for a client that stops reading. daphne's send
    is ``partial(server.handle_reply, protocol)``; Channels' session middleware wraps it in a bound
    method keeping it as ``real_send``. Data frames skip that wrapper (it only acts on HTTP
    responses). Any other server yields no probe and the socket counts as always writable.
    """
    target: Any = send
    for _ in range(8):
        if isinstance(target, functools.partial):
            for argument in target.args:
                transport = getattr(argument, "transport", None)
                if transport is not None and hasattr(transport, "dataBuffer"):
                    return target, functools.partial(_twisted_backlog, argument)
            return target, None
        inner = getattr(getattr(target, "__self__", None), "real_send", None)
        if inner is None:
            break
        target = inner
    return target, None


def _twisted_backlog(protocol: Any) -> int:
    transport = protocol.transport
    if transport is None:
        return 0
    # FileDescriptor keeps written-but-unsent bytes in dataBuffer (from offset) and _tempDataBuffer.
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


# --- Per-connection outbox ---------------------------------------------------------------------------


class BackpressureManager:
    """A connection's bounded outbox: send, queue, conflate, or give up (407).

    ``offer`` returns the batches to send now (each becomes one or more frames), or None when
    the client has stalled for more than ``max_behind`` windows and must be disconnected.
    """

    __slots__ = ("behind", "conflated", "high_water", "max_behind", "pending")

    def __init__(self, *, high_water: int, max_behind: int) -> None:
        self.high_water = high_water
        self.max_behind = max_behind
        self.pending: deque[list[Part]] = deque()
        self.conflated: dict[PartKey, str | bytes] | None = None
        self.behind = 0

    @property
    def backlogged(self) -> bool:
        return bool(self.pending) or self.conflated is not None

    def offer(self, parts: list[Part], *, writable: bool) -> list[list[Part]] | None:
        if writable and not self.backlogged:
            self.behind = 0
            return [parts] if parts else []
        if parts:
            self.pending.append(parts)
            # Once conflating, every new window folds in at once until the client drains.
            if self.conflated is not None or len(self.pending) > self.high_water:
                self._conflate()
        if writable:
            return self.drain()
        self.behind += 1
        if self.behind > self.max_behind:
            return None
        return []

    def _conflate(self) -> None:
        merged = self.conflated if self.conflated is not None else {}
        while self.pending:
            for key, payload in self.pending.popleft():
                # pop first so a re-inserted key moves to the end: the merged batch stays in
                # the order of each key's newest event.
                merged.pop(key, None)
                merged[key] = payload
        self.conflated = merged

    def drain(self) -> list[list[Part]]:
        batches: list[list[Part]] = []
        if self.conflated:
            batches.append(list(self.conflated.items()))
        self.conflated = None
        batches.extend(self.pending)
        self.pending.clear()
        self.behind = 0
        return batches

    def size(self) -> int:
        """Parts held: bounded by high_water windows plus one part per (channel, symbol)."""
        return sum(len(batch) for batch in self.pending) + len(self.conflated or ())


# --- Connections as the fan-out sees them ------------------------------------------------------------


class StreamConnection:
    """One market-data socket: its routing masks, encoding, outbox and raw send."""

    __slots__ = (
        "__weakref__",
        "closed",
        "encoding",
        "frame_limit",
        "masks",
        "on_slow",
        "outbox",
        "probe",
        "send",
        "send_buffer_limit",
        "wildcard_mask",
    )

    def __init__(
        self,
        *,
        send: Send,
        encoding: Encoding,
        on_slow: Callable[[], Awaitable[None]],
        probe: Callable[[], int] | None = None,
    ) -> None:
        self.send = send
        self.probe = probe
        self.encoding = encoding
        self.on_slow = on_slow
        self.masks: dict[str, int] = {}
        self.wildcard_mask = 0
        self.closed = False
        self.frame_limit = settings.STREAM_MAX_FRAME_BYTES
        self.send_buffer_limit = settings.STREAM_SEND_BUFFER_BYTES
        self.outbox = BackpressureManager(
            high_water=settings.STREAM_OUTBOX_HIGH_WATER, max_behind=settings.STREAM_OUTBOX_MAX_FRAMES
        )

    def writable(self) -> bool:
        return self.probe is None or self.probe() <= self.send_buffer_limit

    async def offer(self, parts: list[Part], stats: FanoutStats) -> None:
        if self.closed:
            return
        batches = self.outbox.offer(parts, writable=self.writable())
        if batches is None:
            self.closed = True
            stats.slow_disconnects += 1
            logger.warning("closing a slow client (407): %d windows behind", self.outbox.behind)
            await self.on_slow()
            return
        for batch in batches:
            frames = frames_for(self.encoding, [payload for _, payload in batch], self.frame_limit)
            for frame in frames:
                if isinstance(frame, bytes):
                    await self.send({"type": "websocket.send", "bytes": frame})
                else:
                    await self.send({"type": "websocket.send", "text": frame})
                stats.frames += 1
                stats.bytes += len(frame)


class MessageBatcher:
    """Which parts of a window each connection gets: only its symbols and channels."""

    @staticmethod
    def targets(
        encoded: EncodedWindow,
        by_symbol: dict[str, set[StreamConnection]],
        wildcard: set[StreamConnection],
    ) -> dict[StreamConnection, list[tuple[str, int]]]:
        wanted: dict[StreamConnection, list[tuple[str, int]]] = {}
        for symbol in encoded.symbols:
            present = encoded.channels_of(symbol)
            for connection in by_symbol.get(symbol, ()):
                mask = (connection.masks.get(symbol, 0) | connection.wildcard_mask) & present
                if mask:
                    wanted.setdefault(connection, []).append((symbol, mask))
            for connection in wildcard:
                if symbol in connection.masks:
                    continue  # routed above with its named channels merged in
                mask = connection.wildcard_mask & present
                if mask:
                    wanted.setdefault(connection, []).append((symbol, mask))
        return wanted


class AccountListener(Protocol):
    """A trade_updates or dashboard socket listening to one account's order events."""

    wants_snapshot: bool

    async def account_event(self, trade_update: dict[str, Any], snapshot: dict[str, Any] | None) -> None: ...


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
    order_events: int = 0
    order_events_dropped: int = 0
    last_window: int | None = None


# --- Redis ------------------------------------------------------------------------------------------


def async_redis_pool() -> aioredis.BlockingConnectionPool:
    """A bounded, blocking asyncio pool: at most REDIS_POOL_MAX_CONNECTIONS, waiting
    REDIS_POOL_TIMEOUT for a free one, then failing into the caller's degraded path."""
    return aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        client_name=f"{settings.STREAM_REDIS_CLIENT_NAME}-{os.getpid()}",
    )


class ConnectionRegistry:
    """Open stream connections per API key (or user), shared by every web process (error 406).

    A sorted set per identity holds one member per connection, scored by an expiry that each
    process refreshes for its live connections; a process that dies leaves members that expire
    instead of locking the key out. When Redis is unavailable only this process's connections
    are counted (degraded, never refusing because Redis is down).
    """

    def __init__(self, client: aioredis.Redis, *, ttl: float, prefix: str) -> None:
        self.client = client
        self.ttl = ttl
        self.prefix = prefix
        self.local: dict[str, set[str]] = {}

    def _key(self, identity: str) -> str:
        return f"{self.prefix}:conns:{identity}"

    async def acquire(self, identity: str, token: str, limit: int) -> bool:
        key = self._key(identity)
        try:
            now = time.time()
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {token: now + self.ttl})
                pipe.zcard(key)
                pipe.expire(key, int(self.ttl) + 1)
                _, _, count, _ = await pipe.execute()
            if count > limit:
                await self.client.zrem(key, token)
                return False
        except RedisFailure:
            logger.warning("stream connection limit: Redis unavailable, counting this process only")
            if len(self.local.get(identity, ())) >= limit:
                return False
        self.local.setdefault(identity, set()).add(token)
        return True

    async def release(self, identity: str, token: str) -> None:
        tokens = self.local.get(identity)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self.local[identity]
        with contextlib.suppress(*RedisFailure):
            await self.client.zrem(self._key(identity), token)

    async def refresh(self) -> None:
        if not self.local:
            return
        expiry = time.time() + self.ttl
        with contextlib.suppress(*RedisFailure):
            async with self.client.pipeline(transaction=False) as pipe:
                for identity, tokens in self.local.items():
                    pipe.zadd(self._key(identity), dict.fromkeys(tokens, expiry), xx=True)
                    pipe.expire(self._key(identity), int(self.ttl) + 1)
                await pipe.execute()


class AuthFailureLimiter:
    """Failed stream auths per client address and per key in a sliding-ish fixed window.

    alpaca-py reconnects after a failed auth; a bot with a wrong secret would otherwise verify
    keys in a loop. Past the limit the server answers 402 without checking and closes. A Redis
    outage disables the limit rather than locking everyone out.
    """

    def __init__(self, client: aioredis.Redis, *, limit: int, window_s: int, prefix: str) -> None:
        self.client = client
        self.limit = limit
        self.window_s = window_s
        self.prefix = prefix

    def _keys(self, names: Iterable[str]) -> list[str]:
        return [f"{self.prefix}:authfail:{name}" for name in names if name]

    async def blocked(self, *names: str) -> bool:
        keys = self._keys(names)
        if not keys:
            return False
        try:
            counts = await self.client.mget(keys)
        except RedisFailure:
            return False
        return any(count is not None and int(count) >= self.limit for count in counts)

    async def failed(self, *names: str) -> None:
        with contextlib.suppress(*RedisFailure):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in self._keys(names):
                    pipe.incr(key)
                    pipe.expire(key, self.window_s, nx=True)
                await pipe.execute()


# --- The manager --------------------------------------------------------------------------------------


class SubscriptionManager:
    """The process's one Redis subscription and its routing tables."""

    def __init__(self) -> None:
        self.pool = async_redis_pool()
        self.redis = aioredis.Redis(connection_pool=self.pool)
        self.windows_channel = settings.MARKET_WINDOWS_CHANNEL.encode()
        self.orders_channel = settings.ORDER_EVENTS_CHANNEL.encode()
        self.by_symbol: dict[str, set[StreamConnection]] = {}
        self.wildcard: set[StreamConnection] = set()
        self.connections: weakref.WeakSet[StreamConnection] = weakref.WeakSet()
        self.backlogged: set[StreamConnection] = set()
        self.accounts: dict[str, set[AccountListener]] = {}
        self.stats = FanoutStats()
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
        self.subscribed = asyncio.Event()
        self._order_queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=settings.STREAM_ORDER_EVENT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []

    # Lifecycle

    async def ensure_started(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._listen(), name="stream-fanout"),
                asyncio.create_task(self._order_worker(), name="stream-order-events"),
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
        with contextlib.suppress(*RedisFailure):
            await self.pool.aclose()

    # Routing tables

    def update(self, connection: StreamConnection, masks: dict[str, int], wildcard_mask: int) -> None:
        for symbol in connection.masks.keys() - masks.keys():
            holders = self.by_symbol.get(symbol)
            if holders is not None:
                holders.discard(connection)
                if not holders:
                    del self.by_symbol[symbol]
        for symbol in masks.keys() - connection.masks.keys():
            self.by_symbol.setdefault(symbol, set()).add(connection)
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
            return
        encoded = EncodedWindow(window)
        wanted = MessageBatcher.targets(encoded, self.by_symbol, self.wildcard)
        for connection, symbols in wanted.items():
            await self._offer(connection, encoded.parts_for(connection.encoding, symbols))
        # A stalled client with nothing new this window still gets its chance to drain or time out.
        for connection in list(self.backlogged - wanted.keys()):
            await self._offer(connection, [])

    async def _offer(self, connection: StreamConnection, parts: list[Part]) -> None:
        try:
            await connection.offer(parts, self.stats)
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
                await pubsub.subscribe(self.windows_channel, self.orders_channel)
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
            except asyncio.CancelledError:
                raise
            except RedisFailure as error:
                logger.warning("fan-out subscription lost (%s); resubscribing in %.2fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                self.subscribed.clear()
                with contextlib.suppress(*RedisFailure):
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
        order = await database_sync_to_async(order_shape)(event["account_id"], event["order_id"])
        if order is None:
            return
        message = trade_update_message(event, order)
        snapshot = None
        if any(listener.wants_snapshot for listener in listeners):
            snapshot = await database_sync_to_async(account_snapshot)(event["account_id"])
        for listener in list(listeners):
            try:
                await listener.account_event(message, snapshot)
            except Exception:
                logger.exception("trade update not sent to one listener")

    async def _refresh_registry(self) -> None:
        while True:
            await asyncio.sleep(self.registry.ttl / 3)
            await self.registry.refresh()


def order_shape(account_id: str, order_id: str) -> dict[str, Any] | None:
    """The order's REST shape, read after the event's commit (one query with its joins)."""
    from trading import selectors
    from trading.api.serializers import OrderSerializer
    from trading.errors import NotFound

    try:
        order = selectors.order_get(account_id=uuid.UUID(account_id), order_id=order_id)
    except (NotFound, ValueError):
        return None
    return OrderSerializer.shape(order)


def account_snapshot(account_id: str) -> dict[str, Any] | None:
    """The dashboard's account and positions, in the REST API's shapes."""
    from trading import selectors
    from trading.api.serializers import AccountSerializer, PositionSerializer
    from trading.models import Account

    account = Account.objects.filter(pk=account_id).first()
    if account is None:
        return None
    return {
        "account": AccountSerializer.shape(selectors.account_summary(account=account)),
        "positions": [PositionSerializer.shape(p) for p in selectors.portfolio_positions(account=account)],
    }


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
