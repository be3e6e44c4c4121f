"""Property 31 (docs/properties.md#p31) for the streams and the market: a real stream client on a
real daphne process moves the connection gauge, the messages, frames and bytes counters and the
fan-out's windows and lag; the real market process moves ticks, windows, rows and the writer's lag.
Read as an operator reads them: merged from the processes' files (config/metrics.py), which the
processes a test starts share with it (tests/processes.py passes the directory on)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings
from websockets.sync.client import connect

from config.metrics import metrics_snapshot, snapshot_value
from tests.realtime.servers import DaphneProcess, daphne_server, market_env, market_process
from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.live, pytest.mark.slow]

SYMBOLS = ["MTA", "MTB", "MTC"]
MARKET_DATA = {"endpoint": "market_data"}


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return snapshot_value(metrics_snapshot(), name, labels) or 0.0


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)


@pytest.fixture
def key(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
) -> tuple[str, str]:
    for symbol in SYMBOLS:
        make_asset(symbol, price="100.00")
    api_key, secret = services.api_key_create(account_id=make_account().pk, label="metrics")
    return api_key.key_id, secret


@pytest.fixture
def server(key: tuple[str, str], tmp_path: Path) -> Iterator[DaphneProcess]:
    with daphne_server(tmp_path) as daphne:
        yield daphne


def test_a_stream_client_and_the_market_move_their_series(
    server: DaphneProcess, key: tuple[str, str], tmp_path: Path
) -> None:
    names = [
        "stream_frames_sent_total",
        "stream_sent_bytes_total",
        "stream_fanout_windows_total",
        "stream_fanout_lag_seconds_count",
        "market_ticks_total",
        "market_windows_total",
        "market_windows_published_total",
        "market_rows_written_total",
    ]
    before = {name: value(name) for name in names}
    connections = value("ws_connections", MARKET_DATA)
    received = value("stream_messages_received_total", MARKET_DATA)
    refused = value("stream_auth_failures_total", {**MARKET_DATA, "reason": "credentials"})

    with connect(f"{server.ws_url}/v2/iex", open_timeout=10) as ws:
        assert json.loads(ws.recv(5)) == [{"T": "success", "msg": "connected"}]
        wait_until(lambda: value("ws_connections", MARKET_DATA) >= connections + 1, "the connection counted")
        ws.send(json.dumps({"action": "auth", "key": key[0], "secret": key[1]}))
        assert json.loads(ws.recv(5)) == [{"T": "success", "msg": "authenticated"}]
        ws.send(json.dumps({"action": "subscribe", "trades": SYMBOLS, "quotes": SYMBOLS}))
        assert json.loads(ws.recv(5))[0]["T"] == "subscription"
        with connect(f"{server.ws_url}/v2/iex", open_timeout=10) as intruder:
            intruder.recv(5)
            intruder.send(json.dumps({"action": "auth", "key": key[0], "secret": "wrong"}))
            assert json.loads(intruder.recv(5))[0]["code"] == 402
        trades = 0
        with market_process(tmp_path, market_env(), "market", symbols=len(SYMBOLS), tick_interval_s=0.1):
            deadline = time.monotonic() + 30
            while trades < 20 and time.monotonic() < deadline:
                trades += sum(1 for event in json.loads(ws.recv(10)) if event["T"] == "t")
            # The fan-out writes its counters after each window; the market's per window too.
            wait_until(
                lambda: (
                    snapshot_value(metrics_snapshot(), "market_writer_lag_seconds") is not None
                    and all(value(name) > before[name] for name in names)
                ),
                f"every series moved: {[name for name in names if value(name) <= before[name]]}",
            )
        assert trades >= 20
        # The streams' asyncio pool, written by daphne itself once a second (config/redis_pools.py).
        wait_until(
            lambda: value("redis_pool_connections_max", {"role": "ws", "pool": "async"}) > 0,
            "the streams' Redis pool reported",
        )
    wait_until(lambda: value("ws_connections", MARKET_DATA) <= connections, "the connections closed")
    # auth, subscribe and the intruder's auth: received and counted (deferred: within a second).
    wait_until(
        lambda: value("stream_messages_received_total", MARKET_DATA) >= received + 3, "the messages counted"
    )
    wait_until(
        lambda: value("stream_auth_failures_total", {**MARKET_DATA, "reason": "credentials"}) >= refused + 1,
        "the refused authentication counted",
    )
    # What the client received is what was counted as sent, at least.
    assert value("stream_frames_sent_total") - before["stream_frames_sent_total"] >= 1
    assert value("market_ticks_total") - before["market_ticks_total"] >= trades
