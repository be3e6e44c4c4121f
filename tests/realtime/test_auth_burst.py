"""A burst of stream authentications through a real daphne, on each database backend.

160 real WebSocket clients connect to daphne serving config.asgi (as ``make run`` starts it), wait
for one another, then send their API keys at the same moment: every key check (the cache, a read
and the ``last_used_at`` write of a key's first use, the account's check) reaches the database at
once. Not ``backend_neutral``: what can go wrong here depends on the backend, so CI runs it in
both passes (the stream benchmark, which also authenticates many clients, runs on SQLite only).

What a burst can do to a stream process's database connections: its key checks run through
``database_sync_to_async``, which asgiref runs on one sync thread per process
(``thread_sensitive``), so the process holds one connection whatever the number of sockets. Run
on a pool of threads instead (``thread_sensitive=False``, or a ThreadSensitiveContext per
socket), each thread would open a connection of its own and keep it for ``DB_CONN_MAX_AGE``
(60 s) after the burst: several per process, times the processes, against PostgreSQL's
``max_connections``. The test counts the server's connections while the burst runs and after its
clients left: on PostgreSQL its backends in ``pg_stat_activity``, on SQLite the descriptors its
process holds on the database file (one per connection).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection
from pytest_django.fixtures import Settings
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import connect as connect_sync

from config.redis_pools import redis_client
from realtime.wire import Window, WireTick
from tests.processes import test_database_url as database_url
from tests.realtime.servers import DaphneProcess, daphne_server
from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.live, pytest.mark.slow]

CLIENTS = 160
# Two sockets per key (STREAM_MAX_CONNECTIONS_PER_KEY allows 5): both checks of a key may miss the
# cache and write its ``last_used_at`` together, and both take a place in the key's connection count.
CLIENTS_PER_KEY = 2
ACCOUNTS = 4
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN")
# The one connection of asgiref's sync thread (see the module's docstring).
SERVER_DB_CONNECTIONS_MAX = 1
# The server's window to authenticate, which runs from a socket's connect (STREAM_AUTH_TIMEOUT_S,
# Alpaca's 10 s otherwise): the burst's sockets wait for one another to connect (past daphne's
# listen backlog, Twisted's 50, a refused SYN is retried after 1-3 s), then their first-use key
# checks run one after another on daphne's one sync thread, which on a loaded machine may take the
# earliest sockets past 10 s. What is tested here is the checks' answers and connections, not it.
AUTH_TIMEOUT_S = 60.0
# Waits, not measures: longer than the server's auth window, so a socket too slow to authenticate
# fails with the server's auth-timeout error (its frames are in the failure), not a wait of the
# test's own; bounded, so a server that hangs fails the test.
TIMEOUT = AUTH_TIMEOUT_S + 30.0
# The server's connections as pg_stat_activity names them, so the test's own are not counted.
APPLICATION_NAME = "auth-burst-daphne"
AT_NS = 1_764_000_000_000_000_000


class ServerConnections:
    """How many database connections the server process holds right now."""

    def __init__(self, server: DaphneProcess) -> None:
        self.server = server
        self.vendor = connection.vendor
        self._lock = threading.Lock()
        self._observer: psycopg.Connection[Any] | None = None
        if self.vendor == "postgresql":
            self._observer = psycopg.connect(database_url(), autocommit=True)
        else:
            self._database = os.path.realpath(connection.settings_dict["NAME"])

    def count(self) -> int:
        if self._observer is not None:
            with self._lock:  # autocommit: each count reads a fresh statistics snapshot
                row = self._observer.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND application_name = %s",
                    (APPLICATION_NAME,),
                ).fetchone()
            return int(row[0]) if row else 0
        # SQLite: each connection opens the database file once (its -wal and -shm files apart).
        descriptors = Path(f"/proc/{self.server.process.pid}/fd")
        count = 0
        for descriptor in descriptors.iterdir():
            try:
                count += os.readlink(descriptor) == self._database
            except OSError:
                continue  # closed since the listing
        return count

    def close(self) -> None:
        if self._observer is not None:
            self._observer.close()


@contextmanager
def peak_sampled(connections: ServerConnections) -> Iterator[dict[str, int]]:
    """The highest count seen while the block runs, sampled every 10 ms from a thread (a thread
    pool's connections stay open for DB_CONN_MAX_AGE, so a sample cannot miss them)."""
    peak = {"connections": connections.count()}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["connections"] = max(peak["connections"], connections.count())
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join(5)
    peak["connections"] = max(peak["connections"], connections.count())


def publish(number: int, symbols: tuple[str, ...], seq: int) -> None:
    """A market window with a trade of each symbol, as run_market publishes it."""
    ticks = [WireTick(s, seq, 1_000_000, 100, 999_900, 300, 1_000_100, 400, AT_NS) for s in symbols]
    redis_client().publish(settings.MARKET_WINDOWS_CHANNEL, Window(number=number, ticks=ticks).encode())


@dataclass
class Replies:
    """What one client read: its auth reply, its subscription reply and its first data frame."""

    symbol: str
    frames: list[Any] = field(default_factory=list)


async def one_client(
    server: DaphneProcess,
    key: tuple[str, str],
    replies: Replies,
    connected: asyncio.Barrier,
    subscribed: asyncio.Barrier,
) -> None:
    async def receive(ws: ClientConnection) -> None:
        replies.frames.append(json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT)))

    try:
        async with connect(f"{server.ws_url}/v2/iex", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            await receive(ws)  # connected
            # Every socket open before any key is sent: the checks reach the server together.
            await asyncio.wait_for(connected.wait(), TIMEOUT)
            await ws.send(json.dumps({"action": "auth", "key": key[0], "secret": key[1]}))
            await receive(ws)
            await ws.send(json.dumps({"action": "subscribe", "trades": [replies.symbol]}))
            await receive(ws)
            await asyncio.wait_for(subscribed.wait(), TIMEOUT)
            await receive(ws)  # the window published once every client subscribed
    except BaseException:
        # The others must not wait for a client that will never arrive.
        await connected.abort()
        await subscribed.abort()
        raise


async def burst(server: DaphneProcess, keys: list[tuple[str, str]]) -> list[Replies | BaseException]:
    replies = [Replies(symbol=SYMBOLS[i % len(SYMBOLS)]) for i in range(CLIENTS)]
    connected = asyncio.Barrier(CLIENTS)
    subscribed = asyncio.Barrier(CLIENTS + 1)  # and this coroutine, which then publishes

    async def market() -> None:
        await asyncio.wait_for(subscribed.wait(), 3 * TIMEOUT)
        publish(2, SYMBOLS, seq=2)

    clients = [
        one_client(server, keys[i // CLIENTS_PER_KEY], replies[i], connected, subscribed)
        for i in range(CLIENTS)
    ]
    outcomes = await asyncio.gather(market(), *clients, return_exceptions=True)
    return [
        outcome if isinstance(outcome, BaseException) else reply
        for outcome, reply in zip(outcomes[1:], replies, strict=True)
    ]


def expected_frames(symbol: str) -> list[Any]:
    return [
        [{"T": "success", "msg": "connected"}],
        [{"T": "success", "msg": "authenticated"}],
        [{"T": "subscription", "trades": [symbol]}],
        [{"T": "t", "S": symbol}],
    ]


def summary(frames: list[Any]) -> list[Any]:
    """The frames' events without what is not the point here (prices, the empty channels of a
    subscription reply); an error keeps its code and message."""
    return [
        [
            {name: event[name] for name in ("T", "msg", "code", "S", "trades") if name in event}
            for event in frame
        ]
        for frame in frames
    ]


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_burst_of_key_auths_is_answered_and_leaves_one_database_connection(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
    tmp_path: Path,
) -> None:
    for symbol in SYMBOLS:
        make_asset(symbol, price="100.00")
    accounts = [make_account() for _ in range(ACCOUNTS)]
    keys = []
    for i in range(CLIENTS // CLIENTS_PER_KEY + 1):  # one more for the warm-up client
        key, secret = services.api_key_create(account_id=accounts[i % ACCOUNTS].pk, label=f"bot{i}")
        keys.append((key.key_id, secret))
    warm_up_key = keys.pop()
    overrides: dict[str, Any] = {"STREAM_AUTH_TIMEOUT_S": AUTH_TIMEOUT_S}
    if connection.vendor == "postgresql":
        overrides["DATABASES"] = {"default": {"OPTIONS": {"application_name": APPLICATION_NAME}}}

    with daphne_server(tmp_path, overrides=overrides) as server:
        connections = ServerConnections(server)
        try:
            # One client first: the server's fan-out subscribes to the market's windows and its sync
            # thread opens the connection it keeps (DB_CONN_MAX_AGE) before the count is taken.
            with connect_sync(f"{server.ws_url}/v2/iex", open_timeout=TIMEOUT) as ws:
                ws.recv(TIMEOUT)
                ws.send(json.dumps({"action": "auth", "key": warm_up_key[0], "secret": warm_up_key[1]}))
                assert json.loads(ws.recv(TIMEOUT)) == [{"T": "success", "msg": "authenticated"}]
                ws.send(json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
                ws.recv(TIMEOUT)
                publish(1, ("AAPL",), seq=1)
                assert [event["S"] for event in json.loads(ws.recv(TIMEOUT))] == ["AAPL"]
            before = connections.count()
            assert before <= SERVER_DB_CONNECTIONS_MAX, server.log()

            with peak_sampled(connections) as peak:
                outcomes = asyncio.run(burst(server, keys))

            failed = [
                (i, outcome if isinstance(outcome, BaseException) else summary(outcome.frames))
                for i, outcome in enumerate(outcomes)
                if isinstance(outcome, BaseException)
                or summary(outcome.frames) != expected_frames(outcome.symbol)
            ]
            print(
                f"{connection.vendor}: server connections {before} before the burst, {peak['connections']} at most"
            )
            assert not failed, f"{len(failed)} of {CLIENTS} clients: {failed[:5]}"
            # All the checks of the burst on the one connection: none opened per socket or thread.
            assert peak["connections"] <= SERVER_DB_CONNECTIONS_MAX, (
                f"{peak['connections']} {connection.vendor} connections held by one stream process"
            )
            # Every client has closed: the server holds no more connections than before the burst.
            assert wait_until(lambda: connections.count() <= before, TIMEOUT), (
                f"{connections.count()} {connection.vendor} connections after the burst, {before} before"
            )
        finally:
            connections.close()
    log = server.log()
    for trouble in ("Traceback", "Exception inside application", "internal error", "Redis unavailable"):
        assert trouble not in log, log
