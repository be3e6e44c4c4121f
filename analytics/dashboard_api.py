"""The dashboard's own endpoints under /v2/: its first-load bootstrap and its performance reports.

Both take a session (the page) or an API key, answer errors in Alpaca's shape and appear in the
OpenAPI schema. The serializers here describe the answers for the schema; the bodies are built by
``analytics.dashboard`` and ``analytics.services`` (see trading/api/serializers.py on why).
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import services
from analytics.dashboard import dashboard_bootstrap_build
from analytics.models import FRONTEND_PAGE_MAX_LENGTH, FRONTEND_RENDERER_MAX_LENGTH
from analytics.serializers import (
    AccountAnalyticsSerializer,
    GameLeaderboardSerializer,
    LeaderboardSerializer,
    StatementSerializer,
)
from trading import selectors as trading_selectors
from trading.api.serializers import (
    AccountSerializer,
    OrderSerializer,
    PositionSerializer,
    TradeActivitySerializer,
)
from trading.api.views_base import (
    TradingAPIView,
    parse_body,
    request_account,
    request_account_read,
    with_errors,
)

# --- Bootstrap ------------------------------------------------------------------------------------


class DashboardUserSerializer(serializers.Serializer[Any]):
    username = serializers.CharField()
    is_staff = serializers.BooleanField()


class DashboardOrdersSerializer(serializers.Serializer[Any]):
    open = OrderSerializer(many=True, help_text="As GET /v2/orders?status=open&limit=500, newest first.")
    recent = OrderSerializer(many=True, help_text="The 50 most recent orders of any status, newest first.")


class DashboardAssetSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField()
    name = serializers.CharField()
    exchange = serializers.CharField()
    sector = serializers.CharField()
    tradable = serializers.BooleanField()
    halted = serializers.BooleanField()
    last = serializers.FloatField(allow_null=True, help_text="Dollars; null before the first tick.")
    prev_close = serializers.FloatField(allow_null=True, help_text="The previous trading day's close.")
    bid = serializers.FloatField(allow_null=True)
    ask = serializers.FloatField(allow_null=True)
    volume = serializers.IntegerField(help_text="Shares traded this trading day.")
    spark = serializers.ListField(
        child=serializers.FloatField(), help_text="Up to 30 recent one-minute closes, oldest first."
    )


class DashboardWatchlistSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    symbols = serializers.ListField(child=serializers.CharField())


class DashboardStreamsSerializer(serializers.Serializer[Any]):
    market_data = serializers.CharField()
    trade_updates = serializers.CharField()
    dashboard = serializers.CharField()


class DashboardConfigSerializer(serializers.Serializer[Any]):
    batch_window_ms = serializers.IntegerField()
    self_reset = serializers.BooleanField()
    perf_report_interval_s = serializers.FloatField()
    next_day_start = serializers.DateTimeField()
    leaderboard_poll_ms = serializers.IntegerField(
        help_text="how often a game account's page polls its game's board: a third of the staleness bound"
    )
    leaderboard_max_staleness_ms = serializers.IntegerField(
        help_text="the staleness bound: a game's board older than this with no newer one is marked stale"
    )


class DashboardGameSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()
    leaderboard_url = serializers.CharField(help_text="GET /v2/games/{id}/leaderboard with the board's limit")


@extend_schema_field(
    PolymorphicProxySerializer(
        component_name="DashboardLeaderboard",
        serializers=[LeaderboardSerializer, GameLeaderboardSerializer],
        resource_type_field_name=None,
    )
)
class DashboardLeaderboardField(serializers.JSONField):
    pass


class DashboardBootstrapSerializer(serializers.Serializer[Any]):
    as_of = serializers.DateTimeField()
    user = DashboardUserSerializer()
    account = AccountSerializer()
    positions = PositionSerializer(many=True)
    orders = DashboardOrdersSerializer()
    fills = TradeActivitySerializer(many=True, help_text="The 50 most recent FILL activities.")
    assets = DashboardAssetSerializer(many=True, help_text="Every active asset, sorted by symbol.")
    watchlist = DashboardWatchlistSerializer()
    leaderboard = DashboardLeaderboardField(
        help_text="As GET /v2/leaderboard?period=overall&limit=20; on a game account, as "
        "GET /v2/games/{id}/leaderboard?limit=20 (the global board holds default accounts only)."
    )
    game = DashboardGameSerializer(
        allow_null=True, help_text="The account's game; null for a default account."
    )
    analytics = AccountAnalyticsSerializer(allow_null=True, help_text="Null before the first analytics run.")
    statements = StatementSerializer(many=True)
    streams = DashboardStreamsSerializer()
    config = DashboardConfigSerializer()


class DashboardBootstrapView(TradingAPIView):
    @extend_schema(
        operation_id="dashboard_bootstrap",
        responses=with_errors({200: DashboardBootstrapSerializer}, 403),
        description="Everything the dashboard shows on its first load, in one answer.",
    )
    def get(self, request: Request) -> Response:
        now = timezone.now()
        # The account's row and its book from one moment, as GET /v2/account reads them.
        summary = request_account_read(request, trading_selectors.account_summary_read(now=now))
        account = request_account(request)
        return Response(
            dashboard_bootstrap_build(
                user=request.user, account=account, request=request, now=now, summary=summary
            )
        )


# --- Frontend performance reports -----------------------------------------------------------------

# Far above anything a page measures in one interval, and safely inside a 64-bit column.
_COUNT_MAX = 2**53


def _count(**kwargs: Any) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=_COUNT_MAX, **kwargs)


def _measure() -> serializers.FloatField:
    return serializers.FloatField(min_value=0)


class FrontendSampleSerializer(serializers.Serializer[Any]):
    page = serializers.CharField(max_length=FRONTEND_PAGE_MAX_LENGTH)
    renderer = serializers.CharField(
        max_length=FRONTEND_RENDERER_MAX_LENGTH,
        required=False,
        default="",
        allow_blank=True,
        help_text="the market table's renderer: selective, or naive (the benchmark's baseline)",
    )
    interval_s = _measure()
    renders = _count()
    updates = _count()
    render_ms_p50 = _measure()
    render_ms_p95 = _measure()
    render_ms_max = _measure()
    long_tasks = _count()
    long_task_ms = _measure()
    frames = _count()
    dropped_frames = _count()
    js_heap_bytes = _count(allow_null=True, help_text="null where the browser does not expose it")
    dom_nodes = _count()


class FrontendMetricsView(TradingAPIView):
    """A page's rendering figures over its last report interval (session: send X-CSRFToken)."""

    @extend_schema(
        operation_id="frontend_metrics_create",
        request=FrontendSampleSerializer,
        responses=with_errors({204: OpenApiResponse(description="stored")}),
    )
    def post(self, request: Request) -> Response:
        body = parse_body(FrontendSampleSerializer, request)
        page = body.pop("page")
        renderer = body.pop("renderer")
        services.frontend_sample_record(
            user_id=request.user.pk,
            page=page,
            renderer=renderer,
            figures=services.FrontendFigures(**body),
            user_agent=str(request.META.get("HTTP_USER_AGENT", "")),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
