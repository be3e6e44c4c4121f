"""``/v2/orders``: place, list, get, replace and cancel orders."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.fields import ChoiceField, SkipField, empty
from rest_framework.request import Request
from rest_framework.response import Response

from trading import selectors, services
from trading.api.serializers import (
    CancelOrderResultSerializer,
    ClientOrderIdQuerySerializer,
    OrderCreateSerializer,
    OrderReplaceSerializer,
    OrderSerializer,
    OrdersQuerySerializer,
)
from trading.api.views_base import (
    TradingAPIView,
    parse_body,
    parse_query,
    parse_uuid,
    request_account,
    request_account_pk,
    request_account_read,
    with_errors,
)

ORDER_ID = OpenApiParameter("order_id", str, OpenApiParameter.PATH, description="order UUID")

# What the serializer answers for a query that names at most a status: its defaults.
_ORDERS_QUERY_DEFAULTS: dict[str, Any] = {
    name: field.default
    for name, field in OrdersQuerySerializer().fields.items()
    if field.default is not empty
}
_ORDER_STATUSES = frozenset(cast(ChoiceField, OrdersQuerySerializer().fields["status"]).choices)
# A bot's poll of its open orders: the query strings it sends (``status=open``, or none while the
# default status is open) and the parameters ``_orders_query`` reads from them. The fast path
# (trading/api/fast_reads.py) answers it with the view's read.
ORDERS_POLL_QUERY: dict[str, Any] = {**_ORDERS_QUERY_DEFAULTS, "status": "open"}
ORDERS_POLL_QUERY_STRINGS = frozenset(
    {"status=open", *([""] if _ORDERS_QUERY_DEFAULTS["status"] == "open" else [])}
)


def _orders_query(request: Request) -> dict[str, Any]:
    """The list's parameters. A bot's poll (``?status=open``, or nothing) is answered from the
    serializer's defaults without building the serializer, whose fields are deep-copied per
    instance (a third of the list's time before its queries); anything else, errors included,
    goes through it."""
    params = request.query_params
    if params.keys() <= {"status"}:
        status_value = params.get("status", _ORDERS_QUERY_DEFAULTS["status"])
        if status_value in _ORDER_STATUSES:
            return {**_ORDERS_QUERY_DEFAULTS, "status": status_value}
    return parse_query(OrdersQuerySerializer, request)


def orders_listing(query: dict[str, Any]) -> dict[str, Any]:
    """The list's selector arguments from its parameters (``_orders_query``)."""
    return {
        "status": query["status"],
        "limit": query["limit"],
        "after": query.get("after"),
        "until": query.get("until"),
        "direction": query["direction"],
        "side": query.get("side"),
        "symbols": query.get("symbols"),
    }


# The order body's fields, built and bound once. A serializer deep-copies its declared fields for
# every instance: two thirds of validating an order's body, a sixth of a filled market order's
# CPU. A simple order's body (no nested take_profit, stop_loss or legs) is validated by these
# copies as the serializer's own to_internal_value and validate would (docs/architecture.md,
# Framework bypasses); a body any field refuses, or one of another shape, goes through the
# serializer, which answers its errors.
_ORDER_BODY = OrderCreateSerializer()
_ORDER_BODY_FIELDS = tuple(_ORDER_BODY.fields.items())
_ORDER_BODY_NESTED = frozenset({"take_profit", "stop_loss", "legs"})
_ORDER_BODY_SIMPLE_KEYS = frozenset(_ORDER_BODY.fields) - _ORDER_BODY_NESTED


def order_body_simple(data: object) -> dict[str, Any] | None:
    """A simple order's validated body, or None: the serializer is to answer it."""
    if type(data) is not dict or not data.keys() <= _ORDER_BODY_SIMPLE_KEYS:
        return None
    attrs: dict[str, Any] = {}
    try:
        for name, field in _ORDER_BODY_FIELDS:
            if name in _ORDER_BODY_NESTED:
                continue  # absent: each is optional without a default
            try:
                attrs[name] = field.run_validation(field.get_value(data))
            except SkipField:
                continue
        return dict(_ORDER_BODY.validate(attrs))
    except Exception:  # the serializer answers (or raises) what it does for this body
        return None


class OrdersView(TradingAPIView):
    @extend_schema(
        operation_id="orders_list",
        parameters=[OrdersQuerySerializer],
        responses=with_errors({200: OrderSerializer(many=True)}, 403),
    )
    def get(self, request: Request) -> Response:
        query = _orders_query(request)
        listing = orders_listing(query)
        if not query["nested"]:
            # Legs listed on their own, none nested: each order is shaped from its plain row,
            # no model instance built, a poll read with the account's row (docs/architecture.md,
            # The polled reads).
            rows = request_account_read(request, selectors.orders_list_rows_read(**listing))
            return Response([OrderSerializer.shape_row(row) for row in rows])
        orders = selectors.orders_list(account_id=request_account(request).pk, **listing, nested=True)
        return Response([OrderSerializer.shape(order, legs=True) for order in orders])

    @extend_schema(
        operation_id="orders_create",
        request=OrderCreateSerializer,
        responses=with_errors({200: OrderSerializer}),
    )
    def post(self, request: Request) -> Response:
        body = order_body_simple(request.data)
        if body is None:
            body = parse_body(OrderCreateSerializer, request)
        order = services.order_place(
            account_id=request_account_pk(request),
            request=services.OrderRequest(
                symbol=body["symbol"],
                qty=body.get("qty"),
                notional_cents=body.get("notional"),
                side=body["side"],
                type=body["type"],
                time_in_force=body["time_in_force"],
                limit_price_units=body.get("limit_price"),
                stop_price_units=body.get("stop_price"),
                trail_price_units=body.get("trail_price"),
                trail_percent_units=body.get("trail_percent"),
                client_order_id=body.get("client_order_id") or None,
                extended_hours=body["extended_hours"],
                position_intent=body.get("position_intent") or None,
                order_class=body["order_class"],
                take_profit_limit_units=(body.get("take_profit") or {}).get("limit_price"),
                stop_loss_stop_units=(body.get("stop_loss") or {}).get("stop_price"),
                stop_loss_limit_units=(body.get("stop_loss") or {}).get("limit_price"),
            ),
        )
        # The order as accepted, as Alpaca answers (a fill arrives on trade_updates; README, Order
        # lifecycle), laid over the order as placed: the service keeps the row it wrote, with its
        # asset, legs and timestamps, so nothing is read back.
        return Response(
            OrderSerializer.shape(order, order.accepted_state, leg_states=order.accepted_leg_states)
        )

    @extend_schema(
        operation_id="orders_cancel_all",
        responses={
            207: OpenApiResponse(CancelOrderResultSerializer(many=True), "one entry per order canceled")
        },
    )
    def delete(self, request: Request) -> Response:
        account = request_account(request)
        canceled = services.order_cancel_all(account_id=account.pk)
        orders = selectors.orders_by_ids(account_id=account.pk, order_ids=[order.pk for order in canceled])
        return Response(
            [CancelOrderResultSerializer.shape(order) for order in orders],
            status=status.HTTP_207_MULTI_STATUS,
        )


class OrderDetailView(TradingAPIView):
    @extend_schema(
        operation_id="orders_retrieve",
        parameters=[ORDER_ID],
        responses=with_errors({200: OrderSerializer}, 403),
    )
    def get(self, request: Request, order_id: str) -> Response:
        order = selectors.order_get(
            account_id=request_account(request).pk, order_id=parse_uuid(order_id, what="order")
        )
        return Response(OrderSerializer.shape(order))

    @extend_schema(
        operation_id="orders_replace",
        parameters=[ORDER_ID],
        request=OrderReplaceSerializer,
        responses=with_errors({200: OrderSerializer}),
    )
    def patch(self, request: Request, order_id: str) -> Response:
        account = request_account(request)
        old_id = parse_uuid(order_id, what="order")
        body = parse_body(OrderReplaceSerializer, request)
        new = services.order_replace(
            account_id=account.pk,
            order_id=old_id,
            qty=body.get("qty"),
            time_in_force=body.get("time_in_force"),
            limit_price_units=body.get("limit_price"),
            stop_price_units=body.get("stop_price"),
            trail_units=body.get("trail"),
            client_order_id=body.get("client_order_id"),
        )
        # As for a new order: the replacement as accepted.
        accepted = new.accepted_state
        new = selectors.order_get(account_id=account.pk, order_id=new.pk)
        return Response(OrderSerializer.shape(new, accepted))

    @extend_schema(
        operation_id="orders_cancel",
        parameters=[ORDER_ID],
        responses=with_errors({204: OpenApiResponse(description="canceled")}, 422),
    )
    def delete(self, request: Request, order_id: str) -> Response:
        services.order_cancel(
            account_id=request_account(request).pk, order_id=parse_uuid(order_id, what="order")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrderByClientIdView(TradingAPIView):
    @extend_schema(
        operation_id="orders_by_client_order_id",
        parameters=[ClientOrderIdQuerySerializer],
        responses=with_errors({200: OrderSerializer}, 403, 404),
    )
    def get(self, request: Request) -> Response:
        query = parse_query(ClientOrderIdQuerySerializer, request)
        order = selectors.order_get_by_client_id(
            account_id=request_account(request).pk, client_order_id=query["client_order_id"]
        )
        return Response(OrderSerializer.shape(order))
