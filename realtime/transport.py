"""daphne's WebSocket transport, reached under ASGI: the one module that touches the internals of
daphne, autobahn and Twisted.

ASGI gives an application a ``send`` coroutine and nothing else. Three measured gains need more
(docs/architecture.md, Framework bypasses), so this module reaches through ``send`` to daphne's
protocol:

- **Raw frame writes** (``DaphneSocket``): a whole WebSocket frame goes to the kernel at once,
  instead of through autobahn's ``sendMessage`` and Twisted's ``write``, which only flush on a
  later turn of the event loop; the fan-out delivers at the raw ``websockets`` server's rate.
  Back-pressure is read from the same transport: how much it holds unsent.
- **Handshake denial** (``deny_handshake``): daphne answers 403 to any refusal and has no ASGI
  denial-response extension; an unknown path gets its 404 through daphne's own ``serverReject``.
- **Handshake release** (``release_handshake``): what daphne, autobahn and Twisted keep of a
  handshake once the socket is open (~8 KB of an idle socket's ~20 KB) is dropped.

The internals relied on, all pinned in requirements.txt (daphne, autobahn, Twisted) and checked
through a real daphne by tests/realtime/test_transport.py:

- daphne: the ASGI send is ``functools.partial(server.handle_reply, protocol)`` with
  ``protocol`` a ``daphne.ws_protocol.WebSocketProtocol``; its ``handshake_deferred`` (while
  connecting), ``server.protocol_disconnected``, ``application_queue`` (an unbounded
  ``asyncio.Queue``), ``clean_headers``, ``request.headers`` and ``request.params``;
- autobahn: ``state``, ``STATE_CONNECTING``, ``STATE_OPEN``, ``send_queue`` (a deque),
  ``_perMessageCompress`` (None unless compression was negotiated), ``http_headers``,
  ``http_request_params``, ``http_request_data``, ``http_response_data``;
  ``autobahn.websocket.types.ConnectionDeny``;
- Twisted: the TCP transport's ``socket``, ``TLS``, ``connected``, ``disconnecting`` and its
  unsent bytes, ``dataBuffer`` from ``offset`` plus ``_tempDataLen`` (abstract.FileDescriptor);
  its ``producer``, the ``twisted.web.http.HTTPChannel`` of the upgraded request, and that
  channel's ``requests``.

Each part acts only on what it recognises and otherwise leaves the framework's own path: a send
that is not daphne's (another server, Channels' test communicator) yields no socket, TLS and
compression keep the ASGI send, and a part of the handshake state whose type changed is kept
(with one warning per process). Nothing is patched globally: each change is to one connection's
own objects. This module imports nothing of Django, so a bare ASGI app can use it too.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import logging
import struct
import termios
from collections import deque
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
# Handshake parts not recognised so far in this process: each is logged once.
_unrecognised: set[str] = set()
# Whether this process has logged (once) that every handshake part was released.
_announced = False


def daphne_protocol(send: Any) -> Any | None:
    """The daphne WebSocketProtocol behind an ASGI send (``partial(server.handle_reply, protocol)``),
    or None under any other server or test harness."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    try:
        from daphne.ws_protocol import WebSocketProtocol
    except ImportError:  # pragma: no cover - daphne is a dependency
        return None
    protocol = send.args[0]
    return protocol if isinstance(protocol, WebSocketProtocol) else None


# --- Raw frame writes and the socket's backlog ----------------------------------------------------


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


def daphne_socket(send: Any) -> DaphneSocket | None:
    """The socket behind an ASGI send under daphne over plain TCP; None under any other server
    (frames then go through the ASGI send and the socket counts as always writable)."""
    protocol = daphne_protocol(send)
    return None if protocol is None else DaphneSocket.of(protocol)


# --- Refusing a handshake with its own status ---------------------------------------------------


def deny_handshake(send: Any, status: int, reason: str) -> bool:
    """Refuse a daphne WebSocket handshake with this HTTP status.

    daphne answers 403 to any refusal (an ASGI ``websocket.close`` before the accept) and 500 to
    an application that raises, and does not implement ASGI's denial-response extension; this is
    its own ``serverReject`` with the status given. False, doing nothing, unless ``send`` is a
    daphne socket whose handshake is still pending.
    """
    protocol = daphne_protocol(send)
    if protocol is None or getattr(protocol, "state", None) != getattr(
        protocol, "STATE_CONNECTING", object()
    ):
        return False
    deferred = getattr(protocol, "handshake_deferred", None)
    server: Any = getattr(protocol, "server", None)
    if deferred is None or not hasattr(server, "protocol_disconnected"):
        return False
    from autobahn.websocket.types import ConnectionDeny

    deferred.errback(ConnectionDeny(code=status, reason=reason))
    del protocol.handshake_deferred
    server.protocol_disconnected(protocol)
    return True


