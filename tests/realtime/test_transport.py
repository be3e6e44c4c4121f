"""realtime/transport.py, the one module that reaches into daphne, autobahn and Twisted: the guard
tests that fail loudly when an upgrade changes what it relies on.

Through a real daphne serving tests/realtime/transport_probe.py (no Django, no Channels), a raw
client checks each bypass against the real objects: the socket found behind daphne's ASGI send,
its backlog accounted for to the byte (Twisted's ``dataBuffer``, ``offset`` and
``_tempDataLen``), frames written straight to it arriving whole and in order, the handshake's
leftovers released, and a handshake refused with the status asked for. The versions those
internals were checked against are pinned exactly in requirements.txt.
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import importlib.metadata
import json
import re
import socket
import struct
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader
from websockets.sync.client import connect

from realtime import transport
from tests.processes import ROOT
from tests.realtime import transport_probe
from tests.realtime.servers import DaphneProcess, daphne_server

TIMEOUT = 10
PROBE = "tests.realtime.transport_probe:application"


# --- Pins -------------------------------------------------------------------------------------------


def test_the_servers_whose_internals_are_used_are_pinned_at_the_installed_versions() -> None:
    """The guard tests below ran against these versions: an upgrade changes the pin, and runs them."""
    pins = {
        name.lower(): version
        for name, version in re.findall(
            r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE
        )
    }
    for name in ("daphne", "autobahn", "twisted"):
        assert pins.get(name) == importlib.metadata.version(name), name


# --- Outside daphne -----------------------------------------------------------------------------------


def test_a_lean_queue_keeps_asyncio_queue_order_wakeups_and_cancellation() -> None:
    async def body() -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        queue.put_nowait(1)
        assert transport.lean_queue(queue)
        queue.put_nowait(2)
        assert [await queue.get(), await queue.get()] == [1, 2]

        # A waiting get is woken by a put, as daphne's put_nowait wakes the consumer's receive.
        waiting = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        queue.put_nowait(3)
        assert await asyncio.wait_for(waiting, 1) == 3

        # A cancelled get (a consumer torn down while idle) leaves no waiter behind: the next
        # item goes to the next get, not to the cancelled one.
        abandoned = asyncio.ensure_future(queue.get())
        await asyncio.sleep(0)
        abandoned.cancel()
        await asyncio.gather(abandoned, return_exceptions=True)
        queue.put_nowait(4)
        queue.put_nowait(5)
        assert [await queue.get(), await queue.get()] == [4, 5]
        assert queue.empty()

    asyncio.run(body())


def test_only_unbounded_asyncio_queues_and_daphne_sockets_are_touched() -> None:
    async def not_daphne(message: dict[str, Any]) -> None:
        pass

    assert not transport.lean_queue(asyncio.Queue(maxsize=1))
    assert not transport.lean_queue(None)
    # Any other server's send (or Channels' test communicator's): no socket, nothing to release.
    for send in (not_daphne, functools.partial(not_daphne), functools.partial(not_daphne, {"type": "x"})):
        assert transport.daphne_socket(send) is None
        assert not transport.release_handshake(send)
        assert not transport.deny_handshake(send, 404, "Not Found")


# --- Through a real daphne ----------------------------------------------------------------------------


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[DaphneProcess]:
    with daphne_server(tmp_path, application=PROBE) as server:
        yield server


def probe_reports(server: DaphneProcess, path: str, count: int = 1) -> list[dict[str, Any]]:
    """The probe's first ``count`` reports for ``path``, waiting for them to be logged."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        lines = [
            line.removeprefix("PROBE ") for line in server.log().splitlines() if line.startswith("PROBE ")
        ]
        reports = [r for r in map(json.loads, lines) if r["path"] == path]
        if len(reports) >= count:
            return reports[:count]
        assert time.monotonic() < deadline, f"the probe reported nothing for {path}:\n{server.log()}"
        time.sleep(0.05)


