"""Bounded, blocking Redis connection pools: the process's shared one, and asyncio ones.

redis-py's default pool grows to 100 connections and then raises; these pools hold at most
REDIS_POOL_MAX_CONNECTIONS and make a caller wait REDIS_POOL_TIMEOUT seconds for a free
connection before failing, so callers take their degraded path instead of piling up.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from typing import Any, Protocol

import redis
import redis.asyncio as aioredis
from django.conf import settings
from prometheus_client import Gauge
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from config.metrics import metrics_enabled, metrics_flush_hook_register, process_identity

# What a call through an asyncio pool raises when Redis is down, slow or the pool stays exhausted:
# the errors its callers' degraded paths catch.
ASYNC_REDIS_FAILURES = (redis.RedisError, OSError, asyncio.TimeoutError)

_lock = threading.Lock()
_pool: redis.BlockingConnectionPool | None = None
_client: redis.Redis | None = None


def redis_retry() -> Retry:
    """The retry policy of every connection of the shared pool (and the Django cache's,
    ``RetryPinnedPool``): REDIS_RETRIES immediate retries after a connection error, none after a timeout (why:
    config/settings.py, REDIS_RETRIES). Pinned rather than left to redis-py, whose defaults back
    off for seconds and have changed between versions."""
    return Retry(NoBackoff(), settings.REDIS_RETRIES, supported_errors=(redis.ConnectionError,))


class RetryPinnedPool(redis.BlockingConnectionPool):
    """A bounded, blocking pool whose connections take ``redis_retry``'s policy unless told
    otherwise: the Django cache's (settings.CACHES names it, as django-redis builds its pool from a
    class path and plain keyword arguments)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("retry", redis_retry())
        super().__init__(**kwargs)


def redis_pool() -> redis.BlockingConnectionPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = RetryPinnedPool.from_url(
                settings.REDIS_URL,
                max_connections=settings.REDIS_POOL_MAX_CONNECTIONS,
                timeout=settings.REDIS_POOL_TIMEOUT,
                socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
                socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
            )
        return _pool


def redis_client() -> redis.Redis:
    """The process's client over its bounded pool. One instance: building a redis.Redis costs
    ~65 us (its response-callback table), which every latest-quotes read paid. Sharing it is
    safe: each command checks a connection out of the pool, and the pool starts afresh after a
    fork."""
    global _client
    client = _client
    if client is None:
        pool = redis_pool()
        with _lock:
            if _client is None:
                _client = redis.Redis(connection_pool=pool, decode_responses=False)
            client = _client
    return client


class ForkReset(Protocol):
    def after_fork_in_child(self) -> None: ...


# Objects holding locks that a thread of the parent may hold at a fork: the child has only the
# forking thread, so such a lock would never be released there (gunicorn forks its workers from
# a master whose threads may be mid-call). Weakly held: registering keeps nothing alive.
_fork_resets: weakref.WeakSet[Any] = weakref.WeakSet()


def fork_reset_register(owner: ForkReset) -> None:
    """Have ``owner.after_fork_in_child()`` run in every child this process forks from now on."""
    _fork_resets.add(owner)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for owner in list(_fork_resets):
        owner.after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def resp_pack(*parts: str) -> bytes:
    """One command in RESP, as redis-py would send it, without its generic packer (which costs
    more than the rest of a short command's send)."""
    encoded = [part.encode() for part in parts]
    return b"".join(
        [f"*{len(encoded)}\r\n".encode(), *(b"$%d\r\n%s\r\n" % (len(part), part) for part in encoded)]
    )


class PinnedConnection:
    """One connection of the shared pool kept checked out, for a command a process sends on
    nearly every request: a command sent on it skips the pool's checkout (a lock and a liveness
    poll of the socket) and redis-py's command dispatch (retries, response callbacks), about
    half the CPU of a pooled call. A framework bypass (docs/architecture.md, Framework bypasses):
    it relies on ``connection_pool.get_connection``, ``send_packed_command`` and
    ``read_response``.

    One thread at a time: ``exchange`` answers None when another thread holds it, and the caller
    goes through the pool. After a fork the parent's connection is left alone, and the child gets
    a fresh lock (``fork_reset_register``): one held by a parent thread at the fork would stay
    held in the child, which would never use its own connection. A send that fails
    is retried once on a fresh connection (nothing was sent); any other failure drops the
    connection (part of a reply may be unread) and raises.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        self._pid = 0
        fork_reset_register(self)

    def after_fork_in_child(self) -> None:
        self._lock = threading.Lock()

    def exchange(self, client: redis.Redis, packed: bytes) -> Any:
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._connection is None or self._pid != os.getpid():
                self._connection = client.connection_pool.get_connection()
                self._pid = os.getpid()
            connection = self._connection
            try:
                try:
                    connection.send_packed_command([packed])
                except (redis.ConnectionError, redis.TimeoutError):
                    # Redis restarted or closed the idle connection: nothing was sent.
                    connection.disconnect()
                    connection.send_packed_command([packed])
                return connection.read_response()
            except redis.ResponseError:
                raise  # a whole error reply was read: the connection is still in step
            except BaseException:
                self._connection = None
                connection.disconnect()
                client.connection_pool.release(connection)
                raise
        finally:
            self._lock.release()


def async_redis_pool(*, client_name: str) -> aioredis.BlockingConnectionPool:
    """A new bounded, blocking asyncio pool (one per event loop that owns it): at most
    REDIS_POOL_MAX_CONNECTIONS, waiting REDIS_POOL_TIMEOUT for a free one, then failing into the
    caller's degraded path. Its connections carry ``client_name`` in Redis' CLIENT LIST.

    No retries, pinned rather than left to redis-py's defaults: the streams resubscribe
    themselves after an error (realtime/fanout.py), and redis-py's retry of a subscription would
    reconnect and resubscribe silently, hiding the gap from them."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        client_name=client_name,
        retry=AsyncRetry(NoBackoff(), 0),
    )
    _async_pools.add(pool)
    return pool


# --- Metrics: each process's pools, written by the process itself (config/metrics.py) ---------------
REDIS_POOL_IN_USE = Gauge(
    "redis_pool_connections_in_use",
    "Redis connections checked out of the process's pools (sync: the shared pool; async: the streams').",
    ["role", "slot", "pool"],
    multiprocess_mode="livesum",
    registry=None,
)
REDIS_POOL_MAX = Gauge(
    "redis_pool_connections_max",
    "The most connections the process's pools may hold.",
    ["role", "slot", "pool"],
    multiprocess_mode="livesum",
    registry=None,
)
_async_pools: weakref.WeakSet[aioredis.BlockingConnectionPool] = weakref.WeakSet()


def _pool_gauges_write() -> None:
    """On the metrics flusher's thread: ``len`` of the pools' sets (no await, no pool lock held
    long: the sync pool's own lock for one set comprehension)."""
    if not metrics_enabled():
        return
    identity = process_identity()
    if _pool is not None:
        REDIS_POOL_IN_USE.labels(identity.role, identity.slot, "sync").set(
            len(_pool._get_in_use_connections())
        )
        REDIS_POOL_MAX.labels(identity.role, identity.slot, "sync").set(_pool.max_connections)
    pools = list(_async_pools)
    if pools:
        in_use = sum(len(pool._in_use_connections) for pool in pools)
        REDIS_POOL_IN_USE.labels(identity.role, identity.slot, "async").set(in_use)
        REDIS_POOL_MAX.labels(identity.role, identity.slot, "async").set(
            sum(pool.max_connections for pool in pools)
        )


metrics_flush_hook_register("redis_pools", _pool_gauges_write)
