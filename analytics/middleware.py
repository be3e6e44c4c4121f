"""Benchmark-only middleware (installed when ``BENCHMARK_ENDPOINTS`` is on): reports how many
database queries served each response in an ``X-DB-Queries`` header, so ``benchmark api`` can
count queries inside the real server processes (Property 41, docs/properties.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponseBase


class QueryCountMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        count = 0

        def counted(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
            nonlocal count
            count += 1
            return execute(sql, params, many, context)

        with connection.execute_wrapper(counted):
            response = self.get_response(request)
        response["X-DB-Queries"] = str(count)
        return response
