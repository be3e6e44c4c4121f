"""Subprocesses of ``benchmark stream``, kept free of Django so they start fast and stay small.

``python -m benchmarks._stream_procs client ...``: N WebSocket clients in one asyncio
process (its own GIL, apart from the publisher). Each connects, authenticates, subscribes to
trades for its symbols (JSON), then reads. The parent drives it over stdin/stdout:
``READY {...}`` once every connection is set up, then per ``MEASURE <seconds>`` line one
``RESULT {...}`` line, and ``QUIT`` closes everything. Besides what it reads, each result holds what
the kernel counted on the client's sockets over the step (TCP_INFO, Linux): the bytes the server
sent them and the TCP segments they came in (``tcp_totals``); with ``mss`` in the plan, every
socket advertises that MSS (an Ethernet link's) so the server cuts segments as it would there.

``python -m benchmarks._stream_procs attack ...``: the subscription-reply amplification
attack on the design's market-data stream: ``--sockets`` connections authenticate with their own
key (its id and secret as a JSON line on stdin, before anything else, not on the command line), subscribe to ``--symbols`` made-up symbols of ``--symbol-length`` characters on trades, quotes
and bars (a message per channel, under the inbound size limit), then each re-subscribes one listed
symbol ``--rate`` times a second, reading (and only counting) every reply. ``READY {...}`` once
the big subscriptions are answered; on ``QUIT`` it prints ``RESULT {...}`` (messages sent, reply
bytes received while re-subscribing, the largest reply, the seconds since READY) and exits.

``python -m benchmarks._stream_procs raw ...``: the raw ceiling, a minimal
``websockets`` server doing the same job as the design with nothing else: the same auth and
subscribe handshake (credentials not checked), one Redis subscription to the market windows, and
per window one frame per client holding its symbols' trades, the very bytes the design sends
(realtime.streams encodes them).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import gc
import json
import re
import socket
import struct
import sys
import threading
import time
from typing import Any

# "t":"2025-01-02T03:04:05.123456789Z" in a trade: the tick's publish time in nanoseconds.
TIME_PATTERN = re.compile(r'"t":"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z"')


def ws_header_size(payload: int) -> int:
    """Bytes of an unmasked (server to client) WebSocket frame header for this payload."""
    return 2 if payload < 126 else 4 if payload < 65536 else 10


class Meter:
    def __init__(self, clients: int) -> None:
        self.received = [0] * clients  # frames per client since the first MEASURE
        self.last_ns = 0  # when the last frame was read
        self.counting = False
        self.measuring = False
        self.reset()
        self._epoch: dict[str, int] = {}

    def reset(self) -> None:
        self.frames = 0
        self.updates = 0
        self.payload_bytes = 0
        self.wire_bytes = 0
        self.latencies_ms: list[float] = []

    def seconds(self, prefix: str) -> int:
        found = self._epoch.get(prefix)
        if found is None:
            found = self._epoch[prefix] = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
        return found

    def frame(self, index: int, message: str | bytes) -> None:
        now = self.last_ns = time.time_ns()
        if self.counting:
            self.received[index] += 1
        if not self.measuring:
            return
        text = message if isinstance(message, str) else message.decode()
        size = len(text)
        self.frames += 1
        self.payload_bytes += size
        self.wire_bytes += size + ws_header_size(size)
        stamps = TIME_PATTERN.findall(text)
        self.updates += len(stamps)
        if stamps and stamps.count(stamps[0]) == len(stamps):
            # One window's trades share their publish time: one subtraction for all of them, so
            # the meter's own work per frame does not delay the frames queued behind it.
            prefix, nanos = stamps[0]
            sent = self.seconds(prefix) * 1_000_000_000 + int(nanos)
            self.latencies_ms.extend([(now - sent) / 1e6] * len(stamps))
        else:
            for prefix, nanos in stamps:
                sent = self.seconds(prefix) * 1_000_000_000 + int(nanos)
                self.latencies_ms.append((now - sent) / 1e6)


# struct tcp_info (linux/tcp.h) from tcpi_bytes_acked on: bytes_acked, bytes_received, segs_out,
# segs_in, notsent_bytes, min_rtt, data_segs_in, data_segs_out (Linux 4.6 and later).
TCP_INFO_TAIL = struct.Struct("<QQIIIIII")
TCP_INFO_TAIL_OFFSET = 120


def tcp_counters(sock: socket.socket) -> tuple[int, int, int]:
    """(bytes received, data segments received, segments sent) of one client socket, as the kernel
    counts them.

    Why the receiving side's TCP_INFO and not a count of the server's send calls: with TCP_NODELAY
    (autobahn sets it) a send is usually a segment, but not always: the kernel coalesces writes
    queued behind one not yet sent (autocorking, a busy loopback) and cuts a write longer than the
    MSS into several, so counting sends would overstate the unbatched variant's segments and
    understate large batches. The kernel's own counters see what left. On loopback every segment
    the server sends arrives whole at one client socket, and the receiver counts a GSO packet as
    the segments it stands for, so these are the server's tcpi_data_segs_out for the same
    sockets, read where the benchmark holds them (the server under test is not instrumented).
    The segments sent are the client's ACKs (it sends no data while measured).
    """
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_TAIL_OFFSET + TCP_INFO_TAIL.size)
    if len(raw) < TCP_INFO_TAIL_OFFSET + TCP_INFO_TAIL.size:
        return 0, 0, 0
    _, received, segs_out, _, _, _, data_segs_in, _ = TCP_INFO_TAIL.unpack_from(raw, TCP_INFO_TAIL_OFFSET)
    return received, data_segs_in, segs_out


def tcp_totals(sockets: list[Any]) -> tuple[int, int, int]:
    totals = [0, 0, 0]
    for ws in sockets:
        sock = ws.transport.get_extra_info("socket") if ws.transport is not None else None
        if sock is None:
            continue
        with contextlib.suppress(OSError):
            for index, value in enumerate(tcp_counters(sock)):
                totals[index] += value
    return totals[0], totals[1], totals[2]


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _connected_socket(url: str, mss: int) -> socket.socket:
    """A TCP socket connected to ``url``'s host and port that advertised ``mss`` in its SYN."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname or "127.0.0.1", parts.port or 80))
    except BaseException:
        sock.close()
        raise
    return sock


