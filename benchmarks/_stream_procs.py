"""Subprocesses of ``benchmark stream``, kept free of Django so they start fast and stay small.

``python -m benchmarks._stream_procs client ...``: N WebSocket clients in one asyncio
process (its own GIL, apart from the publisher). Each connects, authenticates, subscribes to
trades for its symbols (JSON), then reads. The parent drives it over stdin/stdout:
``READY {...}`` once every connection is set up, then per ``MEASURE <seconds>`` line one
``RESULT {...}`` line, and ``QUIT`` closes everything.

``python -m benchmarks._stream_procs attack ...``: the subscription-reply amplification
attack on the design's market-data stream: ``--sockets`` connections authenticate with their own
key, subscribe to ``--symbols`` made-up symbols of ``--symbol-length`` characters on trades, quotes
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
        self.counting = False
        self.measuring = False
        self.reset()
        self._epoch: dict[str, int] = {}

    def reset(self) -> None:
        self.frames = 0
        self.updates = 0
        self.payload_bytes = 0
        self.wire_bytes = 0
        self.unbatched_wire_bytes = 0
        self.latencies_ms: list[float] = []

    def seconds(self, prefix: str) -> int:
        found = self._epoch.get(prefix)
        if found is None:
            found = self._epoch[prefix] = calendar.timegm(time.strptime(prefix, "%Y-%m-%dT%H:%M:%S"))
        return found

    def frame(self, index: int, message: str | bytes) -> None:
        now = time.time_ns()
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
        if len(stamps) > 1 and text.startswith("[{") and text.endswith("}]"):
            # The same events one per frame: each part in its own "[...]" and frame header.
            pieces = text[1:-1].split("},{")
            for number, piece in enumerate(pieces):
                part = len(piece) + (1 if number > 0 else 0) + (1 if number < len(pieces) - 1 else 0)
                self.unbatched_wire_bytes += part + 2 + ws_header_size(part + 2)
        else:
            self.unbatched_wire_bytes += size + ws_header_size(size)


def _percentile(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _open(url: str, key: str, secret: str, symbols: list[str]) -> Any:
    from websockets.asyncio.client import connect

    ws = await connect(
        url, compression=None, max_size=2**24, open_timeout=60, ping_interval=None, close_timeout=2
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
    meter = Meter(len(subscriptions))
    gate = asyncio.Semaphore(args.connect_concurrency)
    errors: list[str] = []

    async def open_one(symbols: list[str]) -> Any:
        async with gate:
            try:
                return await _open(url, key, secret, symbols)
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
            cpu, wall = time.process_time(), time.perf_counter()
            meter.measuring = True
            await asyncio.sleep(seconds)
            meter.measuring = False
            elapsed = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            ordered = sorted(meter.latencies_ms)
            _emit(
                "RESULT",
                {
                    "seconds": elapsed,
                    "frames": meter.frames,
                    "updates": meter.updates,
                    "payload_bytes": meter.payload_bytes,
                    "wire_bytes": meter.wire_bytes,
                    "unbatched_wire_bytes": meter.unbatched_wire_bytes,
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
        await ws.send(json.dumps({"action": "auth", "key": args.key, "secret": args.secret}))
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
    attack.add_argument("--key", required=True)
    attack.add_argument("--secret", required=True)
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
