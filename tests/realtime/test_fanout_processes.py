"""The fan-out through real daphne processes on one Redis (Property 9, multi-process fan-out,
bad input): windows published to Redis exactly as the market publishes them, and by the real
market process."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from config.redis_pools import redis_client
from realtime.wire import Window, WireTick
from tests.builders import list_symbols
from tests.realtime.servers import DaphneProcess, daphne_server, market_env, market_process
from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.live, pytest.mark.slow]

SYMBOLS = [f"S{i:03d}" for i in range(400)]
WATCHED = SYMBOLS[:10]
AT_NS = 1_764_000_000_000_000_000


def big_window(number: int) -> Window:
    """Every symbol ticks once: ~100 KB of JSON per window for a wildcard subscriber."""
    return Window(
        number=number,
        ticks=[
            WireTick(s, number, 1_000_000 + number, 100, 999_900, 300, 1_000_100, 400, AT_NS) for s in SYMBOLS
        ],
    )


def open_client(
    stack: ExitStack,
    server: DaphneProcess,
    key: tuple[str, str],
    symbols: list[str],
    *,
    receive_buffer: int | None = None,
) -> ClientConnection:
    sock = None
    if receive_buffer is not None:
        # A tiny receive window makes a client that stops reading stall the server quickly.
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", server.port))
    ws = stack.enter_context(connect(f"{server.ws_url}/v2/iex", sock=sock, max_size=None, open_timeout=10))
    assert json.loads(ws.recv(5)) == [{"T": "success", "msg": "connected"}]
    ws.send(json.dumps({"action": "auth", "key": key[0], "secret": key[1]}))
    assert json.loads(ws.recv(5)) == [{"T": "success", "msg": "authenticated"}]
    ws.send(json.dumps({"action": "subscribe", "trades": symbols, "quotes": symbols}))
    assert json.loads(ws.recv(5))[0]["T"] == "subscription"
    return ws


class Reader(threading.Thread):
    """Reads a socket until it closes, recording (window seq, symbol) of every trade."""

    def __init__(self, ws: ClientConnection) -> None:
        super().__init__(daemon=True)
        self.ws = ws
        self.trades: list[tuple[int, str]] = []
        self.errors: list[dict[str, Any]] = []

    def run(self) -> None:
        try:
            for frame in self.ws:
                for event in json.loads(frame):
                    if event["T"] == "t":
                        self.trades.append((event["i"], event["S"]))
                    elif event["T"] == "error":
                        self.errors.append(event)
        except ConnectionClosed:
            pass


@pytest.fixture
def key(
    stream_settings: Settings, transactional_db: None, make_account: Callable[..., Account]
) -> tuple[str, str]:
    list_symbols(*SYMBOLS)
    api_key, secret = services.api_key_create(account_id=make_account().pk, label="fanout")
    return api_key.key_id, secret


@pytest.fixture
def servers(key: tuple[str, str], tmp_path: Path) -> Iterator[tuple[DaphneProcess, DaphneProcess]]:
    limits = {
        "STREAM_SEND_BUFFER_BYTES": 64 * 1024,
        "STREAM_OUTBOX_HIGH_WATER": 3,
        "STREAM_OUTBOX_MAX_FRAMES": 10,
        "STREAM_INBOUND_BURST": 20,
        "STREAM_INBOUND_RATE": 5,
    }
    connections = {"STREAM_MAX_CONNECTIONS_PER_KEY": "20"}
    with (
        daphne_server(tmp_path, extra_env=connections, overrides=limits) as first,
        daphne_server(tmp_path, extra_env=connections, overrides=limits) as second,
    ):
        yield first, second


def test_two_processes_slow_client_is_cut_off_and_floods_hurt_no_one(
    servers: tuple[DaphneProcess, DaphneProcess], key: tuple[str, str]
) -> None:
    first, second = servers
    stack = ExitStack()
    healthy = Reader(open_client(stack, first, key, WATCHED))
    other_process = Reader(open_client(stack, second, key, WATCHED))
    slow = open_client(stack, first, key, ["*"], receive_buffer=4096)  # everything, never reads
    flooder = stack.enter_context(connect(f"{first.ws_url}/v2/iex", open_timeout=10))
    healthy.start()
    other_process.start()
    daphne = psutil.Process(first.process.pid)
    rss_before = daphne.memory_info().rss
    rss_peak = rss_before
    publisher = redis_client()
    windows = 60
    flood_closed = False
    for number in range(1, windows + 1):
        publisher.publish(settings.MARKET_WINDOWS_CHANNEL, big_window(number).encode())
        if not flood_closed:
            try:
                for _ in range(10):
                    flooder.send("{not json" + "x" * 100)
            except ConnectionClosed:
                flood_closed = True
        rss_peak = max(rss_peak, daphne.memory_info().rss)
        time.sleep(0.05)
    deadline = time.monotonic() + 10
    while len(other_process.trades) < windows * len(WATCHED) and time.monotonic() < deadline:
        time.sleep(0.05)

    # Both processes delivered every tick to their fast clients, in order, identically.
    expected = [(n, s) for n in range(1, windows + 1) for s in WATCHED]
    assert healthy.trades == expected
    assert other_process.trades == expected
    # Property 9: the stalled client was conflated, then cut off; the server's memory stayed
    # bounded (~6 MB of windows went to that socket) instead of buffering everything it missed.
    assert rss_peak - rss_before < 30 * 1024 * 1024, (rss_before, rss_peak)
    slow_windows: set[int] = set()
    slow_errors = []
    try:
        while True:
            for event in json.loads(slow.recv(5)):
                if event["T"] == "error":
                    slow_errors.append(event)
                elif event["T"] == "t":
                    slow_windows.add(event["i"])
    except (ConnectionClosed, TimeoutError):
        pass
    assert slow.close_code is not None, "the slow client was never disconnected"
    assert len(slow_windows) < windows  # conflated and cut off, not sent everything
    # The 407 reaches the client if its socket still had room for it; the close always does.
    assert slow_errors in ([], [{"T": "error", "code": 407, "msg": "slow client"}])
    assert "slow client" in first.log()
    # The flood closed only the flooding socket.
    assert flood_closed or flooder.close_code == 4429
    stack.close()


def test_two_processes_deliver_the_same_ticks_from_the_real_market(
    servers: tuple[DaphneProcess, DaphneProcess],
    key: tuple[str, str],
    make_asset: Callable[..., Asset],
    tmp_path: Path,
) -> None:
    """Two web processes and one ``run_market`` on one Redis: a client on each web process receives
    the same ticks, the same symbols with the same seqs, over the interval both were connected."""
    symbols = ["MKA", "MKB", "MKC"]
    for symbol in symbols:
        make_asset(symbol, price="100.00")
    stack = ExitStack()
    readers = [Reader(open_client(stack, server, key, symbols)) for server in servers]
    for reader in readers:
        reader.start()
    with market_process(tmp_path, market_env(), "market", symbols=len(symbols), tick_interval_s=0.1):
        deadline = time.monotonic() + 30
        while min(len(r.trades) for r in readers) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
    stack.close()
    for reader in readers:
        reader.join(5)

    for symbol in symbols:
        seqs = [[seq for seq, s in reader.trades if s == symbol] for reader in readers]
        assert all(seqs), f"no {symbol} trades on one of the processes"
        low, high = max(run[0] for run in seqs), min(run[-1] for run in seqs)
        overlap = [[seq for seq in run if low <= seq <= high] for run in seqs]
        # Nothing lost, doubled or reordered on either process: every seq of the interval, once.
        assert overlap[0] == overlap[1] == list(range(low, high + 1)), symbol
        assert high - low >= 5, symbol
    assert not any(reader.errors for reader in readers)
