"""Bounded, blocking Redis connection pools: the process's shared one, and asyncio ones.

redis-py's default pool grows to 100 connections and then raises; these pools hold at most
REDIS_POOL_MAX_CONNECTIONS and make a caller wait REDIS_POOL_TIMEOUT seconds for a free
connection before failing, so callers take their degraded path instead of piling up.
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import redis
import redis.asyncio as aioredis
from django.conf import settings
from prometheus_client import Gauge

from config.metrics import metrics_enabled, metrics_flush_hook_register, process_identity

# What a call through an asyncio pool raises when Redis is down, slow or the pool stays exhausted:
# the errors its callers' degraded paths catch.
ASYNC_REDIS_FAILURES = (redis.RedisError, OSError, asyncio.TimeoutError)

_lock = threading.Lock()
_pool: redis.BlockingConnectionPool | None = None
_client: redis.Redis | None = None


def redis_pool() -> redis.BlockingConnectionPool:
    global _pool
    with _lock:
        if _pool is None:
            _pool = redis.BlockingConnectionPool.from_url(
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


def async_redis_pool(*, client_name: str) -> aioredis.BlockingConnectionPool:
    """A new bounded, blocking asyncio pool (one per event loop that owns it): at most
    REDIS_POOL_MAX_CONNECTIONS, waiting REDIS_POOL_TIMEOUT for a free one, then failing into the
    caller's degraded path. Its connections carry ``client_name`` in Redis' CLIENT LIST."""
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        client_name=client_name,
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
