"""Benchmark-only API floors, served under BENCHMARK_ENDPOINTS (config/urls.py wires them):
what any endpoint behind the API's stack costs before its own work.

- ``GET /v2/_bench/api-ping``: key authentication, the rate limiter and DRF, answering a small
  constant body (``benchmark api``'s API floor; the trivial Django view ``/v2/_bench/ping`` is the
  floor below it).
- ``POST /v2/_bench/insert``: the same stack under the ``orders`` limit, parsing an order-shaped
  JSON body and inserting one row (``benchmark trading``'s floor for order placement).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from benchmarks.models import InsertFloorRow
from trading.api.authentication import VerifiedKey
from trading.api.views_base import TradingAPIView

PONG = {"pong": True}


class ApiFloorView(TradingAPIView):
    """Authenticated and rate limited as every trading read, with nothing of its own to do."""

    def get(self, request: Request) -> Response:
        return Response(PONG)


class InsertFloorView(TradingAPIView):
    """Authenticated and limited as order placement is, then one INSERT: what placing an order
    cannot cost less than."""

    throttle_scope = "orders"

    def post(self, request: Request) -> Response:
        body: Any = request.data
        if not isinstance(body, dict) or body.get("side") not in ("buy", "sell"):
            raise ValidationError("an order-shaped JSON object with side buy or sell is expected")
        verified = request.auth
        # The verified key names its account: the floor reads no account row.
        if not isinstance(verified, VerifiedKey):
            raise PermissionDenied("an API key is required")
        row = InsertFloorRow.objects.create(
            account_id=verified.account_id, side=body["side"], created_at=timezone.now()
        )
        return Response({"id": row.pk, "side": row.side})
