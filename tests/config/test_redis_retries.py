"""With Redis unreachable, the reads with a database fallback give up after 1 + REDIS_RETRIES
(that is, 1) connection attempts, without backoff (config/settings.py, REDIS_RETRIES; config/redis_pools.py,
redis_retry): counted by a real listening socket that accepts each connection and closes it at
once, as a Redis restarting or behind a dead proxy does. Over TCP (CI's second pass) and over a
unix socket (the embedded Redis of its first pass); no clocks involved."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from pytest_django.fixtures import Settings
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import redis_pools
from config.cache import CacheManager
from config.embedded_redis import _answers, _probe, _server_running, embedded_redis_socket
from trading.models import Asset
from trading.quotes import _QUOTES_CONNECTION, latest_quotes, latest_ticks_from_db


class DroppingRedis:
    """A listening socket that accepts every connection and closes it at once, counting them."""

    def __init__(self, listener: socket.socket, url: str) -> None:
        self.url = url
        self.accepted = 0
        self._listener = listener
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed by close()
                return
            self.accepted += 1  # before the close: a client that saw it closed is counted
            connection.close()

    def close(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=10)


@pytest.fixture(params=["tcp", "unix"])
def dropping_redis(
    request: pytest.FixtureRequest, tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[DroppingRedis]:
    """REDIS_URL at a DroppingRedis, with the process's pool and pinned connection built afresh."""
    if request.param == "tcp":
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    else:
        path = tmp_path / "dropping.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        url = f"unix://{path}?db=0"
    listener.listen(64)
    server = DroppingRedis(listener, url)
    settings.REDIS_URL = url
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": url}}
    monkeypatch.setattr(redis_pools, "_pool", None)
    monkeypatch.setattr(redis_pools, "_client", None)
    monkeypatch.setattr(_QUOTES_CONNECTION, "_connection", None)
    try:
        yield server
    finally:
        server.close()
        # The pool built on the dropping address goes; the next test builds the real one again.
        pool = redis_pools._pool
        if pool is not None:
            pool.disconnect()


def test_a_latest_quote_read_gives_up_at_once_and_answers_from_the_database(
    dropping_redis: DroppingRedis, settings: Settings, make_asset: Callable[..., Asset]
) -> None:
    make_asset("AAPL", price="100.00")
    assert latest_quotes(symbols=["AAPL"]) == latest_ticks_from_db(symbols=["AAPL"])
    assert dropping_redis.accepted == 1 + settings.REDIS_RETRIES
    assert _QUOTES_CONNECTION._connection is None


def test_a_cached_read_gives_up_at_once_and_answers_from_the_loader(
    dropping_redis: DroppingRedis, settings: Settings
) -> None:
    manager = CacheManager(listen=False)
    assert manager.cached("retries:k", "leaderboard", lambda: {"from": "database"}) == {"from": "database"}
    # The value's read; its stampede lock's too, unless the cache still leaves Redis alone after
    # the read's failure (CACHE_REDIS_RETRY_SECONDS), as it does but on a machine stalled that long.
    assert 1 + settings.REDIS_RETRIES <= dropping_redis.accepted <= 2 * (1 + settings.REDIS_RETRIES)


def test_the_django_cache_misses_at_once(dropping_redis: DroppingRedis, settings: Settings) -> None:
    """django-redis' pool (settings.CACHES) carries the same policy: a miss, not an error."""
    assert cache.get("retries:k") is None
    assert dropping_redis.accepted == 1 + settings.REDIS_RETRIES


def test_a_pooled_connection_redis_closed_while_idle_is_dialled_again() -> None:
    """What a retry would be for, done without one: a connection of the shared pool that Redis
    closed while it sat idle (a restart, Redis' idle timeout) is dialled again as the pool lends
    it, so the command answers from Redis. Over the transport the run uses (CI: both)."""
    client = redis_pools.redis_client()
    pool = client.connection_pool
    idle = pool.get_connection()
    idle.send_command("CLIENT", "ID")
    first_id = idle.read_response()
    pool.release(idle)
    observer = redis.Redis.from_url(settings.REDIS_URL, retry=Retry(NoBackoff(), 0))
    try:
        assert observer.client_kill_filter(_id=first_id) == 1
    finally:
        observer.close()
    assert idle._sock is not None
    assert select.select([idle._sock], [], [], 30)[0]  # Redis' close has arrived
    assert pool.get_connection() is idle  # the one Redis closed is lent next ...
    pool.release(idle)
    assert client.client_id() != first_id  # ... and answers, on a new connection to Redis


def test_the_embedded_redis_probe_gives_up_at_once(tmp_path: Path) -> None:
    """A socket file left by an embedded Redis that died: the probe at process start says so after
    one attempt, not after redis-py's default retries."""
    path = tmp_path / "redis.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    server = DroppingRedis(listener, f"unix://{path}")
    try:
        assert not _answers(path)
        assert server.accepted == 1
    finally:
        server.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Path]:
    """A real embedded Redis in its own directory, shut down afterwards."""
    var_dir = tmp_path / "var"
    embedded_redis_socket(var_dir)
    try:
        yield var_dir
    finally:
        pid = int((var_dir / "redis.pid").read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)


def test_an_embedded_redis_slow_to_answer_is_still_the_server(embedded: Path) -> None:
    """A server descheduled past the probe's timeout (a loaded machine) is alive: a process
    starting then reuses it instead of starting a second server on its socket, which would split
    the processes between two Redises."""
    pid = int((embedded / "redis.pid").read_text())
    os.kill(pid, signal.SIGSTOP)
    try:
        assert _probe(embedded / "redis.sock") is None
        assert embedded_redis_socket(embedded) == embedded / "redis.sock"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert int((embedded / "redis.pid").read_text()) == pid
    assert redis.Redis(unix_socket_path=str(embedded / "redis.sock")).info("server")["process_id"] == pid


def test_an_embedded_redis_that_died_is_started_again_on_its_socket(embedded: Path) -> None:
    pid = int((embedded / "redis.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    for _ in range(1000):  # until the kill has landed
        if not _server_running(embedded):
            break
        time.sleep(0.01)
    assert (embedded / "redis.sock").exists() and _probe(embedded / "redis.sock") is False
    assert embedded_redis_socket(embedded) == embedded / "redis.sock"
    restarted = int((embedded / "redis.pid").read_text())
    assert restarted != pid
    assert (
        redis.Redis(unix_socket_path=str(embedded / "redis.sock")).info("server")["process_id"] == restarted
    )
