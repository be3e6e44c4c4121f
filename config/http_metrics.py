"""HTTP requests, latency and errors per route name, method and status class, and the database
queries of each request (Property 31, docs/properties.md).

The outermost middleware of both stacks (pages and the API, config/wsgi.py), so its latency
includes every other layer. Labels stay bounded: the route's URL name (or its pattern when it has
none), never the path; a request no route matched is ``unmatched``. Per request it makes a handful
of metric writes (each a locked write to a memory-mapped file), and none with
``METRICS_ENABLED=false``; under ``BENCHMARK_ENDPOINTS`` it also reports the request's query count
in an ``X-DB-Queries`` header, which ``benchmark api`` reads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from prometheus_client import Counter, Histogram

from config.db_metrics import (
    HANDED_QUERIES_ENVIRON,
    process_queries_add,
    request_queries_begin,
    request_queries_end,
    request_queries_route_set,
)
from config.metrics import COUNT_BUCKETS, LATENCY_BUCKETS, Deferred, metrics_enabled

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests answered.", ["route", "method", "status"], registry=None
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from the first middleware to the response.",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
HTTP_ERRORS = Counter(
    "http_request_errors_total", "HTTP requests answered 5xx.", ["route", "method", "status"], registry=None
)
DB_REQUEST_QUERIES = Histogram(
    "db_request_queries",
    "Database queries per HTTP request.",
    ["route"],
    buckets=COUNT_BUCKETS,
    registry=None,
)
DB_REQUEST_QUERY_SECONDS = Counter(
    "db_request_query_seconds_total",
    "Time in database queries, by the route that ran them.",
    ["route"],
    registry=None,
)
_requests = Deferred(HTTP_REQUESTS)
_seconds = Deferred(HTTP_REQUEST_SECONDS)
_errors = Deferred(HTTP_ERRORS)
_request_queries = Deferred(DB_REQUEST_QUERIES)
_request_query_seconds = Deferred(DB_REQUEST_QUERY_SECONDS)

UNMATCHED_ROUTE = "unmatched"
# Methods outside this set are counted as "other", so a client cannot invent label values.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return match.view_name or match.route or UNMATCHED_ROUTE


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.enabled = metrics_enabled()
        self.query_header = settings.BENCHMARK_ENDPOINTS

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        started = time.perf_counter()
        scope = request_queries_begin(handed=request.META.pop(HANDED_QUERIES_ENVIRON, None))
        try:
            response = self.get_response(request)
        finally:
            request_queries_end()
        if self.query_header:
            response["X-DB-Queries"] = str(scope.count)
        if self.enabled:
            self._record(request, response, time.perf_counter() - started, scope.count, scope.seconds)
        return response

    def process_view(self, request: HttpRequest, view: Any, args: Any, kwargs: Any) -> None:
        # The slow-query log names the route (config/db_metrics.py).
        request_queries_route_set(route_name(request))

    @staticmethod
    def _record(
        request: HttpRequest, response: HttpResponseBase, seconds: float, queries: int, query_seconds: float
    ) -> None:
        request_record(
            route_name(request),
            request.method or "other",
            response.status_code,
            seconds,
            queries,
            query_seconds,
        )


def request_record(
    route: str, method: str, status: int, seconds: float, queries: int, query_seconds: float
) -> None:
    """One answered request's series, as the middleware writes them (also for the cached reads'
    fast path, analytics/fast_reads.py, which answers without Django's request and response)."""
    if method not in _METHODS:
        method = "other"
    status_class = f"{status // 100}xx"
    _requests(route, method, status_class).inc()
    _seconds(route, method).observe(seconds)
    _request_queries(route).observe(queries)
    if queries:
        _request_query_seconds(route).inc(query_seconds)
        process_queries_add(queries, query_seconds)
    if status >= 500:
        _errors(route, method, status_class).inc()
