"""``/v2/positions``: open positions, valued at the latest prices, and closing them."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from trading import selectors, services
from trading.api.serializers import (
    CancelOrdersQuerySerializer,
    ClosePositionResultSerializer,
    OrderSerializer,
    PositionCloseQuerySerializer,
    PositionSerializer,
    close_position_result,
)
from trading.api.views_base import (
    TradingAPIView,
    parse_query,
    request_account,
    request_account_read,
    with_errors,
)
from trading.errors import TradingError

SYMBOL_OR_ASSET_ID = OpenApiParameter(
    "symbol_or_asset_id", str, OpenApiParameter.PATH, description="symbol or asset UUID"
)


class PositionsView(TradingAPIView):
    @extend_schema(
        operation_id="positions_list", responses=with_errors({200: PositionSerializer(many=True)}, 403)
    )
    def get(self, request: Request) -> Response:
        positions = request_account_read(request, selectors.portfolio_positions_read())
        return Response([PositionSerializer.shape(position) for position in positions])

    @extend_schema(
        operation_id="positions_close_all",
        parameters=[CancelOrdersQuerySerializer],
        responses={207: OpenApiResponse(ClosePositionResultSerializer(many=True), "one entry per position")},
    )
    def delete(self, request: Request) -> Response:
        query = parse_query(CancelOrdersQuerySerializer, request)
        account = request_account(request)
        # An ended game's account answers 403 whole, not a 207 of refusals.
        services.account_writes_refuse(account_id=account.pk)
        if query["cancel_orders"]:
            services.order_cancel_all(account_id=account.pk)
        results: list[dict[str, Any]] = []
        # One market order per position, each its own transaction: a position that cannot be
        # closed (shares held by open orders) is reported in its entry, the others still close.
        for symbol in selectors.position_symbols(account_id=account.pk):
            try:
                order = services.position_close(account_id=account.pk, symbol=symbol)
            except TradingError as error:
                results.append(
                    close_position_result(symbol, order=None, status=error.status, error=error.message)
                )
                continue
            placed = selectors.order_get(account_id=account.pk, order_id=order.pk)
            results.append(
                close_position_result(
                    symbol, order=placed, status=status.HTTP_200_OK, state=order.accepted_state
                )
            )
        return Response(results, status=status.HTTP_207_MULTI_STATUS)


class PositionDetailView(TradingAPIView):
    @extend_schema(
        operation_id="positions_retrieve",
        parameters=[SYMBOL_OR_ASSET_ID],
        responses=with_errors({200: PositionSerializer}, 403),
    )
    def get(self, request: Request, symbol_or_asset_id: str) -> Response:
        position = request_account_read(
            request, selectors.portfolio_position_read(symbol_or_asset_id=symbol_or_asset_id)
        )
        return Response(PositionSerializer.shape(position))

    @extend_schema(
        operation_id="positions_close",
        parameters=[SYMBOL_OR_ASSET_ID, PositionCloseQuerySerializer],
        responses=with_errors({200: OrderSerializer}),
    )
    def delete(self, request: Request, symbol_or_asset_id: str) -> Response:
        query = parse_query(PositionCloseQuerySerializer, request)
        account = request_account(request)
        symbol = selectors.position_symbol(account=account, symbol_or_asset_id=symbol_or_asset_id)
        order = services.position_close(
            account_id=account.pk, symbol=symbol, qty=query.get("qty"), percentage=query.get("percentage")
        )
        # The closing order as accepted, as POST /v2/orders answers it.
        accepted = order.accepted_state
        order = selectors.order_get(account_id=account.pk, order_id=order.pk)
        return Response(OrderSerializer.shape(order, accepted))
