"""Releasing what daphne, autobahn and Twisted keep of a WebSocket's handshake once it is open,
and refusing a handshake with the HTTP status it deserves (``deny_handshake``).

An idle stream connection is mostly server bookkeeping: measured with tracemalloc over 1,000 idle
sockets (``benchmark stream``), a bare daphne socket holds ~20 KB of Python objects, and ~8 KB of
it is never used again after the handshake:

- daphne's inbound ``asyncio.Queue``: four empty deques (its waiting getters and putters, its items,
  and the waiters of a ``join()`` nothing calls). A CPython deque allocates a 64-slot block even
  when empty, ~0.75 KB each; the queue of an unbounded queue holds at most a few messages;
- autobahn's ``send_queue`` deque, used only while a chopped or synchronous send is in flight;
- Twisted's HTTPChannel, which stays the transport's (no-op) producer and keeps listing the upgraded
  request: daphne's WebRequest with its header objects, body buffer and addresses;
- autobahn's parsed handshake (header dict, raw request and response, the ConnectionRequest's
  header dict) and daphne's cleaned header list, which is also the ASGI scope's ``headers``.

(autobahn also copies the factory's ~30 options into every protocol's ``__dict__``, ~1.8 KB that
could only be shared by changing each protocol's class; that is left alone.)

``release_handshake`` swaps the containers for list-backed ones that allocate nothing while
empty, and drops the handshake's leftovers. It only acts on what it recognises (daphne's protocol,
open, with exactly the types it expects) and otherwise leaves that part as it is: under another
server nothing happens, and under a daphne, autobahn, Twisted or Python whose internals changed a
connection keeps that memory and the process logs one warning naming what it did not recognise
(tests/realtime/test_stream_stack.py fails on it). Nothing is patched globally: each change is to
this connection's own objects.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

_Item = TypeVar("_Item")
# Parts not recognised so far in this process: each is logged once.
_unrecognised: set[str] = set()
# Whether this process has logged (once) that every part was released.
_announced = False


class LeanDeque(list[_Item]):
    """The part of ``collections.deque`` that asyncio.Queue, asyncio.Event and autobahn's send
    queue use (append, popleft, remove, len, iteration), on a list: an empty one owns no item
    block. ``popleft`` is O(n), fine for containers that hold a handful of items at most (the
    inbound queue also has the consumer's size and rate limits in front of it)."""

    __slots__ = ()

    def popleft(self) -> _Item:
        return self.pop(0)


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


def release_handshake(send: Any) -> bool:
    """Free this accepted daphne socket's handshake leftovers and empty containers.

    Call after the accept has been sent (daphne completes the handshake synchronously within
    that send). Returns whether ``send`` is an open daphne socket's; the caller must drop its own
    references to the handshake headers (the scope's ``headers``) for them to be freed. The queue
    trimmed is the protocol's ``application_queue``, whose ``get`` daphne passed to the
    application as ``receive``.
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
        logger.info("daphne connection state released after the handshake (realtime/daphne_trim.py)")
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
