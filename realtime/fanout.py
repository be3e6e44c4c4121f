"""Process-local fan-out: one Redis subscription per web process, routed by symbol to its sockets.

The market publishes one message per batch window (realtime/wire.py). Each process runs ONE
listener task (SubscriptionManager), started lazily by the first stream connection, which decodes
a window once, encodes each event once per encoding (streams.EncodedWindow) and hands every
subscribed connection at most one frame per window holding only its symbols (MessageBatcher).
The naive design, a channel-layer ``group_send`` per tick per client, serialises and routes each
tick once per client through Redis; this one touches Redis once per window per process.

Delivery is one synchronous pass over the window's connections. Connections that take the same
symbols and channels share one frame, built once with its WebSocket header
(streams.EncodedSelection); under daphne it is written straight to each socket (DaphneSocket)
rather than through ASGI, autobahn and a later turn of the event loop, so a connection's frame is
on the wire as soon as its turn comes and the last of 1,000 connections waits only for the
kernel copies before it. The pass allocates no container per connection, and the process's
young-generation GC threshold is raised above a window's peak (raise_gc_threshold): full
collections walking every connection's objects were the p99 latency.

Each connection owns a bounded outbox (BackpressureManager). While the socket drains, frames go
straight out; when the server's send buffer for that socket is over STREAM_SEND_BUFFER_BYTES the
client is not reading, so windows queue up to STREAM_OUTBOX_HIGH_WATER, then conflate to the
newest event per (channel, symbol); a client still stalled after STREAM_OUTBOX_MAX_FRAMES windows
gets Alpaca's 407 "slow client" and is closed. Memory per stalled client is therefore bounded by
its subscription, never by how long it stalls.

Each connection also has a byte budget (OUTBOUND_BYTES_PER_S, a token bucket checked once per
window, not per update): a client that reads everything but is sent more than that is conflated
the same way until the budget refills, and is never closed for it.

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
dashboard needs the current board, not every board in between.

Revoked credentials (trading/events.py: a key revoked, a user deactivated or deleted, a password
changed, a logout) arrive on the same subscription: each authenticated socket is held under the
credentials it showed (``hold``), and a revocation closes the sockets holding any of them at once,
after the protocol's error message (``credentials_revoked`` on each consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import gc
import json
import logging
import math
import os
import struct
import termios
import time
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from channels.db import database_sync_to_async
from django.conf import settings

from config.redis_pools import async_redis_pool
from realtime.streams import (
    CHANNEL_BITS,
    EncodedSelection,
    EncodedWindow,
    Encoding,
    Part,
    PartKey,
    trade_update_message,
)
from realtime.wire import Window

logger = logging.getLogger(__name__)

RedisFailure = (redis.RedisError, OSError, asyncio.TimeoutError)
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Bytes of data frames a market-data connection may be sent per second, and at once after a
# quiet spell (the bucket's depth). Past it the connection is conflated to the newest event per
# (channel, symbol) until the budget refills: a client that reads everything we send still cannot
# make this process send it more than this. Twice what the dashboard's ``*`` subscription to
# trades, quotes and bars needs at 4x the market's default rate (~250 KB/s of JSON for 1,000 ticks
# a second over 500 symbols; tests/realtime/test_streams.py checks it is never conflated there).
OUTBOUND_BYTES_PER_S = 512 * 1024
OUTBOUND_BURST_BYTES = OUTBOUND_BYTES_PER_S

# How long the symbols the market lists are kept per process before they are read again: a new
# listing can be subscribed to within this.
LISTED_SYMBOLS_TTL_S = 5.0

# How long a revocation is remembered: a credential check that started before it arrived and
# finishes after it (a key read from the database just before the revoke committed) is refused.
# Far above any check's duration; entries are dropped on the next revocation after it.
REVOKED_MEMORY_S = 30.0


# --- The transport: how full is this socket's send buffer, and writing to it directly -------------


class DaphneSocket:
    """One daphne WebSocket's TCP transport: how much it holds unsent, and a write that skips ASGI.

    ASGI has no back-pressure signal, and daphne's send never blocks: it appends to the Twisted
    transport's buffer, which grows without bound for a client that stops reading, so ``backlog``
    reads that buffer. daphne's send also goes through autobahn's ``sendMessage`` (a frame built
    per call, debug-log arguments formatted even when nothing is logged) and Twisted's ``write``,
    which only registers the socket with the event loop: nothing reaches the wire until the loop
    is back in its selector, so every frame of a window waited for the last connection's.

    ``write`` takes a whole WebSocket frame (built once per selection, streams.EncodedSelection)
    and hands it to the kernel with ``send()`` when Twisted holds nothing unsent for the socket,
    as asyncio's own transports do; whatever the kernel does not take, or anything written while
    Twisted still holds bytes (a control frame, an earlier window), goes to Twisted's buffer, so
    the socket's byte order is kept. Autobahn only ever writes whole frames, so frames written
    here never interleave with its own.
    """

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    @classmethod
    def of(cls, protocol: Any) -> DaphneSocket | None:
        """The socket of an autobahn protocol over plain TCP; None for anything else (TLS,
        compression negotiated), which then keeps the ASGI send."""
        transport = getattr(protocol, "transport", None)
        if transport is None or not hasattr(transport, "dataBuffer") or not hasattr(transport, "socket"):
            return None
        if getattr(transport, "TLS", False):  # bytes written to the socket would skip encryption
            return None
        if not hasattr(protocol, "STATE_OPEN") or getattr(protocol, "_perMessageCompress", None) is not None:
            return None
        return cls(protocol)

    def backlog(self) -> int:
        transport = self.protocol.transport
        if transport is None:
            return 0
        # FileDescriptor keeps written-but-unsent bytes in dataBuffer (from offset) and _tempDataBuffer.
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def kernel_backlog(self) -> int:
        """Bytes the kernel holds unsent or unacknowledged for this socket (Linux SIOCOUTQ; 0
        where it cannot be read). A client that stops reading leaves what was sent here first,
        up to the kernel's send buffer (several MB on loopback), before ``backlog`` grows."""
        transport = self.protocol.transport
        try:
            packed = fcntl.ioctl(transport.socket.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        except (AttributeError, OSError, ValueError):
            return 0
        return int(struct.unpack("i", packed)[0])

    def state(self) -> bool | None:
        """True: open for direct writes; False: closing or closed (nothing more may be sent);
        None: open, but autobahn has frames of its own queued, so writes must queue behind them."""
        protocol = self.protocol
        transport = protocol.transport
        if protocol.state != protocol.STATE_OPEN or transport is None or transport.disconnecting:
            return False
        if protocol.send_queue:
            return None
        return bool(transport.connected)

    def write(self, frame: bytes) -> None:
        transport = self.protocol.transport
        if not self.backlog():
            try:
                sent = transport.socket.send(frame)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                # A reset peer: Twisted's own write meets the same error and closes the connection
                # the usual way (onClose, the consumer's disconnect).
                sent = 0
            if sent == len(frame):
                return
            frame = frame[sent:]
        transport.write(frame)


def unwrap_send(send: Send) -> tuple[Send, DaphneSocket | None]:
    """The innermost ASGI send and, under daphne over TCP, the connection's socket.

    daphne's send is ``partial(server.handle_reply, protocol)``; Channels' session middleware
    wraps it in a bound method keeping it as ``real_send``. Data frames skip that wrapper (it only
    acts on HTTP responses). Any other server yields no socket: frames go through the ASGI send
    and the socket counts as always writable.
    """
    target: Any = send
    for _ in range(8):
        if isinstance(target, functools.partial):
            for argument in target.args:
                socket = DaphneSocket.of(argument)
                if socket is not None:
                    return target, socket
            return target, None
        inner = getattr(getattr(target, "__self__", None), "real_send", None)
        if inner is None:
            break
        target = inner
    return target, None


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
        # Created when a window first has to wait: most clients never fall behind, and an empty
        # deque costs ~600 bytes per connection.
        self.pending: deque[list[Part]] | None = None
        self.conflated: dict[PartKey, str | bytes] | None = None
        self.behind = 0

    @property
    def backlogged(self) -> bool:
        return bool(self.pending) or self.conflated is not None

    def offer(self, parts: list[Part], *, writable: bool, throttled: bool = False) -> list[list[Part]] | None:
        """``throttled``: the connection is over its byte budget. A client that reads is then
        conflated (the newest part per key waits for the budget), never counted as falling behind."""
        if writable and throttled:
            if parts:
                if self.pending is None:
                    self.pending = deque()
                self.pending.append(parts)
                self._conflate()
            self.behind = 0
            return []
        if writable and not self.backlogged:
            self.behind = 0
            return [parts] if parts else []
        if parts:
            if self.pending is None:
                self.pending = deque()
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
        if self.pending:
            batches.extend(self.pending)
        self.pending = None
        self.behind = 0
        return batches

    def size(self) -> int:
        """Parts held: bounded by high_water windows plus one part per (channel, symbol)."""
        return sum(len(batch) for batch in self.pending or ()) + len(self.conflated or ())


# --- Connections as the fan-out sees them ------------------------------------------------------------


class StreamConnection:
    """One market-data socket: its routing masks, encoding, outbox and how to write to it."""

    __slots__ = (
        "__weakref__",
        "budget",
        "budget_at",
        "closed",
        "encoding",
        "frame_limit",
        "masks",
        "on_slow",
        "outbox",
        "send",
        "send_buffer_limit",
        "socket",
        "wildcard_mask",
    )

    def __init__(
        self,
        *,
        send: Send,
        encoding: Encoding,
        on_slow: Callable[[], Awaitable[None]],
        socket: DaphneSocket | None = None,
    ) -> None:
        self.send = send
        self.socket = socket
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
        # The byte budget (OUTBOUND_BYTES_PER_S): a token bucket, full at first. It may go below
        # zero, since a batch is sent whole; nothing more is sent until it has refilled.
        self.budget: float = OUTBOUND_BURST_BYTES
        self.budget_at = -math.inf

    def writable(self) -> bool:
        return self.socket is None or self.socket.backlog() <= self.send_buffer_limit

    def within_budget(self, now: float) -> bool:
        """Refill the byte budget up to ``now`` (the fan-out's clock); whether it allows a batch."""
        self.budget = min(OUTBOUND_BURST_BYTES, self.budget + (now - self.budget_at) * OUTBOUND_BYTES_PER_S)
        self.budget_at = now
        return self.budget > 0

    def spend(self, size: int, now: float) -> None:
        """``size`` bytes sent outside the fan-out (a subscription reply) count against the budget."""
        self.within_budget(now)
        self.budget -= size

    def write_now(self, selection: EncodedSelection, stats: FanoutStats, now: float) -> bool:
        """The usual case, done without a coroutine: a daphne socket that keeps up takes this
        window's frames, shared with every connection of the same selection. False: ``offer``."""
        socket = self.socket
        outbox = self.outbox
        if (
            socket is None
            or self.closed
            or outbox.backlogged
            or socket.state() is not True
            or socket.backlog() > self.send_buffer_limit
            or not self.within_budget(now)
        ):
            return False
        outbox.behind = 0
        for frame in selection.wire():
            socket.write(frame)
        size = selection.payload_bytes()
        self.budget -= size
        stats.frames += len(selection.frames())
        stats.bytes += size
        return True

    async def offer(self, selection: EncodedSelection, stats: FanoutStats, now: float) -> None:
        """This window's selection: sent now, or queued, conflated or refused by the outbox."""
        if self.closed:
            return
        throttled = not self.within_budget(now)
        if throttled and selection.parts:
            stats.throttled += 1
        # Off the fast path (write_now), what the kernel still holds for the socket counts too:
        # held to its byte budget, a client that does not read at all would only fill the
        # kernel's send buffer (several MB on loopback), slowly, and never look stalled.
        writable = self.writable() and (
            self.socket is None or self.socket.kernel_backlog() <= self.send_buffer_limit
        )
        batches = self.outbox.offer(selection.parts, writable=writable, throttled=throttled)
        if batches is None:
            self.closed = True
            stats.slow_disconnects += 1
            logger.warning("closing a slow client (407): %d windows behind", self.outbox.behind)
            await self.on_slow()
            return
        for batch in batches:
            # The usual case, a client keeping up: this window's own frames, shared with every
            # connection of the same selection. A drained backlog is framed for this client alone.
            shared = (
                selection
                if batch is selection.parts
                else EncodedSelection(self.encoding, batch, self.frame_limit)
            )
            await self._write(shared, stats)

    async def _write(self, selection: EncodedSelection, stats: FanoutStats) -> None:
        socket = self.socket
        state = socket.state() if socket is not None else None
        if state is False:
            return  # closing: the consumer's disconnect removes it from the fan-out
        if socket is not None and state:
            for frame in selection.wire():
                socket.write(frame)
        else:
            for payload in selection.frames():
                if isinstance(payload, bytes):
                    await self.send({"type": "websocket.send", "bytes": payload})
                else:
                    await self.send({"type": "websocket.send", "text": payload})
        size = selection.payload_bytes()
        self.budget -= size
        stats.frames += len(selection.frames())
        stats.bytes += size


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
        collector thousands of live objects to walk and promote (each full collection of a
        process holding 1,000 connections is a pause of 100-200 ms).
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


class CredentialHolder(Protocol):
    """An authenticated socket: told when a credential it authenticated with is revoked."""

    async def credentials_revoked(self) -> None: ...


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
    order_events: int = 0
    order_events_dropped: int = 0
    leaderboard_changes: int = 0
    revocations: int = 0
    revoked_sockets: int = 0
    last_window: int | None = None


# --- Redis ------------------------------------------------------------------------------------------


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


# KEYS[1]: a user's symbol counts, a hash of connection token -> "count:expiry in ms".
# ARGV: token, its new count, the user's budget, now (ms), the token's expiry (ms), the hash's TTL
# (ms). Returns 1 and records the count if the user's live connections stay within the budget,
# else 0 and changes nothing. Fields of connections whose process died (not refreshed) expire.
_CLAIM_SYMBOLS = """
local total = 0
local now = tonumber(ARGV[4])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= ARGV[1] then
    local count, expiry = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if count and tonumber(expiry) > now then
      total = total + tonumber(count)
    else
      redis.call('HDEL', KEYS[1], fields[i])
    end
  end
end
local wanted = tonumber(ARGV[2])
if wanted > 0 and total + wanted > tonumber(ARGV[3]) then
  return 0
end
if wanted > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""


class SymbolBudget:
    """Symbols subscribed per user, summed over all of its market-data connections (all its keys,
    its sessions) on every web process: STREAM_MAX_SYMBOLS_PER_USER (405 beyond).

    Each connection's count is a field of the user's hash, with an expiry its process refreshes
    (as ConnectionRegistry does), so a crashed process's counts lapse. When Redis is unavailable
    only this process's connections are counted.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limit: int,
        ttl: float,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limit = limit
        self.ttl = ttl
        self.prefix = prefix
        self.clock = clock
        # user -> connection token -> symbols, for this process's connections.
        self.local: dict[str, dict[str, int]] = {}

    def key(self, user: str) -> str:
        return f"{self.prefix}:symbols:{user}"

    async def claim(self, user: str, token: str, count: int) -> bool:
        """Set the connection's count to ``count`` if the user stays within the budget."""
        now_ms = int(self.clock() * 1000)
        ttl_ms = int(self.ttl * 1000)
        try:
            allowed = await self.client.eval(
                _CLAIM_SYMBOLS,
                1,
                self.key(user),
                token,
                count,
                self.limit,
                now_ms,
                now_ms + ttl_ms,
                ttl_ms + 1000,
            )
        except RedisFailure:
            logger.warning("stream symbol budget: Redis unavailable, counting this process only")
            mine = self.local.get(user, {})
            allowed = count == 0 or sum(mine.values()) - mine.get(token, 0) + count <= self.limit
        if not allowed:
            return False
        if count:
            self.local.setdefault(user, {})[token] = count
        else:
            self._forget(user, token)
        return True

    async def release(self, user: str, token: str) -> None:
        if token not in self.local.get(user, {}):
            return
        self._forget(user, token)
        with contextlib.suppress(*RedisFailure):
            await self.client.hdel(self.key(user), token)

    def _forget(self, user: str, token: str) -> None:
        counts = self.local.get(user)
        if counts is not None:
            counts.pop(token, None)
            if not counts:
                del self.local[user]

    async def refresh(self) -> None:
        if not self.local:
            return
        expiry = int((self.clock() + self.ttl) * 1000)
        with contextlib.suppress(*RedisFailure):
            async with self.client.pipeline(transaction=False) as pipe:
                for user, counts in self.local.items():
                    pipe.hset(self.key(user), mapping={t: f"{n}:{expiry}" for t, n in counts.items()})
                    pipe.pexpire(self.key(user), int(self.ttl * 1000) + 1000)
                await pipe.execute()


class ListedSymbols:
    """The symbols the market lists (trading.selectors.tradable_symbols_get), read at most once
    per LISTED_SYMBOLS_TTL_S by this process, however many connections subscribe meanwhile.

    A subscription holds only these: a symbol nobody lists is left out of it and of its reply,
    so a client cannot make this process route, store and echo names it made up.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[frozenset[str]]],
        *,
        ttl: float = LISTED_SYMBOLS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.ttl = ttl
        self.clock = clock
        self.symbols: frozenset[str] | None = None
        self.read_at = -math.inf
        self._loading: asyncio.Future[frozenset[str]] | None = None

    async def get(self) -> frozenset[str]:
        if self.symbols is not None and self.clock() - self.read_at < self.ttl:
            return self.symbols
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._loading)

    async def _read(self) -> frozenset[str]:
        try:
            symbols = await self.load()
        except Exception:
            if self.symbols is None:
                raise
            logger.warning("listed symbols not re-read (database unavailable?): keeping the last list")
            return self.symbols
        finally:
            self._loading = None
        self.symbols, self.read_at = symbols, self.clock()
        return symbols


def listed_symbols_read() -> Awaitable[frozenset[str]]:
    from trading.selectors import tradable_symbols_get

    return database_sync_to_async(tradable_symbols_get)()


# Failed auths from one client address before it is refused without a lookup. Far above the
# per-key limit: behind a NAT or an untrusted proxy one address is many people, and a bot with a
# wrong secret is already stopped by its key's own count.
AUTH_FAILURES_PER_ADDRESS_MAX = 50

# KEYS[1]: a failure counter. ARGV[1]: the window in milliseconds. Returns the count.
# INCR, then give the counter its window when it has none: a new counter, or one left without an
# expiry (by an earlier version, or a crash between two commands). One script, so no counter is
# ever left behind without its expiry. Redis 6.2 has no EXPIRE ... NX, which this stands for.
_COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class AuthFailureLimiter:
    """Failed stream auths per client address and per existing key, in a fixed window.

    alpaca-py reconnects after a failed auth; a bot with a wrong secret would otherwise verify
    keys in a loop. Past a limit the server answers 402 without checking and closes. A key is
    limited after ``limit`` failures within ``window_s``; an address only after
    ``address_limit`` (AUTH_FAILURES_PER_ADDRESS_MAX, or ``limit`` if higher). Failures with a key
    id nobody owns count against the address alone, so guessing ids neither fills Redis nor locks
    anyone out. Each counter expires ``window_s`` after its first failure. A Redis outage disables
    the limit rather than locking everyone out.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limit: int,
        window_s: float,
        prefix: str,
        address_limit: int = AUTH_FAILURES_PER_ADDRESS_MAX,
    ) -> None:
        self.client = client
        self.limit = limit
        self.address_limit = max(address_limit, limit)
        self.window_ms = max(1, int(window_s * 1000))
        self.prefix = prefix

    def address_key(self, address: str) -> str:
        return f"{self.prefix}:authfail:ip:{address}"

    def key_id_key(self, key_id: str) -> str:
        return f"{self.prefix}:authfail:key:{key_id}"

    async def blocked(self, *, address: str, key_id: str | None) -> bool:
        keys = [self.address_key(address)]
        if key_id:
            keys.append(self.key_id_key(key_id))
        try:
            counts = await self.client.mget(keys)
        except RedisFailure:
            return False
        limits = (self.address_limit, self.limit)
        return any(
            count is not None and int(count) >= limit for count, limit in zip(counts, limits, strict=False)
        )

    async def failed(self, *, address: str, key_id: str | None) -> None:
        """Count one failure for the address and, when it names an existing key, for that key."""
        keys = [self.address_key(address)]
        if key_id:
            keys.append(self.key_id_key(key_id))
        with contextlib.suppress(*RedisFailure):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.eval(_COUNT_FAILURE, 1, key, self.window_ms)
                await pipe.execute()


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
        # Credential (trading.events' names) -> the sockets authenticated with it.
        self.holders: dict[str, dict[CredentialHolder, None]] = {}
        # Credential -> when its revocation arrived (time.monotonic()), for REVOKED_MEMORY_S.
        self.revoked: dict[str, float] = {}
        self._revoking: set[asyncio.Task[None]] = set()
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
        self.symbol_budget = SymbolBudget(
            self.redis,
            limit=settings.STREAM_MAX_SYMBOLS_PER_USER,
            ttl=settings.STREAM_CONNECTION_TTL_S,
            prefix=settings.STREAM_REDIS_PREFIX,
        )
        self.listed = ListedSymbols(listed_symbols_read, clock=clock)
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
        with contextlib.suppress(*RedisFailure):
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

    def hold(self, credentials: Iterable[str], holder: CredentialHolder, *, checked_at: float) -> bool:
        """Register ``holder`` under its credentials; False, registering nothing, if one of them
        was revoked after ``checked_at`` (time.monotonic() when its check started): that check may
        have read the credential before the revocation committed."""
        credentials = tuple(credentials)
        if any(self.revoked.get(credential, -math.inf) >= checked_at for credential in credentials):
            return False
        for credential in credentials:
            self.holders.setdefault(credential, {})[holder] = None
        return True

    def release(self, credentials: Iterable[str], holder: CredentialHolder) -> None:
        for credential in credentials:
            holders = self.holders.get(credential)
            if holders is not None:
                holders.pop(holder, None)
                if not holders:
                    del self.holders[credential]

    def revoke(self, payload: bytes | str) -> None:
        """A revocation message (trading.events): close every socket holding a credential in it."""
        try:
            credentials = [str(credential) for credential in json.loads(payload)["revoke"]]
        except (ValueError, KeyError, TypeError):
            logger.warning("malformed stream revocation ignored: %r", payload[:200])
            return
        now = self.clock()
        self.revoked = {c: at for c, at in self.revoked.items() if now - at < REVOKED_MEMORY_S}
        self.stats.revocations += 1
        revoked: dict[CredentialHolder, None] = {}
        for credential in credentials:
            self.revoked[credential] = now
            revoked.update(self.holders.pop(credential, {}))
        for holder in revoked:
            task = asyncio.create_task(self._close_revoked(holder))
            self._revoking.add(task)
            task.add_done_callback(self._revoking.discard)
        self.stats.revoked_sockets += len(revoked)

    async def _close_revoked(self, holder: CredentialHolder) -> None:
        try:
            await holder.credentials_revoked()
        except Exception:
            logger.exception("a socket whose credentials were revoked could not be closed cleanly")

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
        await self.deliver(EncodedWindow(window))

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
        board = await database_sync_to_async(leaderboard_board)(
            str(event["period"]), int(event["snapshot_id"])
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


def leaderboard_board(period: str, snapshot_id: int) -> dict[str, Any] | None:
    """The changed board as the dashboard shows it: GET /v2/leaderboard?limit=<dashboard limit>."""
    from analytics.selectors import leaderboard_snapshot_get

    return leaderboard_snapshot_get(
        period=period, snapshot_id=snapshot_id, limit=settings.DASHBOARD_LEADERBOARD_LIMIT
    )


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
