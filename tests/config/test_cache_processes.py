"""The cache layers in the running system: real gunicorn processes, a real Redis.

- Property 34: writes interleaved with reads from two servers (four worker processes, each with
  its own L1): no read that starts more than 1 s after a write committed returns an older value.
- Redis stopped mid-run (a test-owned server): reads and orders keep working, degraded, and the
  cache is back in use once Redis is.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import transaction

from analytics import services
from tests.builders import set_quote
from tests.processes import free_port, gunicorn_server, redis_server, redis_timeouts
from trading import services as trading
from trading.models import Account, Asset
from trading.units import price_to_units

pytestmark = [pytest.mark.live, pytest.mark.db_backend]
BOUND_SECONDS = 1.0


def _call(
    base_url: str, path: str, key: tuple[str, str], body: dict[str, object] | None = None
) -> tuple[int, dict]:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method="POST" if body is not None else "GET",
        headers={
            "APCA-API-KEY-ID": key[0],
            "APCA-API-SECRET-KEY": key[1],
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_no_read_is_older_than_the_bound_after_a_write(
    transactional_db: None,
    tmp_path: Path,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> None:
    """Property 34, across processes: invalidation after commit reaches every L1 (the 1 s L1 cap
    is the safety net); symbol stats cache for 30 s, so only invalidation can make reads fresh."""
    make_asset("AAPL", price="100.00")
    account = make_account()
    key, secret = trading.api_key_create(account_id=account.pk)
    services.symbol_stats_refresh(symbols=["AAPL"])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    # Readers poll as fast as they can; the read rate limit is not what this test is about.
    unlimited = {"RATE_LIMITS_ENABLED": "false"}
    with (
        gunicorn_server(tmp_path / "a", extra_env=unlimited) as first,
        gunicorn_server(tmp_path / "b", extra_env=unlimited) as second,
    ):
        committed: list[tuple[float, int]] = []  # (commit time, price units)
        reads: list[tuple[float, int]] = []  # (request start, price units)
        failures: list[object] = []
        done = threading.Event()
        lock = threading.Lock()

        def reader(base_url: str) -> None:
            while not done.is_set():
                started = time.monotonic()
                status, body = _call(base_url, "/v2/analytics/symbols/AAPL", (key.key_id, secret))
                with lock:
                    if status != 200:
                        failures.append((status, body))
                        return
                    reads.append((started, price_to_units(body["last_price"])))

        threads = [threading.Thread(target=reader, args=(server.base_url,)) for server in (first, second) * 3]
        for thread in threads:
            thread.start()
        try:
            for step in range(1, 16):
                price = f"{100 + step}.00"
                set_quote("AAPL", price=price)
                with transaction.atomic():
                    # Registered first, so it runs first after COMMIT: the instant the write is visible.
                    def record_commit(units: int = price_to_units(price)) -> None:
                        committed.append((time.monotonic(), units))

                    transaction.on_commit(record_commit)
                    services.symbol_stats_refresh(symbols=["AAPL"])
                time.sleep(0.2)
        finally:
            done.set()
            for thread in threads:
                thread.join(timeout=30)
    late = [
        (started, seen, units)
        for commit_at, units in committed
        for started, seen in reads
        if started > commit_at + BOUND_SECONDS and seen < units
    ]
    assert not failures, failures[:3]
    assert len(committed) == 15 and len(reads) > 100 and not late, late[:5]


def test_redis_outage_degrades_to_the_database_without_errors(
    transactional_db: None,
    tmp_path: Path,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> None:
    make_asset("AAPL", price="100.00")
    account = make_account()
    api_key, secret = trading.api_key_create(account_id=account.pk)
    key = (api_key.key_id, secret)
    services.analytics_refresh_all()
    port = free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    cached_values = f"{settings.REDIS_KEY_PREFIX}:an:v:*"
    order = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}

    def exercise(base_url: str) -> dict[str, int]:
        statuses = {
            path: _call(base_url, path, key)[0]
            for path in (
                "/v2/leaderboard",
                "/v2/analytics/account",
                "/v2/analytics/symbols/AAPL",
                "/v2/account",
                "/v2/positions",
            )
        }
        statuses["POST /v2/orders"] = _call(base_url, "/v2/orders", key, order)[0]
        return statuses

    with (
        redis_server(port, tmp_path) as first_redis,
        gunicorn_server(tmp_path, extra_env=env, overrides=redis_timeouts(socket=0.5)) as server,
    ):
        assert set(exercise(server.base_url).values()) == {200}
        cached = redis.Redis(port=port)
        assert any(cached.scan_iter(match=cached_values))
        first_redis.kill()
        first_redis.wait(timeout=10)
        for _ in range(3):
            assert set(exercise(server.base_url).values()) == {200}, server.log()[-3000:]
        with redis_server(port, tmp_path):
            time.sleep(1.2)  # past CACHE_REDIS_RETRY_SECONDS: the server tries Redis again
            assert set(exercise(server.base_url).values()) == {200}
            assert any(redis.Redis(port=port).scan_iter(match=cached_values))  # caching again
        log = server.log()
        assert "Internal Server Error" not in log
        assert "cache: Redis unavailable" in log and "rate limits: Redis unavailable" in log  # degraded
    assert account.orders.filter(status="filled").count() == 5