async def _quiet_gap(meter: Meter, *, gap_s: float = 0.03, limit_s: float = 1.0) -> None:
    """Wait until no frame has been read for ``gap_s`` (a window's burst is over; windows come
    every 100 ms), for at most ``limit_s``: what the kernel counted and what was read then agree,
    so the step's kernel counters and its updates cover the same frames."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and time.time_ns() - meter.last_ns < gap_s * 1e9:
        await asyncio.sleep(0.005)


async def _open(url: str, key: str, secret: str, symbols: list[str], *, mss: int | None = None) -> Any:
    from websockets.asyncio.client import connect

    extra: dict[str, Any] = {}
    if mss is not None:
        extra["sock"] = await _connected_socket(url, mss)
    ws = await connect(
        url, compression=None, max_size=2**24, open_timeout=60, ping_interval=None, close_timeout=2, **extra
    )
    try:
        hello = await asyncio.wait_for(ws.recv(), 30)
        if "connected" not in str(hello):
            raise RuntimeError(f"unexpected greeting {hello!r}")
        await ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
        reply = await asyncio.wait_for(ws.recv(), 30)
        if "authenticated" not in str(reply):
            raise RuntimeError(f"auth refused: {reply!r}")
        await ws.send(json.dumps({"action": "subscribe", "trades": symbols}))
        reply = await asyncio.wait_for(ws.recv(), 30)
        if "subscription" not in str(reply):
            raise RuntimeError(f"subscribe refused: {reply!r}")
    except BaseException:
        await ws.close()
        raise
    return ws


async def _read(ws: Any, index: int, meter: Meter, closed: list[int]) -> None:
    try:
        async for message in ws:
            meter.frame(index, message)
    except Exception:  # a dropped connection is counted below
        pass
    closed[0] += 1


def _emit(tag: str, body: dict[str, Any]) -> None:
    sys.stdout.write(f"{tag} {json.dumps(body)}\n")
    sys.stdout.flush()


async def client_main(args: argparse.Namespace) -> None:
    with open(args.plan) as plan_file:
        plan = json.load(plan_file)
    url, key, secret, subscriptions = plan["url"], plan["key"], plan["secret"], plan["subscriptions"]
    mss = plan.get("mss")
    meter = Meter(len(subscriptions))
    gate = asyncio.Semaphore(args.connect_concurrency)
    errors: list[str] = []

    async def open_one(symbols: list[str]) -> Any:
        async with gate:
            try:
                return await _open(url, key, secret, symbols, mss=mss)
            except Exception as error:
                errors.append(f"{type(error).__name__}: {error}"[:200])
                return None

    started = time.perf_counter()
    sockets = await asyncio.gather(*(open_one(symbols) for symbols in subscriptions))
    connected = [(index, ws) for index, ws in enumerate(sockets) if ws is not None]
    closed = [0]
    readers = [asyncio.create_task(_read(ws, index, meter, closed)) for index, ws in connected]
    # The client is the measuring instrument: its own garbage-collector pauses (a full collection
    # walks every one of its 1,000 connections) would show up as every server's latency. Its
    # connections are set up for good, so they leave the collector's care.
    gc.collect()
    gc.freeze()
    _emit(
        "READY",
        {
            "connected": len(connected),
            "failed": len(errors),
            "errors": errors[:3],
            "seconds": time.perf_counter() - started,
        },
    )

    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[str] = asyncio.Queue()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(commands.put_nowait, line.strip())
        loop.call_soon_threadsafe(commands.put_nowait, "QUIT")

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        command = await commands.get()
        if command.startswith("MEASURE"):
            seconds = float(command.split()[1])
            meter.counting = True
            meter.reset()
            live = [ws for _, ws in connected]
            await _quiet_gap(meter)
            tcp_before = tcp_totals(live)
            cpu, wall = time.process_time(), time.perf_counter()
            meter.measuring = True
            await asyncio.sleep(seconds)
            await _quiet_gap(meter)
            meter.measuring = False
            elapsed = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            tcp_after = tcp_totals(live)
            socket_bytes, data_segments, ack_segments = (
                after - before for after, before in zip(tcp_after, tcp_before, strict=True)
            )
            ordered = sorted(meter.latencies_ms)
            _emit(
                "RESULT",
                {
                    "seconds": elapsed,
                    "frames": meter.frames,
                    "updates": meter.updates,
                    "payload_bytes": meter.payload_bytes,
                    "wire_bytes": meter.wire_bytes,
                    "socket_bytes": socket_bytes,
                    "data_segments": data_segments,
                    "ack_segments": ack_segments,
                    "p50_ms": _percentile(ordered, 0.50),
                    "p99_ms": _percentile(ordered, 0.99),
                    "client_cpu": cpu / elapsed if elapsed else 0.0,
                    "clients_with_data": sum(1 for count in meter.received if count),
                    "closed": closed[0],
                },
            )
        elif command == "QUIT":
            break
    # All at once: a saturated server answers close handshakes late, and one by one they would
    # take close_timeout each.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for _, ws in connected), return_exceptions=True), 5
        )
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


# --- The amplification attack ------------------------------------------------------------------------


def made_up_symbols(count: int, length: int) -> list[str]:
    return [f"Z{number:0{length - 1}d}" for number in range(count)]


async def attack_main(args: argparse.Namespace) -> None:
    from websockets.asyncio.client import connect

    # The key pair comes as the first line on stdin, never on the command line (which ps shows
    # to every user of the machine).
    credentials = json.loads(await asyncio.to_thread(sys.stdin.readline))
    key, secret = credentials["key"], credentials["secret"]
    made_up = made_up_symbols(args.symbols, args.symbol_length)
    stats = {"sent": 0, "reply_bytes": 0, "largest_reply": 0, "closed": 0}

    async def read(ws: Any) -> None:
        try:
            async for message in ws:
                stats["reply_bytes"] += len(message)
                stats["largest_reply"] = max(stats["largest_reply"], len(message))
        except Exception:
            pass
        stats["closed"] += 1

    sockets = []
    for _ in range(args.sockets):
        ws = await connect(args.url, compression=None, max_size=2**24, open_timeout=60, ping_interval=None)
        await ws.recv()
        await ws.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
        await ws.recv()
        for channel in ("trades", "quotes", "bars"):
            await ws.send(json.dumps({"action": "subscribe", channel: made_up}))
            reply = await ws.recv()
            stats["reply_bytes"] += len(reply)
            stats["largest_reply"] = max(stats["largest_reply"], len(reply))
        sockets.append(ws)
    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    stats["reply_bytes"] = 0  # from here on: the re-subscribe loop's replies
    started = time.monotonic()
    _emit("READY", {"sockets": len(sockets)})

    loop = asyncio.get_running_loop()
    quit_requested = asyncio.Event()
    threading.Thread(
        target=lambda: (sys.stdin.readline(), loop.call_soon_threadsafe(quit_requested.set)), daemon=True
    ).start()
    resubscribe = json.dumps({"action": "subscribe", "trades": [args.listed_symbol]})
    period = 1 / args.rate
    next_at = time.monotonic()
    while not quit_requested.is_set():
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.send(resubscribe)
                stats["sent"] += 1
        next_at += period
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(quit_requested.wait(), max(0.0, next_at - time.monotonic()))
    _emit("RESULT", {**stats, "seconds": time.monotonic() - started})
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 5)
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)


# --- The raw ceiling ---------------------------------------------------------------------------------


async def raw_main(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis
    from websockets.asyncio.server import serve

    from realtime.streams import TRADES, EncodedWindow, Encoding, json_frames
    from realtime.wire import Window

    by_symbol: dict[str, set[Any]] = {}

    async def handler(ws: Any) -> None:
        mine: list[str] = []
        await ws.send('[{"T":"success","msg":"connected"}]')
        try:
            async for message in ws:
                data = json.loads(message)
                if data.get("action") == "auth":
                    await ws.send('[{"T":"success","msg":"authenticated"}]')
                elif data.get("action") == "subscribe":
                    mine = [str(symbol) for symbol in data.get("trades", [])]
                    for symbol in mine:
                        by_symbol.setdefault(symbol, set()).add(ws)
                    reply = {"T": "subscription", "trades": mine, "quotes": [], "bars": []}
                    await ws.send(json.dumps([reply]))
        finally:
            for symbol in mine:
                by_symbol.get(symbol, set()).discard(ws)

    async def pump() -> None:
        client = aioredis.from_url(args.redis_url)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(args.channel)
        while True:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is None:
                continue
            encoded = EncodedWindow(Window.decode(message["data"]))
            wanted: dict[Any, list[tuple[str, int]]] = {}
            for symbol in encoded.symbols:
                for ws in by_symbol.get(symbol, ()):
                    wanted.setdefault(ws, []).append((symbol, TRADES))
            for ws, symbols in wanted.items():
                parts = [str(payload) for _, payload in encoded.parts_for(Encoding.JSON, symbols)]
                for frame in json_frames(parts, 64 * 1024):
                    with contextlib.suppress(Exception):
                        await ws.send(frame)

    async with serve(handler, "127.0.0.1", args.port, compression=None, max_size=2**20, ping_interval=None):
        await pump()


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    client = sub.add_parser("client")
    client.add_argument("--plan", required=True)
    client.add_argument("--connect-concurrency", type=int, default=50)
    raw = sub.add_parser("raw")
    raw.add_argument("--port", type=int, required=True)
    raw.add_argument("--redis-url", required=True)
    raw.add_argument("--channel", required=True)
    attack = sub.add_parser("attack")
    attack.add_argument("--url", required=True)
    attack.add_argument("--listed-symbol", required=True)
    attack.add_argument("--sockets", type=int, default=5)
    attack.add_argument("--symbols", type=int, default=5000)
    attack.add_argument("--symbol-length", type=int, default=32)
    attack.add_argument("--rate", type=float, default=15.0)
    args = parser.parse_args()
    main_of = {"client": client_main, "raw": raw_main, "attack": attack_main}
    asyncio.run(main_of[args.role](args))


if __name__ == "__main__":
    main()
