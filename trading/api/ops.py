"""Operational endpoints: ``/healthz`` for load balancers and monitors, the OpenAPI schema and docs.

``/healthz`` is a plain Django view on purpose: it must answer even when the API stack (DRF,
authentication, throttling) is what is broken, and it needs no authentication. Its status:

- ``ok``: database and Redis answer;
- ``degraded`` (still HTTP 200): Redis is down; the app keeps serving from the database (caches
  miss, quotes fall back to stored ticks: docs/architecture.md, Outages and crash recovery), so
  the instance should stay in rotation;
- ``down`` (HTTP 503): the database does not answer; nothing useful can be served.

The market block reports how old the newest stored tick is (the market process's lag): the
newest of each asset's newest tick, one seek per asset down the (symbol, recorded_at) index
(ticks have no index on time alone: docs/architecture.md, Storage).

Anonymous callers (load balancers, monitors, anyone) get the status alone: which dependency is
down, how slow it is and whether the Redis is embedded tell an attacker what to aim at. A staff
session gets the whole report.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views import View

from config.redis_pools import redis_client
from trading.models import Asset, StockPriceHistory
from trading.quotes import newest_rows


def _millis(seconds: float) -> float:
    return round(seconds * 1000, 3)


@dataclass
class HealthCheck:
    """Probe the database, Redis and the market's lag; dependencies are injectable for tests."""

    redis_factory: Callable[[], redis.Redis] = redis_client
    clock: Callable[[], dt.datetime] = timezone.now
    using: str = DEFAULT_DB_ALIAS
    embedded_redis: bool = field(default_factory=lambda: bool(getattr(settings, "EMBEDDED_REDIS", False)))

    def run(self) -> dict[str, Any]:
        database = self.database()
        redis_status = self.redis()
        market = self.market() if database["ok"] else {"last_tick_at": None, "lag_seconds": None}
        if not database["ok"]:
            status = "down"
        elif not redis_status["ok"]:
            status = "degraded"
        else:
            status = "ok"
        return {"status": status, "database": database, "redis": redis_status, "market": market}

    def database(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            with connections[self.using].cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except DatabaseError as error:
            return {"ok": False, "latency_ms": None, "error": error.__class__.__name__}
        return {"ok": True, "latency_ms": _millis(time.perf_counter() - started)}

    def redis(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            self.redis_factory().ping()
        except (redis.RedisError, OSError) as error:
            return {
                "ok": False,
                "latency_ms": None,
                "embedded": self.embedded_redis,
                "error": error.__class__.__name__,
            }
        return {
            "ok": True,
            "latency_ms": _millis(time.perf_counter() - started),
            "embedded": self.embedded_redis,
        }

    def market(self) -> dict[str, Any]:
        try:
            last = (
                StockPriceHistory.objects.using(self.using)
                .filter(
                    newest_rows(
                        StockPriceHistory,
                        symbols=Asset.objects.using(self.using).values_list("symbol", flat=True),
                        order_key="recorded_at",
                    )
                )
                .order_by("-recorded_at")
                .values_list("recorded_at", flat=True)
                .first()
            )
        except DatabaseError:
            last = None
        if last is None:
            return {"last_tick_at": None, "lag_seconds": None}
        lag = max(0.0, (self.clock() - last).total_seconds())
        return {"last_tick_at": last.isoformat(), "lag_seconds": round(lag, 3)}


class HealthzView(View):
    """GET /healthz: 200 when the database answers (status ok or degraded), else 503."""

    health_check: HealthCheck | None = None
    http_method_names = ["get", "head", "options"]

    def get(self, request: HttpRequest) -> JsonResponse:
        report = (self.health_check or HealthCheck()).run()
        status = 503 if report["status"] == "down" else 200
        user = getattr(request, "user", None)
        if not (user is not None and user.is_active and user.is_staff):
            report = {"status": report["status"]}
        response = JsonResponse(report, status=status)
        response["Cache-Control"] = "no-store"
        return response