class RawClient:
    """A WebSocket client on a plain socket that reads only when told to, with a small receive
    buffer the kernel does not grow: a client that stops reading, as a slow one does."""

    RECEIVE_BUFFER = 64 * 1024

    def __init__(self, port: int, path: str) -> None:
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RECEIVE_BUFFER)
        self.socket.settimeout(TIMEOUT)
        self.socket.connect(("127.0.0.1", port))
        self.socket.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        self.reader = StreamReader()

    def unread(self) -> int:
        """Bytes in this socket's receive queue (FIONREAD)."""
        return int(struct.unpack("i", fcntl.ioctl(self.socket.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])

    def handshake(self) -> bytes:
        """The server's handshake response, headers and all."""
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = self.socket.recv(4096)
            assert chunk, "connection closed during the handshake"
            received += chunk
        response, _, rest = received.partition(b"\r\n\r\n")
        self.reader.feed_data(rest)
        return response + b"\r\n\r\n"

    def frame(self) -> Frame:
        parser = Frame.parse(self.reader.read_exact, mask=False, max_size=None)
        while True:
            try:
                next(parser)
            except StopIteration as parsed:
                frame: Frame = parsed.value
                return frame
            chunk = self.socket.recv(1 << 20)
            assert chunk, "connection closed mid-frame"
            self.reader.feed_data(chunk)

    def send_text(self, text: str) -> None:
        self.socket.sendall(Frame(Opcode.TEXT, text.encode()).serialize(mask=True))

    def close(self) -> None:
        self.socket.close()


@pytest.mark.live
@pytest.mark.slow
def test_frames_written_straight_to_a_daphne_socket_and_its_backlog_to_the_byte(
    probe: DaphneProcess,
) -> None:
    """The raw writer and the back-pressure reading the fan-out relies on (realtime/outbox.py)."""
    client = RawClient(probe.port, "/write")
    try:
        (written,) = probe_reports(probe, "write")
        assert written["socket"], "no socket found behind daphne's ASGI send: raw writes are off"
        frame_bytes = len(transport_probe.frame_payload(0)) + 10  # 64-bit length header
        total = transport_probe.WRITE_FRAMES * frame_bytes
        # The 101 response waits in Twisted's buffer until the event loop runs, so every frame
        # queues behind it (counted by _tempDataLen): the backlog is exactly what was given.
        opened = written["opened"]
        assert opened["state"] is True and opened["backlog"] > 0, opened
        assert written["written"] == {"state": True, "backlog": opened["backlog"] + total}

        # The client has read nothing: every byte daphne was given is in Twisted's buffer, in
        # the kernel's send queue for the socket, or in the client's receive queue.
        unread = client.unread()
        response = client.handshake()
        assert response.startswith(b"HTTP/1.1 101 "), response
        assert len(response) == opened["backlog"]
        # Once Twisted wrote what the kernel takes (dataBuffer from offset), the rest is its backlog.
        settled = written["settled"]
        assert settled["state"] is True
        assert 0 < settled["backlog"] < len(response) + total
        assert settled["kernel"] > 0
        assert settled["backlog"] + settled["kernel"] + unread == len(response) + total, (settled, unread)

        for number in range(transport_probe.WRITE_FRAMES):
            frame = client.frame()
            assert (frame.opcode, frame.fin) == (Opcode.BINARY, True), number
            assert frame.data == transport_probe.frame_payload(number), number

        # Nothing queued: the next frame goes to the kernel at once, and arrives whole.
        client.send_text("more")
        frame = client.frame()
        assert (frame.opcode, frame.data) == (Opcode.TEXT, b"once more")
        (_, again) = probe_reports(probe, "write", 2)
        assert again["again"] == {"before": 0, "after": 0, "state": True}

        # Closing: nothing more may be written.
        client.send_text("close")
        frame = client.frame()
        assert frame.opcode is Opcode.CLOSE
        (_, _, closing) = probe_reports(probe, "write", 3)
        assert closing["closing"] == {"state": False}
    finally:
        client.close()
    assert "Traceback" not in probe.log(), probe.log()


@pytest.mark.live
@pytest.mark.slow
def test_the_handshake_leftovers_are_released_and_the_socket_still_works(probe: DaphneProcess) -> None:
    with connect(f"{probe.ws_url}/release", open_timeout=TIMEOUT) as ws:
        (report,) = probe_reports(probe, "release")
        assert report == {
            "path": "release",
            "released": True,
            "unrecognised": [],
            "lean_inbound_queue": True,
            "lean_send_queue": True,
            "upgraded_requests_left": 0,
            "handshake_headers_left": 0,
        }
        for text in ("one", "two"):
            ws.send(text)
            assert ws.recv(TIMEOUT) == f"echo:{text}"
    log = probe.log()
    assert "connection state released after the handshake" in log, log
    assert "connection state not released" not in log, log
    assert "Traceback" not in log, log


@pytest.mark.live
@pytest.mark.slow
def test_a_handshake_is_refused_with_the_status_asked_for(probe: DaphneProcess) -> None:
    """daphne itself can only answer 403 (or 500 for an application that raises)."""
    for status in (404, 409):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{probe.ws_url}/deny/{status}", open_timeout=TIMEOUT)
        assert refused.value.response.status_code == status
    reports = probe_reports(probe, "deny", 2)
    assert reports == [{"path": "deny", "denied": True, "marked_disconnected": True}] * 2
    assert "Traceback" not in probe.log(), probe.log()
