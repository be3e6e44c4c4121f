"""ASGI app for ``benchmark stream``'s memory floor: ``daphne benchmarks._stream_bare_asgi:application``.

The least a WebSocket can cost under daphne: no Django, no Channels, no middleware; it answers
the benchmark client's handshake (connected, auth, subscribe) with fixed frames and then waits.
What daphne, autobahn and Twisted keep per connection, after the design's own release of the
handshake's leftovers (realtime/transport.py), is the floor under the design's memory per idle
connection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from realtime.transport import release_handshake

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

REPLIES = {
    "auth": '[{"T":"success","msg":"authenticated"}]',
    "subscribe": '[{"T":"subscription","trades":[],"quotes":[],"bars":[]}]',
}


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            release_handshake(send)
            await send({"type": "websocket.send", "text": '[{"T":"success","msg":"connected"}]'})
        elif message["type"] == "websocket.receive":
            text = message.get("text") or ""
            action = "auth" if '"auth"' in text else "subscribe"
            await send({"type": "websocket.send", "text": REPLIES[action]})
        else:
            return
