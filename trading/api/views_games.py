"""``/v2/games``: browse public games, organise one, join it (README, Running a game).

A game is the user's business, not an account's: these act on the caller's user (its key's owner
or its session's), and joining opens the user a game account of its own."""

from __future__ import annotations

import dataclasses
from typing import Any

from django.contrib.auth.models import User
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from trading import selectors, services
from trading.api.csv_export import csv_response
from trading.api.serializers_games import (
    GameAnnouncementPostSerializer,
    GameAnnouncementSerializer,
    GameAnnouncementsQuerySerializer,
    GameJoinSerializer,
    GamePlayerSerializer,
    GameRulesSerializer,
    GameSerializer,
)
from trading.api.views_base import TradingAPIView, parse_body, parse_query, parse_uuid, with_errors
from trading.models import Game

GAME_ID = OpenApiParameter("game_id", str, OpenApiParameter.PATH, description="game UUID")
USERNAME = OpenApiParameter("username", str, OpenApiParameter.PATH, description="the player's username")


def _user(request: Request) -> User:
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("authentication required")
    return user


def _rules(body: dict[str, Any], base: services.GameRules | None = None) -> services.GameRules:
    """The body's fields over ``base`` (a PATCH), in the service's units."""
    fields = dict(body)
    if "starting_cash" in fields:
        fields["starting_cash_cents"] = fields.pop("starting_cash")
    if "max_position_percent" in fields:
        percent = fields.pop("max_position_percent")
        fields["max_position_share_bp"] = None if percent is None else int(percent * 100)
    for name in ("allowed_order_types", "allowed_order_classes"):
        if name in fields:
            fields[name] = tuple(fields[name])
    if base is None:
        return services.GameRules(**fields)
    return dataclasses.replace(base, **fields)


def _answer(game: Game, request: Request) -> Response:
    return Response(GameSerializer.shape(game, viewer_id=_user(request).pk))


class GamesView(TradingAPIView):
    @extend_schema(operation_id="games_list", responses={200: GameSerializer(many=True)})
    def get(self, request: Request) -> Response:
        viewer = _user(request).pk
        return Response(
            [GameSerializer.shape(game, viewer_id=viewer) for game in selectors.game_list_public()]
        )

    @extend_schema(
        operation_id="games_create",
        request=GameRulesSerializer,
        responses=with_errors({200: GameSerializer}, 403),
    )
    def post(self, request: Request) -> Response:
        body = parse_body(GameRulesSerializer, request)
        return _answer(services.game_create(organiser=_user(request), rules=_rules(body)), request)


class GameDetailView(TradingAPIView):
    @extend_schema(operation_id="games_retrieve", parameters=[GAME_ID], responses={200: GameSerializer})
    def get(self, request: Request, game_id: str) -> Response:
        game = selectors.game_get(game_id=parse_uuid(game_id, what="game"), user_id=_user(request).pk)
        return _answer(game, request)

    @extend_schema(
        operation_id="games_update",
        parameters=[GAME_ID],
        request=GameRulesSerializer(partial=True),
        responses=with_errors({200: GameSerializer}, 403),
    )
    def patch(self, request: Request, game_id: str) -> Response:
        user = _user(request)
        game = selectors.game_get(game_id=parse_uuid(game_id, what="game"), user_id=user.pk)
        serializer = GameRulesSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        rules = _rules(dict(serializer.validated_data), services.GameRules.of(game))
        return _answer(services.game_update(game_id=game.pk, organiser_id=user.pk, rules=rules), request)


class GameJoinView(TradingAPIView):
    @extend_schema(
        operation_id="games_join",
        parameters=[GAME_ID],
        request=GameJoinSerializer,
        responses=with_errors({200: GamePlayerSerializer}, 403),
    )
    def post(self, request: Request, game_id: str) -> Response:
        body = parse_body(GameJoinSerializer, request)
        player = services.game_join(
            game_id=parse_uuid(game_id, what="game"), user=_user(request), invite_code=body["invite_code"]
        )
        return Response(GamePlayerSerializer.shape(player))


class GameEndView(TradingAPIView):
    @extend_schema(
        operation_id="games_end",
        parameters=[GAME_ID],
        request=None,
        responses=with_errors({200: GameSerializer}, 403),
    )
    def post(self, request: Request, game_id: str) -> Response:
        game = services.game_end(game_id=parse_uuid(game_id, what="game"), organiser_id=_user(request).pk)
        return _answer(game, request)


class GamePlayerView(TradingAPIView):
    @extend_schema(
        operation_id="games_player_remove",
        parameters=[GAME_ID, USERNAME],
        responses=with_errors({200: GamePlayerSerializer}, 403),
    )
    def delete(self, request: Request, game_id: str, username: str) -> Response:
        player = services.game_player_remove(
            game_id=parse_uuid(game_id, what="game"), organiser_id=_user(request).pk, username=username
        )
        return Response(GamePlayerSerializer.shape(player))


class GameTradesCsvView(TradingAPIView):
    @extend_schema(
        operation_id="games_trades_csv",
        parameters=[GAME_ID],
        responses={
            (200, "text/csv"): OpenApiResponse(str, description="every player's fills, oldest first"),
            **with_errors({}, 403),
        },
        description="For the organiser: every fill of every player as CSV, usernames only.",
    )
    def get(self, request: Request, game_id: str) -> StreamingHttpResponse:
        game = selectors.game_get_for_organiser(game_id=game_id, user_id=_user(request).pk)
        return csv_response(selectors.game_trades_csv_rows(game=game), filename=f"trades-{game.pk}.csv")


class GameAnnouncementsView(TradingAPIView):
    @extend_schema(
        operation_id="games_announcements_list",
        parameters=[GAME_ID, GameAnnouncementsQuerySerializer],
        responses=with_errors({200: GameAnnouncementSerializer(many=True)}, 403),
        description="The organiser's announcements, newest first: for the organiser and the players.",
    )
    def get(self, request: Request, game_id: str) -> Response:
        limit = parse_query(GameAnnouncementsQuerySerializer, request)["limit"]
        announcements = selectors.game_announcements_list(
            game_id=game_id, user_id=_user(request).pk, limit=limit
        )
        return Response([GameAnnouncementSerializer.shape(item) for item in announcements])

    @extend_schema(
        operation_id="games_announcements_create",
        parameters=[GAME_ID],
        request=GameAnnouncementPostSerializer,
        responses=with_errors({200: GameAnnouncementSerializer}, 403),
    )
    def post(self, request: Request, game_id: str) -> Response:
        body = parse_body(GameAnnouncementPostSerializer, request)
        announcement = services.game_announcement_post(
            game_id=parse_uuid(game_id, what="game"), author_id=_user(request).pk, text=body["text"]
        )
        return Response(GameAnnouncementSerializer.shape(announcement))