# --- Releasing the handshake's leftovers ------------------------------------------------------------
#
# Measured with tracemalloc over 1,000 idle sockets (``benchmark stream``), a bare daphne socket
# holds ~20 KB of Python objects, and ~8 KB of it is never used again after the handshake:
# - daphne's inbound ``asyncio.Queue``: four empty deques (its waiting getters and putters, its
#   items, and the waiters of a ``join()`` nothing calls). A CPython deque allocates a 64-slot
#   block even when empty, ~0.75 KB each; an unbounded queue holds at most a few messages here;
# - autobahn's ``send_queue`` deque, used only while a chopped or synchronous send is in flight;
# - Twisted's HTTPChannel, which stays the transport's (no-op) producer and keeps listing the
#   upgraded request: daphne's WebRequest with its header objects, body buffer and addresses;
# - autobahn's parsed handshake (header dict, raw request and response, the ConnectionRequest's
#   header dict) and daphne's cleaned header list, which is also the ASGI scope's ``headers``.
# (autobahn also copies the factory's ~30 options into every protocol's ``__dict__``, ~1.8 KB that
# could only be shared by changing each protocol's class; that is left alone.)


class LeanDeque(list[_Item]):
    """The part of ``collections.deque`` that asyncio.Queue, asyncio.Event and autobahn's send
    queue use (append, popleft, remove, len, iteration), on a list: an empty one owns no item
    block. ``popleft`` is O(n), fine for containers that hold a handful of items at most (the
    inbound queue also has the consumer's size and rate limits in front of it)."""

    __slots__ = ()

    def popleft(self) -> _Item:
        return self.pop(0)


def release_handshake(send: Any) -> bool:
    """Free this accepted daphne socket's handshake leftovers and empty containers.

    Call after the accept has been sent (daphne completes the handshake synchronously within
    that send). Returns whether ``send`` is an open daphne socket's; the caller must drop its own
    references to the handshake headers (the scope's ``headers``) for them to be freed. The queue
    trimmed is the protocol's ``application_queue``, whose ``get`` daphne passed to the
    application as ``receive``. A part whose internals are not as expected is kept, and the
    process logs one warning naming it.
    """
    protocol = daphne_protocol(send)
    if protocol is None or getattr(protocol, "state", None) != getattr(protocol, "STATE_OPEN", object()):
        return False
    missed = [
        name
        for name, released in (
            ("inbound queue", lean_queue(getattr(protocol, "application_queue", None))),
            ("send queue", _lean_send_queue(protocol)),
            ("upgraded HTTP request", _forget_upgraded_request(protocol)),
            ("handshake headers", _forget_handshake(protocol)),
        )
        if not released
    ]
    global _announced
    if not missed and not _announced:
        _announced = True
        logger.info("daphne connection state released after the handshake (realtime/transport.py)")
    new = set(missed) - _unrecognised
    if new:
        _unrecognised.update(new)
        logger.warning(
            "daphne connection state not released (%s): internals not as expected, so each "
            "connection keeps that memory",
            ", ".join(sorted(new)),
        )
    return True


def lean_queue(queue: Any) -> bool:
    """Swap an unbounded asyncio.Queue's deques (and its join Event's) for LeanDeques, keeping
    whatever they hold, in order. False if it is not such a queue."""
    if type(queue) is not asyncio.Queue or queue.maxsize > 0:
        return False
    # Attribute names of CPython's asyncio.Queue and Event (3.11 to 3.13).
    state = vars(queue)
    finished = state.get("_finished")
    event = vars(finished) if type(finished) is asyncio.Event else {}
    holders = [(state, "_getters"), (state, "_putters"), (state, "_queue"), (event, "_waiters")]
    if not all(type(holder.get(name)) is deque for holder, name in holders):
        return False
    for holder, name in holders:
        holder[name] = LeanDeque(holder[name])
    return True


def _lean_send_queue(protocol: Any) -> bool:
    # autobahn's queue of chopped or synchronous sends: append, popleft, len.
    if type(getattr(protocol, "send_queue", None)) is not deque:
        return False
    protocol.send_queue = LeanDeque(protocol.send_queue)
    return True


def _forget_upgraded_request(protocol: Any) -> bool:
    """Drop the HTTP request the WebSocket was upgraded from.

    daphne hands the TCP transport from the HTTP request to the WebSocket protocol, but Twisted's
    HTTPChannel stays registered as the transport's producer and keeps the request in its list
    for the connection's life. The request is finished with: its transport was given away (None),
    and the channel never sees the socket's data or close again (the transport's protocol is the
    WebSocket's); as a producer it only reads its own request producer, which is None.
    """
    from twisted.web.http import HTTPChannel

    channel = getattr(getattr(protocol, "transport", None), "producer", None)
    requests = getattr(channel, "requests", None)
    if not isinstance(channel, HTTPChannel) or type(requests) is not list:
        return False
    if any(getattr(request, "transport", True) is not None for request in requests):
        return False
    channel.requests = []
    return True


# Read only while the handshake is processed (autobahn's processHandshake and succeedHandshake,
# daphne's onConnect); afterwards daphne reads ``request.path`` alone (its disconnect log).
_HANDSHAKE_ATTRIBUTES: tuple[tuple[str, type], ...] = (
    ("http_headers", dict),
    ("http_request_params", dict),
    ("http_request_data", bytes),
    ("http_response_data", str),
    ("clean_headers", list),
)


def _forget_handshake(protocol: Any) -> bool:
    request: Any = getattr(protocol, "request", None)
    if not all(type(getattr(protocol, name, None)) is kind for name, kind in _HANDSHAKE_ATTRIBUTES):
        return False
    if not (hasattr(request, "headers") and hasattr(request, "params")):
        return False
    for name, kind in _HANDSHAKE_ATTRIBUTES:
        setattr(protocol, name, kind())
    request.headers = {}
    request.params = {}
    return True
