"""Property 8: the stream side's Redis connections never exceed the pool bound, with zero pool
errors, under 1,000 concurrent connects, auths and disconnects.

Every connection's auth and connection-limit bookkeeping goes through the process's bounded,
blocking asyncio pool (config.redis_pools.async_redis_pool, the fan-out's; its subscription holds
one of its connections for good). Redis's
own CLIENT LIST, filtered by the pool's client name, is sampled from another thread throughout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest
import redis
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from pytest_django.fixtures import Settings

from config.asgi import application
from realtime import fanout
from tests.realtime.frames import decode
from trading import services
from trading.models import Account

CLIENTS = 1000
POOL_BOUND = 6


def _named_clients(client: redis.Redis, prefix: str) -> int:
    return sum(1 for entry in client.client_list() if str(entry.get("name", "")).startswith(prefix))


def test_property_8_pool_bound_holds_under_a_connection_storm(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream_settings.REDIS_POOL_MAX_CONNECTIONS = POOL_BOUND
    # The property is that a storm waits for the bounded pool instead of opening more connections;
    # on a loaded machine 1,000 clients can queue for longer than production's pool timeout, and
    # that timeout (an outage detector) is not what this test is about.
    stream_settings.REDIS_POOL_TIMEOUT = 120.0
    stream_settings.STREAM_MAX_CONNECTIONS_PER_KEY = CLIENTS
    # A storm on a loaded machine can take longer than the default auth timeout; that timeout is
    # not what this test is about.
    stream_settings.STREAM_AUTH_TIMEOUT_S = 300.0
    key, secret = services.api_key_create(account_id=make_account().pk, label="storm")
    prefix = settings.STREAM_REDIS_CLIENT_NAME
    observer = redis.Redis.from_url(settings.REDIS_URL)
    peak = {"redis": 0, "pool": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak["redis"] = max(peak["redis"], _named_clients(observer, prefix))
            done.wait(0.005)

    async def one_client() -> bool:
        communicator = WebsocketCommunicator(application, "/v2/iex")
        connected, _ = await communicator.connect(timeout=30)
        assert connected
        await communicator.receive_from(30)
        await communicator.send_to(text_data=f'{{"action":"auth","key":"{key.key_id}","secret":"{secret}"}}')
        reply = decode(await communicator.receive_from(30))
        await communicator.disconnect(timeout=30)
        return bool(reply == [{"T": "success", "msg": "authenticated"}])

    async def storm() -> list[bool]:
        manager = fanout.manager()
        await manager.ensure_started()
        stop = asyncio.Event()

        async def watch_pool() -> None:
            while not stop.is_set():
                pool = manager.pool
                peak["pool"] = max(
                    peak["pool"], len(pool._in_use_connections) + len(pool._available_connections)
                )
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch_pool())
        try:
            return await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        finally:
            stop.set()
            await watcher
            await fanout.shutdown()
            await database_sync_to_async(connections.close_all)()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with caplog.at_level(logging.WARNING, logger="realtime"):
        results = asyncio.run(storm())
    done.set()
    sampler.join()
    assert all(results), f"{results.count(False)} of {CLIENTS} connections were not authenticated"
    assert 1 < peak["pool"] <= POOL_BOUND  # the storm really used the pool, and stayed inside it
    assert 1 <= peak["redis"] <= POOL_BOUND
    assert not [r for r in caplog.records if "Redis unavailable" in r.getMessage()], (
        "pool errors in the storm"
    )
    # All closed when the manager stopped; the server drops a closed client from CLIENT LIST when
    # it next reads that socket, which on a busy machine (parallel test workers) can take a moment.
    deadline = time.monotonic() + 5
    while _named_clients(observer, prefix) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _named_clients(observer, prefix) == 0
