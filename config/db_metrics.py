"""Database queries and query time, per request and per process, through a connection
``execute_wrapper`` on every connection (Property 31, docs/properties.md).

Inside a request (``config.http_metrics.RequestMetricsMiddleware`` opens the scope) the count and
time add up in a thread-local and the middleware writes them once, with the request's route;
``benchmark api`` reads the same count from the ``X-DB-Queries`` header it adds under
``BENCHMARK_ENDPOINTS``. Outside a request (the market's writer, Celery tasks, the streams'
database calls) each query is written to the per-process series directly.

A query slower than ``DB_SLOW_QUERY_MS`` is logged with its normalised SQL (literals replaced by
``?``, ``IN`` lists collapsed, so one statement shape is one log line) and the route that ran it,
and kept in a capped Redis list the ops page reads (``slow_query_record``).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.utils import timezone
from prometheus_client import Counter

from config.metrics import Deferred, metrics_enabled, process_identity
from config.redis_pools import redis_client

logger = logging.getLogger("config.db.slow")

DB_QUERIES = Counter("db_queries_total", "Database queries run.", ["role", "slot"], registry=None)
DB_QUERY_SECONDS = Counter(
    "db_query_seconds_total", "Time spent in database queries.", ["role", "slot"], registry=None
)
DB_SLOW_QUERIES = Counter(
    "db_slow_queries_total", "Queries slower than DB_SLOW_QUERY_MS.", ["route"], registry=None
)
_queries = Deferred(DB_QUERIES)
_query_seconds = Deferred(DB_QUERY_SECONDS)


@dataclass
class RequestQueries:
    count: int = 0
    seconds: float = 0.0
    route: str = ""


_local = threading.local()

# Where a fast read (config/wsgi.py's FastReads) handing a request on to the view leaves the
# ``(count, seconds)`` of the statements it ran, which the view's scope starts from.
HANDED_QUERIES_ENVIRON = "config.db_queries_handed"

_STRING = re.compile(r"'(?:[^']|'')*'")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_PLACEHOLDER_LIST = re.compile(r"\(\s*(?:(?:\?|%s)\s*,\s*)+(?:\?|%s)\s*\)")
_SPACE = re.compile(r"\s+")


def sql_normalise(sql: str) -> str:
    """One shape per statement: literals become ``?``, lists of them ``(?, ...)``."""
    shape = _STRING.sub("?", sql)
    shape = _NUMBER.sub("?", shape)
    shape = shape.replace("%s", "?")
    shape = _PLACEHOLDER_LIST.sub("(?, ...)", shape)
    return _SPACE.sub(" ", shape).strip()


def request_queries_begin(route: str = "", *, handed: tuple[int, float] | None = None) -> RequestQueries:
    """Opens this thread's request scope: queries from here count towards it, after ``handed``'s
    (those a fast read ran before handing the request on)."""
    scope = RequestQueries(route=route)
    if handed is not None:
        scope.count, scope.seconds = handed
    _local.scope = scope
    return scope


def request_queries_end() -> RequestQueries | None:
    scope: RequestQueries | None = getattr(_local, "scope", None)
    _local.scope = None
    return scope


def request_queries_route_set(route: str) -> None:
    scope: RequestQueries | None = getattr(_local, "scope", None)
    if scope is not None:
        scope.route = route


def process_queries_add(count: int, seconds: float) -> None:
    """Adds queries to this process's series (one write each for count and time)."""
    identity = process_identity()
    _queries(identity.role, identity.slot).inc(count)
    _query_seconds(identity.role, identity.slot).inc(seconds)


def _measured(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = time.perf_counter() - started
        scope: RequestQueries | None = getattr(_local, "scope", None)
        if scope is not None:
            scope.count += 1
            scope.seconds += elapsed
        elif metrics_enabled():
            process_queries_add(1, elapsed)
        if elapsed * 1000.0 >= settings.DB_SLOW_QUERY_MS:
            route = scope.route if scope is not None and scope.route else "-"
            shape = sql_normalise(sql)
            logger.warning("slow query: %.1f ms route=%s sql=%s", elapsed * 1000.0, route, shape)
            slow_query_record(shape=shape, ms=elapsed * 1000.0, route=route)
            if metrics_enabled():
                DB_SLOW_QUERIES.labels(route).inc()


# --- The recent slow queries, for the ops page ------------------------------------------------------
# A capped Redis list shared by the host's processes (the newest SLOW_QUERIES_KEPT), which the ops
# page groups by statement shape. Slow queries are rare, so one pipeline each costs nothing; after
# a Redis error recording pauses for SLOW_QUERY_REDIS_RETRY_S, so an outage adds no wait to every
# slow query.
SLOW_QUERIES_KEPT = 500
SLOW_QUERY_SQL_MAX = 2000
SLOW_QUERY_REDIS_RETRY_S = 10.0
_slow_redis_down_until = 0.0


def slow_queries_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:db:slow"


def slow_query_record(*, shape: str, ms: float, route: str) -> None:
    global _slow_redis_down_until
    now = time.monotonic()
    if now < _slow_redis_down_until:
        return
    entry = json.dumps(
        {
            "sql": shape[:SLOW_QUERY_SQL_MAX],
            "ms": round(ms, 1),
            "route": route,
            "at": timezone.now().timestamp(),
        }
    )
    try:
        pipe = redis_client().pipeline(transaction=False)
        pipe.lpush(slow_queries_key(), entry)
        pipe.ltrim(slow_queries_key(), 0, SLOW_QUERIES_KEPT - 1)
        pipe.execute()
    except (redis.RedisError, OSError):
        _slow_redis_down_until = now + SLOW_QUERY_REDIS_RETRY_S


def _wrap(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    # First in the list: Django's execute_wrapper() context manager pops the last entry, so one
    # opened before this connection existed still removes its own wrapper, not this one.
    if _measured not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _measured)


def db_metrics_install() -> None:
    """Wraps every database connection this process opens (idempotent; trading's ready())."""
    connection_created.connect(_wrap, dispatch_uid="config.db_metrics")
