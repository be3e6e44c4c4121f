"""Bounded, blocking Redis connection pools: the process's shared one, and asyncio ones.

redis-py's default pool grows to 100 connections and then raises; these pools hold at most
REDIS_POOL_MAX_CONNECTIONS and make a caller wait REDIS_POOL_TIMEOUT seconds for a free
connection before failing, so callers take their degraded path instead of piling up.
"""

from __future__ import annotations

import asyncio
import threading

import redis
import redis.asyncio as aioredis
from django.conf import settings

# What a call through an asyncio pool raises when Redis is down, slow or the pool stays exhausted:
# the errors its callers' degraded paths catch.
ASYNC_REDIS_FAILURES = (redis.RedisError, OSError, asyncio.TimeoutError)

_lock = threading.Lock()
_pool: redis.BlockingConnectionPool | None = None


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
    """A client over the process's bounded pool (cheap: clients share the pool)."""
    return redis.Redis(connection_pool=redis_pool(), decode_responses=False)


def async_redis_pool(*, client_name: str) -> aioredis.BlockingConnectionPool:
    """A new bounded, blocking asyncio pool (one per event loop that owns it): at most
    REDIS_POOL_MAX_CONNECTIONS, waiting REDIS_POOL_TIMEOUT for a free one, then failing into the
    caller's degraded path. Its connections carry ``client_name`` in Redis' CLIENT LIST."""
    return aioredis.BlockingConnectionPool.from_url(
        settings.REDIS_URL,
        max_connections=settings.REDIS_POOL_MAX_CONNECTIONS,
        timeout=settings.REDIS_POOL_TIMEOUT,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT,
        socket_connect_timeout=settings.REDIS_SOCKET_TIMEOUT,
        client_name=client_name,
    )
