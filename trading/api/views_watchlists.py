"""``/v2/watchlists``, by id and by name (``/v2/watchlists:by_name?name=``)."""

from __future__ import annotations

import uuid

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from trading import selectors, services
from trading.api.serializers import (
    WatchlistAddAssetSerializer,
    WatchlistCreateSerializer,
    WatchlistNameQuerySerializer,
    WatchlistSerializer,
    WatchlistUpdateSerializer,
)
from trading.api.views_base import (
    TradingAPIView,
    parse_body,
    parse_query,
    parse_uuid,
    request_account,
    with_errors,
)
from trading.models import Account

WATCHLIST_ID = OpenApiParameter("watchlist_id", str, OpenApiParameter.PATH, description="watchlist UUID")


def _answer(account: Account, watchlist_id: uuid.UUID) -> Response:
    return Response(
        WatchlistSerializer.shape(selectors.watchlist_get(account_id=account.pk, watchlist_id=watchlist_id))
    )


class WatchlistsView(TradingAPIView):
    @extend_schema(
        operation_id="watchlists_list", responses=with_errors({200: WatchlistSerializer(many=True)}, 403)
    )
    def get(self, request: Request) -> Response:
        watchlists = selectors.watchlists_list(account_id=request_account(request).pk)
        return Response([WatchlistSerializer.shape(watchlist) for watchlist in watchlists])

    @extend_schema(
        operation_id="watchlists_create",
        request=WatchlistCreateSerializer,
        responses=with_errors({200: WatchlistSerializer}),
    )
    def post(self, request: Request) -> Response:
        body = parse_body(WatchlistCreateSerializer, request)
        account = request_account(request)
        watchlist = services.watchlist_create(
            account_id=account.pk, name=body["name"], symbols=body["symbols"]
        )
        return _answer(account, watchlist.pk)


class WatchlistDetailView(TradingAPIView):
    """One watchlist by id; subclassed for the by-name form, which finds the id first."""

    def watchlist_id(self, request: Request, account: Account, watchlist_id: str | None) -> uuid.UUID:
        assert watchlist_id is not None
        return parse_uuid(watchlist_id, what="watchlist")

    @extend_schema(
        operation_id="watchlists_retrieve",
        parameters=[WATCHLIST_ID],
        responses=with_errors({200: WatchlistSerializer}, 403),
    )
    def get(self, request: Request, watchlist_id: str | None = None) -> Response:
        account = request_account(request)
        return _answer(account, self.watchlist_id(request, account, watchlist_id))

    @extend_schema(
        operation_id="watchlists_update",
        parameters=[WATCHLIST_ID],
        request=WatchlistUpdateSerializer,
        responses=with_errors({200: WatchlistSerializer}),
    )
    def put(self, request: Request, watchlist_id: str | None = None) -> Response:
        account = request_account(request)
        target = self.watchlist_id(request, account, watchlist_id)
        body = parse_body(WatchlistUpdateSerializer, request)
        services.watchlist_update(
            account_id=account.pk, watchlist_id=target, name=body.get("name"), symbols=body.get("symbols")
        )
        return _answer(account, target)

    @extend_schema(
        operation_id="watchlists_add_asset",
        parameters=[WATCHLIST_ID],
        request=WatchlistAddAssetSerializer,
        responses=with_errors({200: WatchlistSerializer}),
    )
    def post(self, request: Request, watchlist_id: str | None = None) -> Response:
        account = request_account(request)
        target = self.watchlist_id(request, account, watchlist_id)
        body = parse_body(WatchlistAddAssetSerializer, request)
        services.watchlist_add_asset(account_id=account.pk, watchlist_id=target, symbol=body["symbol"])
        return _answer(account, target)

    @extend_schema(
        operation_id="watchlists_delete",
        parameters=[WATCHLIST_ID],
        responses=with_errors({204: OpenApiResponse(description="deleted")}),
    )
    def delete(self, request: Request, watchlist_id: str | None = None) -> Response:
        account = request_account(request)
        target = self.watchlist_id(request, account, watchlist_id)
        services.watchlist_delete(account_id=account.pk, watchlist_id=target)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WatchlistByNameView(WatchlistDetailView):
    def watchlist_id(self, request: Request, account: Account, watchlist_id: str | None) -> uuid.UUID:
        name = parse_query(WatchlistNameQuerySerializer, request)["name"]
        return selectors.watchlist_get_by_name(account_id=account.pk, name=name).pk

    @extend_schema(
        operation_id="watchlists_by_name_retrieve",
        parameters=[WatchlistNameQuerySerializer],
        responses=with_errors({200: WatchlistSerializer}, 403, 404),
    )
    def get(self, request: Request, watchlist_id: str | None = None) -> Response:
        return super().get(request)

    @extend_schema(
        operation_id="watchlists_by_name_update",
        parameters=[WatchlistNameQuerySerializer],
        request=WatchlistUpdateSerializer,
        responses=with_errors({200: WatchlistSerializer}, 404),
    )
    def put(self, request: Request, watchlist_id: str | None = None) -> Response:
        return super().put(request)

    @extend_schema(
        operation_id="watchlists_by_name_add_asset",
        parameters=[WatchlistNameQuerySerializer],
        request=WatchlistAddAssetSerializer,
        responses=with_errors({200: WatchlistSerializer}, 404),
    )
    def post(self, request: Request, watchlist_id: str | None = None) -> Response:
        return super().post(request)

    @extend_schema(
        operation_id="watchlists_by_name_delete",
        parameters=[WatchlistNameQuerySerializer],
        responses=with_errors({204: OpenApiResponse(description="deleted")}, 404),
    )
    def delete(self, request: Request, watchlist_id: str | None = None) -> Response:
        return super().delete(request)


class WatchlistAssetView(TradingAPIView):
    @extend_schema(
        operation_id="watchlists_remove_asset",
        parameters=[WATCHLIST_ID, OpenApiParameter("symbol", str, OpenApiParameter.PATH)],
        responses=with_errors({200: WatchlistSerializer}),
    )
    def delete(self, request: Request, watchlist_id: str, symbol: str) -> Response:
        account = request_account(request)
        target = parse_uuid(watchlist_id, what="watchlist")
        services.watchlist_remove_asset(account_id=account.pk, watchlist_id=target, symbol=symbol)
        return _answer(account, target)
