"""``/v2/assets``, ``/v2/clock`` and ``/v2/calendar``."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trading import calendar, selectors
from trading.api.serializers import (
    AssetSerializer,
    AssetsQuerySerializer,
    CalendarDaySerializer,
    CalendarQuerySerializer,
    ClockSerializer,
)
from trading.api.views_base import TradingAPIView, parse_query, with_errors
from trading.errors import InvalidRequest

CALENDAR_DEFAULT_SPAN = dt.timedelta(days=365)
CALENDAR_MAX_SPAN = dt.timedelta(days=3660)


class AssetsView(TradingAPIView):
    @extend_schema(
        operation_id="assets_list",
        parameters=[AssetsQuerySerializer],
        responses=with_errors({200: AssetSerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        query = parse_query(AssetsQuerySerializer, request)
        assets = selectors.assets_list(
            status=query.get("status"), asset_class=query.get("asset_class"), exchange=query.get("exchange")
        )
        return Response([AssetSerializer.shape(asset) for asset in assets])


class AssetDetailView(TradingAPIView):
    @extend_schema(
        operation_id="assets_retrieve",
        parameters=[OpenApiParameter("symbol_or_asset_id", str, OpenApiParameter.PATH)],
        responses=with_errors({200: AssetSerializer}),
    )
    def get(self, request: Request, symbol_or_asset_id: str) -> Response:
        return Response(AssetSerializer.shape(selectors.asset_get(symbol_or_asset_id=symbol_or_asset_id)))


class ClockView(TradingAPIView):
    @extend_schema(operation_id="clock_retrieve", responses=with_errors({200: ClockSerializer}))
    def get(self, request: Request) -> Response:
        return Response(ClockSerializer.shape(calendar.clock_at(timezone.now())))


class CalendarView(TradingAPIView):
    """Trading days between start and end (inclusive); by default the coming year."""

    @extend_schema(
        operation_id="calendar_list",
        parameters=[CalendarQuerySerializer],
        responses=with_errors({200: CalendarDaySerializer(many=True)}),
    )
    def get(self, request: Request) -> Response:
        query = parse_query(CalendarQuerySerializer, request)
        start: dt.date | None = query.get("start")
        end: dt.date | None = query.get("end")
        if start is None:
            start = end - CALENDAR_DEFAULT_SPAN if end else calendar.trading_day_of(timezone.now())
        if end is None:
            end = start + CALENDAR_DEFAULT_SPAN
        if end - start > CALENDAR_MAX_SPAN:
            raise InvalidRequest("start and end may be at most 10 years apart")
        days = calendar.sessions_between(start, end)
        return Response([CalendarDaySerializer.shape(day) for day in days])
