"""Leaderboard and analytics endpoints under /v2/: precomputed rows served through the cache layers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request

from analytics import selectors
from analytics.models import LeaderboardPeriod
from analytics.serializers import (
    AccountAnalyticsSerializer,
    LeaderboardCsvQuerySerializer,
    LeaderboardQuerySerializer,
    LeaderboardSerializer,
    SymbolStatsSerializer,
)
from trading.api.authentication import VerifiedKey
from trading.api.csv_export import csv_response
from trading.api.rendered_bodies import RenderedBodies
from trading.api.views_base import TradingAPIView, parse_query, request_account, with_errors
from trading.errors import InvalidRequest
from trading.units import UnitError, to_integer

# The cached reads answer with the body rendered when their cached value was first served (the
# renderer the API uses, so the bytes are those DRF would write). The fast path
# (analytics/fast_reads.py) serves the same bodies.
rendered_bodies = RenderedBodies(render=lambda data: JSONRenderer().render(data))


def _json(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type=JSONRenderer.media_type)


class LeaderboardView(TradingAPIView):
    rate_verdict_after_handler = True

    @extend_schema(
        operation_id="leaderboard_retrieve",
        parameters=[LeaderboardQuerySerializer],
        responses=with_errors({200: LeaderboardSerializer}),
    )
    def get(self, request: Request) -> HttpResponse:
        # Parsed by hand, not by the serializer that documents the parameters: building a DRF
        # serializer costs more than serving the cached board. The selector checks both values.
        params = request.query_params
        limit = params.get("limit")
        try:
            parsed_limit = None if limit is None else to_integer(limit, field="limit")
        except UnitError:
            raise InvalidRequest("limit must be a whole number") from None
        period = params.get("period") or LeaderboardPeriod.OVERALL
        board, checked = selectors.leaderboard_whole_get_or_refresh(period=period, limit=parsed_limit)
        return _json(
            rendered_bodies.get(
                board, variant=checked, payload=lambda: selectors.leaderboard_first(board, checked)
            )
        )


class LeaderboardCsvView(TradingAPIView):
    """The whole newest board as CSV, for staff (streamed: a board can hold every player)."""

    permission_classes = [IsAdminUser]

    @extend_schema(
        operation_id="leaderboard_csv",
        parameters=[LeaderboardCsvQuerySerializer],
        responses={
            (200, "text/csv"): OpenApiResponse(str, description="every entry, best first"),
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        period = parse_query(LeaderboardCsvQuerySerializer, request)["period"]
        return csv_response(
            selectors.leaderboard_csv_rows(period=period), filename=f"leaderboard-{period}.csv"
        )


class AccountAnalyticsView(TradingAPIView):
    rate_verdict_after_handler = True

    @extend_schema(
        operation_id="analytics_account_retrieve",
        responses=with_errors({200: AccountAnalyticsSerializer}, 403),
    )
    def get(self, request: Request) -> HttpResponse:
        # An API key names its account: a cached answer then costs no query for the account row.
        key = request.auth
        analytics: dict[str, Any]
        if isinstance(key, VerifiedKey):
            analytics = selectors.account_analytics_get_or_compute_by_id(account_id=key.account_id)
        else:
            analytics = selectors.account_analytics_get_or_compute(account=request_account(request))
        return _json(rendered_bodies.get(analytics))


class SymbolStatsView(TradingAPIView):
    rate_verdict_after_handler = True

    @extend_schema(
        operation_id="analytics_symbol_retrieve",
        parameters=[OpenApiParameter("symbol", str, OpenApiParameter.PATH)],
        responses=with_errors({200: SymbolStatsSerializer}),
    )
    def get(self, request: Request, symbol: str) -> HttpResponse:
        return _json(rendered_bodies.get(selectors.symbol_stats_get_or_compute(symbol=symbol)))


def bench_ping(request: HttpRequest) -> JsonResponse:
    """The benchmark's floor: a plain Django view, no authentication, no database."""
    return JsonResponse({"pong": True})
