"""``/v2/account``: balances, configuration, activities and portfolio history."""

from __future__ import annotations

import datetime as dt

from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from trading import calendar, selectors, services
from trading.api.serializers import (
    AccountConfigurationSerializer,
    AccountConfigurationUpdateSerializer,
    AccountSerializer,
    ActivitiesQuerySerializer,
    NonTradeActivitySerializer,
    PortfolioHistoryQuerySerializer,
    PortfolioHistorySerializer,
    TradeActivitySerializer,
    activity_shape,
)
from trading.api.views_base import (
    TradingAPIView,
    account_read_with_row,
    parse_body,
    parse_query,
    request_account,
    request_account_read,
    with_errors,
)

# A list of activities, each a fill or a cash movement told apart by activity_type.
ACTIVITIES = PolymorphicProxySerializer(
    component_name="Activity",
    serializers={
        activity_type: TradeActivitySerializer
        if activity_type == selectors.FILL_ACTIVITY
        else NonTradeActivitySerializer
        for activity_type in selectors.ACTIVITY_TYPES
    },
    resource_type_field_name="activity_type",
    many=True,
)


class AccountView(TradingAPIView):
    @extend_schema(operation_id="account_retrieve", responses=with_errors({200: AccountSerializer}, 403))
    def get(self, request: Request) -> Response:
        summary = request_account_read(request, selectors.account_summary_read())
        return Response(AccountSerializer.shape(summary))


class AccountResetView(TradingAPIView):
    """Start over (our addition to Alpaca's API): orders canceled, positions cleared, cash restored."""

    @extend_schema(
        operation_id="account_reset", request=None, responses=with_errors({200: AccountSerializer}, 403)
    )
    def post(self, request: Request) -> Response:
        account = services.account_self_reset(account_id=request_account(request).pk)
        # The row read again with the book: a fill committed since the reset would otherwise be
        # priced against the reset's cash.
        return Response(
            AccountSerializer.shape(account_read_with_row(account, selectors.account_summary_read()))
        )


class AccountConfigurationsView(TradingAPIView):
    @extend_schema(
        operation_id="account_configurations_retrieve",
        responses=with_errors({200: AccountConfigurationSerializer}, 403),
    )
    def get(self, request: Request) -> Response:
        account = request_account(request)
        game = selectors.game_rules_for_account(account_id=account.pk)
        return Response(AccountConfigurationSerializer.shape(account, game=game))

    @extend_schema(
        operation_id="account_configurations_update",
        request=AccountConfigurationUpdateSerializer,
        responses=with_errors({200: AccountConfigurationSerializer}),
    )
    def patch(self, request: Request) -> Response:
        body = parse_body(AccountConfigurationUpdateSerializer, request)
        account = services.account_configure(
            account_id=request_account(request).pk,
            no_shorting=body.get("no_shorting"),
            suspend_trade=body.get("suspend_trade"),
            trade_confirm_email=body.get("trade_confirm_email"),
        )
        game = selectors.game_rules_for_account(account_id=account.pk)
        return Response(AccountConfigurationSerializer.shape(account, game=game))


class ActivitiesView(TradingAPIView):
    """Fills and cash movements, newest first by default, in keyset pages (page_token = last id)."""

    @extend_schema(
        operation_id="account_activities_list",
        parameters=[ActivitiesQuerySerializer],
        responses=with_errors({200: ACTIVITIES}, 403),
    )
    def get(self, request: Request, activity_type: str | None = None) -> Response:
        query = parse_query(ActivitiesQuerySerializer, request)
        types: list[str] | None = [activity_type.upper()] if activity_type else query.get("activity_types")
        wanted = (
            selectors.activity_types_produced(types) if types is not None else set(selectors.ACTIVITY_TYPES)
        )
        category = query.get("category")
        if category is not None:
            trades = category == "trade_activity"
            wanted = {kind for kind in wanted if (kind == selectors.FILL_ACTIVITY) == trades}
        after, until = query.get("after"), query.get("until")
        day: dt.date | None = query.get("date")
        if day is not None:
            after = calendar.day_start(day) - dt.timedelta(microseconds=1)
            until = calendar.day_start(day + dt.timedelta(days=1))
        if not wanted:
            # Types the simulator never produces (dividends, transfers...) have no entries.
            return Response([])
        activities = selectors.account_activities(
            account_id=request_account(request).pk,
            activity_types=sorted(wanted),
            after=after,
            until=until,
            direction=query["direction"],
            page_size=query["page_size"],
            page_token=query.get("page_token"),
        )
        return Response([activity_shape(activity) for activity in activities])


class ActivitiesByTypeView(ActivitiesView):
    @extend_schema(
        operation_id="account_activities_by_type_list",
        parameters=[
            ActivitiesQuerySerializer,
            OpenApiParameter(
                "activity_type", str, OpenApiParameter.PATH, enum=list(selectors.ALPACA_ACTIVITY_TYPES)
            ),
        ],
        responses=with_errors({200: ACTIVITIES}, 403),
    )
    def get(self, request: Request, activity_type: str | None = None) -> Response:
        return super().get(request, activity_type)


class PortfolioHistoryView(TradingAPIView):
    @extend_schema(
        operation_id="portfolio_history_retrieve",
        parameters=[PortfolioHistoryQuerySerializer],
        responses=with_errors({200: PortfolioHistorySerializer}, 403),
    )
    def get(self, request: Request) -> Response:
        query = parse_query(PortfolioHistoryQuerySerializer, request)
        start: dt.datetime | None = query.get("start")
        end: dt.datetime | None = query.get("end")
        if start is None and query.get("date_start") is not None:
            start = calendar.day_start(query["date_start"])
        if end is None and query.get("date_end") is not None:
            end = calendar.day_start(query["date_end"] + dt.timedelta(days=1))
        history = selectors.portfolio_history(
            account=request_account(request),
            period=query.get("period"),
            timeframe=query.get("timeframe"),
            start=start,
            end=end,
        )
        return Response(PortfolioHistorySerializer.shape(history))
