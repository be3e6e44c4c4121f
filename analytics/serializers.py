"""Query parsing and documented response shapes for the analytics and statement endpoints (OpenAPI)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from rest_framework import serializers
from rest_framework.request import Request

from analytics.models import LeaderboardPeriod, Statement
from trading.api.serializers import IntegerField, rfc3339
from trading.units import cents_to_str


class LeaderboardQuerySerializer(serializers.Serializer[Any]):
    period = serializers.ChoiceField(choices=LeaderboardPeriod.values, default=LeaderboardPeriod.OVERALL)
    limit = IntegerField(
        min_value=1,
        max_value=settings.LEADERBOARD_LIMIT_MAX,
        required=False,
        help_text=f"Default {settings.LEADERBOARD_LIMIT_DEFAULT}.",
    )

    def validate_limit(self, value: int) -> int:
        if value > settings.LEADERBOARD_LIMIT_MAX:
            raise serializers.ValidationError(f"must be at most {settings.LEADERBOARD_LIMIT_MAX}")
        return value


class LeaderboardCsvQuerySerializer(serializers.Serializer[Any]):
    period = serializers.ChoiceField(choices=LeaderboardPeriod.values, default=LeaderboardPeriod.OVERALL)


class LeaderboardEntrySerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    username = serializers.CharField()
    equity = serializers.CharField(help_text="dollars")
    baseline = serializers.CharField(help_text="what the return is measured against, dollars")
    return_pct = serializers.FloatField(help_text="percent")


class LeaderboardSerializer(serializers.Serializer[Any]):
    period = serializers.ChoiceField(choices=LeaderboardPeriod.values)
    as_of = serializers.DateTimeField(
        help_text="when the board was computed; never older than the staleness bound"
    )
    trading_day = serializers.DateField()
    account_count = serializers.IntegerField()
    entries = LeaderboardEntrySerializer(many=True)


class AccountAnalyticsSerializer(serializers.Serializer[Any]):
    account_number = serializers.CharField()
    as_of = serializers.DateTimeField()
    equity = serializers.CharField()
    returns = serializers.DictField(
        child=serializers.FloatField(allow_null=True), help_text="1D, 1W, 1M, since_reset as fractions"
    )
    volatility = serializers.FloatField(allow_null=True, help_text="annualised")
    max_drawdown = serializers.FloatField(allow_null=True)
    sharpe = serializers.FloatField(allow_null=True)
    sector_allocation = serializers.DictField(child=serializers.FloatField())
    win_rate = serializers.FloatField(allow_null=True)
    closed_trades = serializers.IntegerField()
    rank = serializers.IntegerField(allow_null=True)


class SymbolStatsSerializer(serializers.Serializer[Any]):
    symbol = serializers.CharField()
    as_of = serializers.DateTimeField()
    last_price = serializers.CharField(allow_null=True)
    previous_close = serializers.CharField(allow_null=True)
    change_today = serializers.FloatField(allow_null=True)
    day_high = serializers.CharField(allow_null=True)
    day_low = serializers.CharField(allow_null=True)
    day_volume = serializers.IntegerField()
    holders = serializers.IntegerField()
    net_shares_held = serializers.CharField(help_text="Shares held net, up to 9 decimals, as a string.")
    fills_today = serializers.IntegerField()


class StatementSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    period = serializers.CharField()
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    opening_cash = serializers.CharField()
    closing_cash = serializers.CharField()
    opening_equity = serializers.CharField()
    closing_equity = serializers.CharField()
    commissions = serializers.CharField()
    realized_pl = serializers.CharField()
    trade_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    pdf_url = serializers.CharField()

    @staticmethod
    def shape(statement: Statement, request: Request) -> dict[str, Any]:
        return {
            "id": str(statement.pk),
            "period": statement.period,
            "period_start": rfc3339(statement.period_start),
            "period_end": rfc3339(statement.period_end),
            "opening_cash": cents_to_str(statement.opening_cash_cents),
            "closing_cash": cents_to_str(statement.closing_cash_cents),
            "opening_equity": cents_to_str(statement.opening_equity_cents),
            "closing_equity": cents_to_str(statement.closing_equity_cents),
            "commissions": cents_to_str(statement.commissions_cents),
            "realized_pl": cents_to_str(statement.realized_pl_cents),
            "trade_count": statement.trade_count,
            "created_at": rfc3339(statement.created_at),
            "pdf_url": request.build_absolute_uri(reverse("statement-pdf", args=[statement.pk])),
        }


class GameLeaderboardQuerySerializer(serializers.Serializer[Any]):
    limit = IntegerField(
        min_value=1,
        max_value=settings.LEADERBOARD_LIMIT_MAX,
        required=False,
        help_text=f"Entries in the page. Default: {settings.LEADERBOARD_LIMIT_MAX}, the most a page holds.",
    )
    offset = IntegerField(
        min_value=0,
        required=False,
        help_text="Ranks skipped before the page: offset=500 starts at rank 501 (default 0).",
    )


class GameLeaderboardEntrySerializer(serializers.Serializer[Any]):
    rank = serializers.IntegerField()
    username = serializers.CharField()
    equity = serializers.CharField(help_text="dollars")
    return_pct = serializers.FloatField(help_text="percent since the start, against the starting cash")
    sharpe = serializers.FloatField(
        allow_null=True, help_text="annualised, from daily equity since the start; null under three days"
    )
    max_drawdown = serializers.FloatField(allow_null=True, help_text="deepest fall from a peak, a fraction")


class GameLeaderboardSerializer(serializers.Serializer[Any]):
    game_id = serializers.UUIDField()
    status = serializers.CharField(
        help_text="live while the game runs; closing: over, the last live board until the final standings "
        "are frozen (GAME_FREEZE_GRACE_S after the end); final: the standings at the game's end, frozen for good"
    )
    as_of = serializers.DateTimeField(
        help_text="live: when it was computed, never older than the staleness bound; final: the game's end"
    )
    starting_cash = serializers.CharField(help_text="dollars; every return is measured against it")
    player_count = serializers.IntegerField()
    offset = serializers.IntegerField(help_text="ranks before the page's first entry")
    entries = GameLeaderboardEntrySerializer(many=True)
    me = GameLeaderboardEntrySerializer(
        allow_null=True, help_text="the caller's own entry wherever it ranks; null if not a player"
    )
