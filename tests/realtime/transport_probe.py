"""ASGI app for tests/realtime/test_transport.py: ``daphne tests.realtime.transport_probe:application``.

It drives realtime/transport.py against daphne's real objects and prints what it saw, one line
per report (``PROBE {json}``), to the server's log, which the test reads. No Django, no Channels:
only daphne, autobahn, Twisted and the transport module itself.

- ``/deny/<status>``: the handshake refused with that HTTP status (``deny_handshake``);
- ``/release``: accepted, the handshake's leftovers released (``release_handshake``), then each
  message echoed through the ASGI send, so the released inbound queue is seen still to work;
- ``/write``: accepted, then WRITE_FRAMES binary frames of FRAME_BYTES written straight to the
  socket (``DaphneSocket.write``) while the client reads nothing, with the socket's backlog read
  right after and again once the event loop had time to flush what the kernel takes; then, on
  each client message, one more frame written with nothing queued, and its backlog; ``close``
  closes the socket and reports its state.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from realtime import transport
from realtime.streams import websocket_frame

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WRITE_FRAMES = 16
FRAME_BYTES = 1024 * 1024
SETTLE_S = 1.0


def report(**fields: Any) -> None:
    print("PROBE " + json.dumps(fields), flush=True)
    sys.stdout.flush()


def frame_payload(number: int) -> bytes:
    """Frame ``number``'s payload: its number repeated, so a frame out of order or cut short shows."""
    return bytes([number % 256]) * FRAME_BYTES


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return
    path = str(scope["path"])
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if path.startswith("/deny/"):
        await deny(int(path.removeprefix("/deny/")), send)
    elif path == "/release":
        await release(receive, send)
    elif path == "/write":
        await write(receive, send)


async def deny(status: int, send: Send) -> None:
    protocol = transport.daphne_protocol(send)
    denied = transport.deny_handshake(send, status, "Denied by the probe")
    # daphne's own bookkeeping: a refused connection is marked disconnected, so its application
    # instance is cleaned up as after daphne's own refusal.
    connection = protocol.server.connections.get(protocol, {}) if protocol is not None else {}
    report(path="deny", denied=denied, marked_disconnected="disconnected" in connection)


async def release(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    protocol = transport.daphne_protocol(send)
    assert protocol is not None, "no daphne protocol behind the ASGI send"
    released = transport.release_handshake(send)
    queue = protocol.application_queue
    channel = protocol.transport.producer
    report(
        path="release",
        released=released,
        unrecognised=sorted(transport._unrecognised),
        lean_inbound_queue=all(
            type(container) is transport.LeanDeque
            for container in (queue._getters, queue._putters, queue._queue, queue._finished._waiters)
        ),
        lean_send_queue=type(protocol.send_queue) is transport.LeanDeque,
        upgraded_requests_left=len(channel.requests),
        handshake_headers_left=len(protocol.http_headers) + len(protocol.clean_headers),
    )
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        await send({"type": "websocket.send", "text": "echo:" + (message.get("text") or "")})


async def write(receive: Receive, send: Send) -> None:
    await send({"type": "websocket.accept"})
    socket = transport.daphne_socket(send)
    if socket is None:
        report(path="write", socket=False)
        return
    opened = {"state": socket.state(), "backlog": socket.backlog()}
    for number in range(WRITE_FRAMES):
        socket.write(websocket_frame(frame_payload(number), binary=True))
    written = {"state": socket.state(), "backlog": socket.backlog()}
    await asyncio.sleep(SETTLE_S)
    settled = {"state": socket.state(), "backlog": socket.backlog(), "kernel": socket.kernel_backlog()}
    report(path="write", socket=True, opened=opened, written=written, settled=settled)
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        if message.get("text") == "close":
            await send({"type": "websocket.close", "code": 1000})
            report(path="write", closing={"state": socket.state()})
            return
        before = socket.backlog()
        socket.write(websocket_frame(b"once more", binary=False))
        report(path="write", again={"before": before, "after": socket.backlog(), "state": socket.state()})
