"""Monitoring samples, the precomputed analytics tables and the statements for operators:
read-only lists (rows are written only by the endpoints and the jobs)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from analytics.models import (
    AccountAnalytics,
    AccountEquityDay,
    Alert,
    AlertRule,
    FrontendSample,
    LeaderboardEntry,
    LeaderboardSnapshot,
    Statement,
    SymbolStats,
)
from trading.admin import ImmutableAdmin, dollars, price, shares


@admin.register(FrontendSample)
class FrontendSampleAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "page",
        "user",
        "interval_s",
        "renders",
        "updates",
        "render_ms_p95",
        "render_ms_max",
        "long_tasks",
        "dropped_frames",
        "js_heap_bytes",
        "dom_nodes",
    ]
    list_filter = ["page"]
    search_fields = ["user__username"]
    list_select_related = ["user"]
    date_hierarchy = "received_at"
    readonly_fields = [field.name for field in FrontendSample._meta.fields]
    # Samples pile up; an exact count of the whole table on every page is not worth its scan.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Monitoring: alert rules (edited here, read by run_monitor within MONITOR_RULES_RELOAD_SECONDS)
# and the alerts it raised (its history: written by the monitor only) ----------------------------
@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "enabled",
        "severity",
        "metric",
        "kind",
        "comparison",
        "threshold",
        "clear_threshold",
        "for_seconds",
    ]
    list_editable = ["enabled"]
    list_filter = ["enabled", "severity", "kind"]
    search_fields = ["name", "metric"]
    fieldsets = [
        (None, {"fields": ["name", "description", "enabled", "severity"]}),
        (
            "What is measured",
            {
                "fields": [
                    "metric",
                    "labels",
                    "kind",
                    "aggregation",
                    "group_by",
                    "denominator_metric",
                    "quantile",
                    "window_seconds",
                ],
                "description": "Metric names and labels as /metrics shows them (README, Metrics). A counter is "
                "read as a rate or a ratio over the window, a histogram as a quantile over it.",
            },
        ),
        (
            "When it fires and clears",
            {"fields": ["comparison", "threshold", "clear_threshold", "for_seconds"]},
        ),
    ]


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["opened_at", "rule_name", "severity", "state", "summary", "peak_value", "resolved_at"]
    list_filter = ["severity", ("resolved_at", admin.EmptyFieldListFilter), "rule_name"]
    search_fields = ["rule_name", "summary"]
    date_hierarchy = "opened_at"
    readonly_fields = [field.name for field in Alert._meta.fields]

    @admin.display(description="State")
    def state(self, alert: Alert) -> str:
        return "open" if alert.resolved_at is None else "resolved"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Precomputed analytics: leaderboards, account analytics, symbol stats, equity days ----------
# Every table below is written by the analytics jobs and rewritten on their next run, so the pages
# are read-only: an edit would be overwritten within a minute and disagree with the cached answers
# meanwhile. Each change list loads in a fixed number of queries whatever its size: related rows
# come in the same query (list_select_related), and filters list only small sets.

ACCOUNT_SEARCH = ["=account__account_number", "account__user__username"]
ACCOUNT_SEARCH_HELP = "Exact account number, or part of the username"


def percent(fraction: float | None, digits: int = 2) -> str:
    """A ratio (0.0123) as "1.23%"."""
    return "-" if fraction is None else f"{fraction * 100:.{digits}f}%"


def decimal(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class AnalyticsAdmin(ImmutableAdmin):
    list_per_page = 100
    # What a detail page shows beside the row itself, loaded in the row's query.
    detail_select_related: tuple[str, ...] = ()

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        # Nothing to act on: without delete permission only "delete selected" would be offered.
        return {}

    def get_object(self, request: HttpRequest, object_id: str, from_field: str | None = None) -> Any:
        queryset = self.get_queryset(request).select_related(*self.detail_select_related)
        field = queryset.model._meta.pk if from_field is None else queryset.model._meta.get_field(from_field)
        try:
            return queryset.get(**{field.name: field.to_python(object_id)})
        except (queryset.model.DoesNotExist, ValidationError, ValueError):
            return None


@admin.register(LeaderboardSnapshot)
class LeaderboardSnapshotAdmin(AnalyticsAdmin):
    list_display = ["id", "period", "as_of", "trading_day", "account_count", "entries_link"]
    list_filter = ["period", "trading_day"]
    fields = readonly_fields = ("period", "as_of", "trading_day", "account_count", "entries_link")

    @admin.display(description="Entries")
    def entries_link(self, snapshot: LeaderboardSnapshot) -> str:
        # A link, not an inline: a board holds every account.
        url = reverse("admin:analytics_leaderboardentry_changelist")
        return format_html(
            '<a href="{}?snapshot__id__exact={}">{} ranked</a>', url, snapshot.pk, snapshot.account_count
        )


@admin.register(LeaderboardEntry)
class LeaderboardEntryAdmin(AnalyticsAdmin):
    list_display = [
        "rank",
        "account_number",
        "username",
        "equity",
        "baseline",
        "return_pct_display",
        "snapshot",
    ]
    list_display_links = ["rank", "account_number"]
    # Only the newest snapshots of each period are kept (analytics.services.SNAPSHOTS_KEPT), so
    # the snapshot filter lists a handful of rows.
    list_filter = ["snapshot__period", "snapshot"]
    list_select_related = ["snapshot"]
    detail_select_related = ("snapshot", "account__user")
    search_fields = ["=account_number", "username"]
    search_help_text = "Exact account number, or part of the username"
    ordering = ["snapshot__period", "-snapshot__as_of", "rank"]
    fields = readonly_fields = (
        "snapshot",
        "rank",
        "account",
        "account_number",
        "username",
        "equity",
        "baseline",
        "return_pct_display",
    )

    @admin.display(description="Equity", ordering="equity_cents")
    def equity(self, entry: LeaderboardEntry) -> str:
        return dollars(entry.equity_cents)

    @admin.display(description="Baseline", ordering="baseline_cents")
    def baseline(self, entry: LeaderboardEntry) -> str:
        return dollars(entry.baseline_cents)

    @admin.display(description="Return", ordering="return_pct")
    def return_pct_display(self, entry: LeaderboardEntry) -> str:
        return percent(entry.return_pct, 4)


class RankedFilter(admin.SimpleListFilter):
    title = "ranked"
    parameter_name = "ranked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("top10", "Top 10"), ("unranked", "Not ranked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "top10":
            return queryset.filter(rank__lte=10)
        if self.value() == "unranked":
            return queryset.filter(rank__isnull=True)
        return queryset


@admin.register(AccountAnalytics)
class AccountAnalyticsAdmin(AnalyticsAdmin):
    list_display = [
        "account",
        "rank",
        "equity",
        "return_1d_display",
        "return_1w_display",
        "return_1m_display",
        "return_since_reset_display",
        "volatility_display",
        "max_drawdown_display",
        "sharpe_display",
        "win_rate_display",
        "closed_trades",
        "as_of",
    ]
    list_filter = [RankedFilter, "as_of"]
    list_select_related = ["account__user"]
    detail_select_related = ("account__user",)
    search_fields = ACCOUNT_SEARCH
    search_help_text = ACCOUNT_SEARCH_HELP
    ordering = ["rank"]
    fields = readonly_fields = (
        "account",
        "as_of",
        "rank",
        "equity",
        "return_1d_display",
        "return_1w_display",
        "return_1m_display",
        "return_since_reset_display",
        "volatility_display",
        "max_drawdown_display",
        "sharpe_display",
        "sector_allocation_display",
        "win_rate_display",
        "closed_trades",
    )

    @admin.display(description="Equity", ordering="equity_cents")
    def equity(self, row: AccountAnalytics) -> str:
        return dollars(row.equity_cents)

    @admin.display(description="1D", ordering="return_1d")
    def return_1d_display(self, row: AccountAnalytics) -> str:
        return percent(row.return_1d)

    @admin.display(description="1W", ordering="return_1w")
    def return_1w_display(self, row: AccountAnalytics) -> str:
        return percent(row.return_1w)

    @admin.display(description="1M", ordering="return_1m")
    def return_1m_display(self, row: AccountAnalytics) -> str:
        return percent(row.return_1m)

    @admin.display(description="Since reset", ordering="return_since_reset")
    def return_since_reset_display(self, row: AccountAnalytics) -> str:
        return percent(row.return_since_reset)

    @admin.display(description="Volatility (ann.)", ordering="volatility")
    def volatility_display(self, row: AccountAnalytics) -> str:
        return percent(row.volatility)

    @admin.display(description="Max drawdown", ordering="max_drawdown")
    def max_drawdown_display(self, row: AccountAnalytics) -> str:
        return percent(row.max_drawdown)

    @admin.display(description="Sharpe", ordering="sharpe")
    def sharpe_display(self, row: AccountAnalytics) -> str:
        return decimal(row.sharpe)

    @admin.display(description="Win rate", ordering="win_rate")
    def win_rate_display(self, row: AccountAnalytics) -> str:
        return percent(row.win_rate, 1)

    @admin.display(description="Sector allocation")
    def sector_allocation_display(self, row: AccountAnalytics) -> str:
        shares = sorted(row.sector_allocation.items(), key=lambda item: -item[1])
        return ", ".join(f"{sector} {percent(share, 1)}" for sector, share in shares) or "-"


class HeldFilter(admin.SimpleListFilter):
    title = "held by accounts"
    parameter_name = "held"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Held"), ("no", "Not held")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(holders__gt=0)
        if self.value() == "no":
            return queryset.filter(holders=0)
        return queryset


@admin.register(SymbolStats)
class SymbolStatsAdmin(AnalyticsAdmin):
    list_display = fields = readonly_fields = (
        "symbol",
        "last_price",
        "previous_close",
        "change_today_display",
        "day_high",
        "day_low",
        "day_volume",
        "holders",
        "net_shares",
        "fills_today",
        "as_of",
    )
    list_filter = [HeldFilter]
    search_fields = ["symbol"]
    search_help_text = "Symbol, or its beginning"
    ordering = ["symbol"]

    @admin.display(description="Net shares held", ordering="net_shares_held")
    def net_shares(self, row: SymbolStats) -> str:
        return shares(row.net_shares_held)

    @admin.display(description="Last", ordering="last_price_units")
    def last_price(self, row: SymbolStats) -> str:
        return price(row.last_price_units)

    @admin.display(description="Previous close", ordering="previous_close_units")
    def previous_close(self, row: SymbolStats) -> str:
        return price(row.previous_close_units)

    @admin.display(description="Change today", ordering="change_today")
    def change_today_display(self, row: SymbolStats) -> str:
        return percent(row.change_today)

    @admin.display(description="Day high", ordering="day_high_units")
    def day_high(self, row: SymbolStats) -> str:
        return price(row.day_high_units)

    @admin.display(description="Day low", ordering="day_low_units")
    def day_low(self, row: SymbolStats) -> str:
        return price(row.day_low_units)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        # A prefix of the primary key walks its index; the default icontains scans the table.
        term = search_term.strip().upper()
        return (queryset.filter(symbol__startswith=term) if term else queryset), False


@admin.register(AccountEquityDay)
class AccountEquityDayAdmin(AnalyticsAdmin):
    list_display = ["day", "account", "equity", "flows"]
    # Date choices (today, past 7 days, this month, this year) cost no query to offer.
    list_filter = ["day"]
    list_select_related = ["account__user"]
    detail_select_related = ("account__user",)
    search_fields = ACCOUNT_SEARCH
    search_help_text = ACCOUNT_SEARCH_HELP
    ordering = ["-day"]
    fields = readonly_fields = ("account", "day", "equity", "flows")

    @admin.display(description="Equity at day end", ordering="equity_cents")
    def equity(self, row: AccountEquityDay) -> str:
        return dollars(row.equity_cents)

    @admin.display(description="Cash added that day", ordering="flows_cents")
    def flows(self, row: AccountEquityDay) -> str:
        return dollars(row.flows_cents)


@admin.register(Statement)
class StatementAdmin(admin.ModelAdmin):
    list_display = ["account", "period", "trade_count", "closing_equity_cents", "created_at"]
    search_fields = ["account__account_number", "=period"]
    list_select_related = ["account__user"]
    readonly_fields = [field.name for field in Statement._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
