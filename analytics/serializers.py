"""Query parsing and documented response shapes for the analytics endpoints (OpenAPI)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from analytics.models import LeaderboardPeriod
from trading.api.serializers import IntegerField


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
    account_number = serializers.CharField()
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
    net_shares_held = serializers.IntegerField()
    fills_today = serializers.IntegerField()
