"""The shapes of ``/v2/games``: a game's rules as an organiser sends them, a game and a player as
the API answers them. Money is dollars as strings, as everywhere in Alpaca's API; a position share
is a percent of equity with at most two decimals."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers

from trading.api.serializers import NotionalField, ShapeSerializer, cents_to_str, rfc3339
from trading.models import (
    GAME_ANNOUNCEMENT_MAX_LENGTH,
    Game,
    GameAnnouncement,
    GamePlayer,
    OrderClass,
    OrderType,
)
from trading.selectors import GAME_ANNOUNCEMENTS_LIMIT_DEFAULT, GAME_ANNOUNCEMENTS_LIMIT_MAX


class GameRulesSerializer(serializers.Serializer[Any]):
    """Every field of a new game; on PATCH, only those to change."""

    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    starting_cash = NotionalField(help_text="Dollars each player starts with.")
    commission_plan_id = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**31 - 1
    )
    allowed_order_types = serializers.ListField(
        child=serializers.ChoiceField(choices=OrderType.values), required=False, allow_empty=False
    )
    allowed_order_classes = serializers.ListField(
        child=serializers.ChoiceField(choices=OrderClass.values), required=False, allow_empty=False
    )
    shorting_allowed = serializers.BooleanField(required=False)
    max_position_percent = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal("0.01"),
        max_value=Decimal(100),
        required=False,
        allow_null=True,
        help_text="Largest position value after a fill, as a percent of equity; null: no limit.",
    )
    late_joining_allowed = serializers.BooleanField(required=False)
    self_reset_allowed = serializers.BooleanField(required=False)
    visibility = serializers.ChoiceField(choices=Game.Visibility.values, required=False)
    player_cap = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000)


class GameJoinSerializer(serializers.Serializer[Any]):
    invite_code = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)


def _percent(bp: int | None) -> str | None:
    return None if bp is None else f"{Decimal(bp) / 100:.2f}"


def _player_count(game: Game) -> int:
    # Selectors annotate it; a game just made or changed is counted here.
    count = getattr(game, "player_count", None)
    return game.players.count() if count is None else int(count)


class GameSerializer(ShapeSerializer):
    id = serializers.UUIDField()
    name = serializers.CharField()
    description = serializers.CharField()
    organiser = serializers.CharField(help_text="The organiser's username.")
    starts_at = serializers.CharField()
    ends_at = serializers.CharField()
    ended_at = serializers.CharField(
        allow_null=True, help_text="Set when the organiser ended the game early."
    )
    starting_cash = serializers.CharField()
    commission_plan_id = serializers.IntegerField(allow_null=True)
    allowed_order_types = serializers.ListField(child=serializers.CharField())
    allowed_order_classes = serializers.ListField(child=serializers.CharField())
    shorting_allowed = serializers.BooleanField()
    max_position_percent = serializers.CharField(allow_null=True)
    late_joining_allowed = serializers.BooleanField()
    self_reset_allowed = serializers.BooleanField()
    visibility = serializers.CharField()
    player_cap = serializers.IntegerField(allow_null=True)
    player_count = serializers.IntegerField()
    invite_code = serializers.CharField(allow_null=True, help_text="Shown to the organiser only.")

    @classmethod
    def shape(cls, game: Game, *, viewer_id: int | None = None) -> dict[str, Any]:
        return {
            "id": str(game.id),
            "name": game.name,
            "description": game.description,
            "organiser": game.organiser.username,
            "starts_at": rfc3339(game.starts_at),
            "ends_at": rfc3339(game.ends_at),
            "ended_at": rfc3339(game.ended_at),
            "starting_cash": cents_to_str(game.starting_cash_cents),
            "commission_plan_id": game.commission_plan_id,
            "allowed_order_types": list(game.allowed_order_types),
            "allowed_order_classes": list(game.allowed_order_classes),
            "shorting_allowed": game.shorting_allowed,
            "max_position_percent": _percent(game.max_position_share_bp),
            "late_joining_allowed": game.late_joining_allowed,
            "self_reset_allowed": game.self_reset_allowed,
            "visibility": game.visibility,
            "player_cap": game.player_cap,
            "player_count": _player_count(game),
            "invite_code": game.invite_code if viewer_id == game.organiser_id else None,
        }


class GamePlayerSerializer(ShapeSerializer):
    game_id = serializers.UUIDField()
    username = serializers.CharField()
    account_id = serializers.UUIDField(
        help_text="The player's game account: make it a key on the API keys page."
    )
    joined_at = serializers.CharField()
    removed_at = serializers.CharField(allow_null=True)

    @classmethod
    def shape(cls, player: GamePlayer) -> dict[str, Any]:
        return {
            "game_id": str(player.game_id),
            "username": player.user.username,
            "account_id": str(player.account_id),
            "joined_at": rfc3339(player.joined_at),
            "removed_at": rfc3339(player.removed_at),
        }


class GameAnnouncementPostSerializer(serializers.Serializer[Any]):
    text = serializers.CharField(max_length=GAME_ANNOUNCEMENT_MAX_LENGTH)


class GameAnnouncementsQuerySerializer(serializers.Serializer[Any]):
    limit = serializers.IntegerField(
        min_value=1,
        max_value=GAME_ANNOUNCEMENTS_LIMIT_MAX,
        default=GAME_ANNOUNCEMENTS_LIMIT_DEFAULT,
        help_text=f"Newest first; default {GAME_ANNOUNCEMENTS_LIMIT_DEFAULT}.",
    )


class GameAnnouncementSerializer(ShapeSerializer):
    id = serializers.IntegerField()
    game_id = serializers.UUIDField()
    author = serializers.CharField(help_text="The organiser's username.")
    text = serializers.CharField()
    created_at = serializers.CharField()

    @classmethod
    def shape(cls, announcement: GameAnnouncement) -> dict[str, Any]:
        return {
            "id": announcement.pk,
            "game_id": str(announcement.game_id),
            "author": announcement.author.username,
            "text": announcement.text,
            "created_at": rfc3339(announcement.created_at),
        }
