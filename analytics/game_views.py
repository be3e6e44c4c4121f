"""A game's leaderboard and its standings export under ``/v2/games/{game_id}/`` (README, Running a
game): precomputed boards (analytics/selectors.py), the game found as ``/v2/games/{game_id}``
finds it (an invite-only game is not there for outsiders)."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from analytics import selectors
from analytics.serializers import GameLeaderboardQuerySerializer, GameLeaderboardSerializer
from trading import selectors as trading_selectors
from trading.api.csv_export import csv_response
from trading.api.views_base import TradingAPIView, parse_query, request_user, with_errors

GAME_ID = OpenApiParameter("game_id", str, OpenApiParameter.PATH, description="game UUID")


class GameLeaderboardView(TradingAPIView):
    @extend_schema(
        operation_id="games_leaderboard",
        parameters=[GAME_ID, GameLeaderboardQuerySerializer],
        responses=with_errors({200: GameLeaderboardSerializer}),
        description="Live while the game runs (never older than the staleness bound), then its "
        "final standings, frozen at the end. One page of `limit` entries from rank `offset + 1`; "
        "`me` is the caller's own entry wherever it ranks.",
    )
    def get(self, request: Request, game_id: str) -> Response:
        query = parse_query(GameLeaderboardQuerySerializer, request)
        user = request_user(request)
        game = trading_selectors.game_get(game_id=game_id, user_id=user.pk)
        return Response(
            selectors.game_leaderboard_get_or_refresh(
                game=game, limit=query.get("limit"), offset=query.get("offset", 0), username=user.username
            )
        )


class GameStandingsCsvView(TradingAPIView):
    @extend_schema(
        operation_id="games_standings_csv",
        parameters=[GAME_ID],
        responses={
            (200, "text/csv"): OpenApiResponse(str, description="every player, best first"),
            **with_errors({}, 403),
        },
        description="For the organiser: the board (final once the game is over) as CSV, usernames only.",
    )
    def get(self, request: Request, game_id: str) -> StreamingHttpResponse:
        game = trading_selectors.game_get_for_organiser(game_id=game_id, user_id=request_user(request).pk)
        rows = selectors.game_standings_csv_rows_get_or_refresh(game=game)
        return csv_response(rows, filename=f"standings-{game.pk}.csv")
