"""A market-data connection as the fan-out sees it: its routing masks, its bounded outbox and its
byte budget, and how a window's frames reach its socket.

Each connection owns a bounded outbox (BackpressureManager). While the socket drains, frames go
straight out; when the server's send buffer for that socket is over STREAM_SEND_BUFFER_BYTES the
client is not reading, so windows queue up to STREAM_OUTBOX_HIGH_WATER, then conflate to the
newest event per (channel, symbol); a client still stalled after STREAM_OUTBOX_MAX_FRAMES windows
gets Alpaca's 407 "slow client" and is closed. Memory per stalled client is therefore bounded by
its subscription, never by how long it stalls.

Each connection also has a byte budget (OUTBOUND_BYTES_PER_S, a token bucket checked once per
window, not per update): a client that reads everything but is sent more than that is conflated
the same way until the budget refills, and is never closed for it.

Under daphne a frame is written straight to the socket (realtime/transport.py); anywhere else it
goes through the ASGI send, and the socket counts as always writable.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from django.conf import settings

from realtime.streams import EncodedSelection, Encoding, Part, PartKey
from realtime.transport import DaphneSocket

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Bytes of data frames a market-data connection may be sent per second, and at once after a
# quiet spell (the bucket's depth). Past it the connection is conflated to the newest event per
# (channel, symbol) until the budget refills: a client that reads everything we send still cannot
# make this process send it more than this. Twice what the dashboard's ``*`` subscription to
# trades, quotes and bars needs at 4x the market's default rate (~250 KB/s of JSON for 1,000 ticks
# a second over 500 symbols; tests/realtime/test_streams.py checks it is never conflated there).
OUTBOUND_BYTES_PER_S = 512 * 1024
OUTBOUND_BURST_BYTES = OUTBOUND_BYTES_PER_S


class DeliveryCounters(Protocol):
    """What a connection counts of its deliveries in its fan-out's statistics."""

    frames: int
    bytes: int
    throttled: int
    conflated: int
    slow_disconnects: int


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
        # A limit below any part puts every event in a frame of its own (frames never cut a part):
        # the unbatched variant benchmark stream measures batching against (Property 39).
        self.frame_limit = settings.STREAM_MAX_FRAME_BYTES if settings.STREAM_BATCH_EVENTS else 0
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

    def write_now(self, selection: EncodedSelection, stats: DeliveryCounters, now: float) -> bool:
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

    async def offer(self, selection: EncodedSelection, stats: DeliveryCounters, now: float) -> None:
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
        if selection.parts and self.outbox.conflated is not None:
            stats.conflated += 1
        for batch in batches:
            # The usual case, a client keeping up: this window's own frames, shared with every
            # connection of the same selection. A drained backlog is framed for this client alone.
            shared = (
                selection
                if batch is selection.parts
                else EncodedSelection(self.encoding, batch, self.frame_limit)
            )
            await self._write(shared, stats)

    async def _write(self, selection: EncodedSelection, stats: DeliveryCounters) -> None:
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
