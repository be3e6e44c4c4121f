"""Precomputed read models: leaderboard snapshots, per-account analytics, per-symbol stats, and
the monthly statements (reports produced once by a job and kept).

Rows are written by ``analytics.services`` (run by jobs, or synchronously when a read finds them
too old) and served as stored, so the endpoints' query counts do not depend on how many accounts
or trades there are. Money is integer cents and prices 1/10,000 $, as in trading.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from trading.models import Account


class LeaderboardPeriod(models.TextChoices):
    OVERALL = "overall", "Since each account's last reset"
    DAILY = "daily", "Today's trading day"


class LeaderboardSnapshot(models.Model):
    period = models.CharField(max_length=8, choices=LeaderboardPeriod.choices)
    as_of = models.DateTimeField()
    trading_day = models.DateField()
    account_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-as_of", "-id"]
        indexes = [models.Index(fields=["period", "-as_of"], name="leaderboard_period_asof_idx")]

    def __str__(self) -> str:
        return f"{self.period} leaderboard @ {self.as_of:%Y-%m-%d %H:%M:%S}"


class LeaderboardEntry(models.Model):
    snapshot = models.ForeignKey(LeaderboardSnapshot, on_delete=models.CASCADE, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()
    # Denormalised so a page of the board is one query without joins.
    account_number = models.CharField(max_length=16)
    username = models.CharField(max_length=150)
    equity_cents = models.BigIntegerField()
    # What the return is measured against: capital since the last reset (overall) or the equity
    # when the trading day began, plus cash added since (daily).
    baseline_cents = models.BigIntegerField()
    return_pct = models.FloatField()

    class Meta:
        ordering = ["snapshot", "rank"]
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "rank"], name="leaderboard_entry_rank_unique"),
            models.UniqueConstraint(fields=["snapshot", "account"], name="leaderboard_entry_account_unique"),
        ]

    def __str__(self) -> str:
        return f"#{self.rank} {self.account_number}"


class AccountEquityDay(models.Model):
    """An account's equity at the end of a trading day (the latest value for today), the series
    volatility, drawdown and Sharpe are computed from."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    equity_cents = models.BigIntegerField()
    # Cash added that day (deposits, grants, resets), so it is not counted as a gain.
    flows_cents = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["account", "day"]
        constraints = [models.UniqueConstraint(fields=["account", "day"], name="equity_day_unique")]
        indexes = [models.Index(fields=["day"], name="equity_day_day_idx")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.day}: {self.equity_cents}"


class AccountAnalytics(models.Model):
    account = models.OneToOneField(Account, on_delete=models.CASCADE, primary_key=True, related_name="+")
    as_of = models.DateTimeField()
    equity_cents = models.BigIntegerField()
    return_1d = models.FloatField(null=True, blank=True)
    return_1w = models.FloatField(null=True, blank=True)
    return_1m = models.FloatField(null=True, blank=True)
    return_since_reset = models.FloatField(null=True, blank=True)
    # Annualised standard deviation of daily returns.
    volatility = models.FloatField(null=True, blank=True)
    max_drawdown = models.FloatField(null=True, blank=True)
    sharpe = models.FloatField(null=True, blank=True)
    # Sector -> share of long market value (0..1).
    sector_allocation = models.JSONField(default=dict)
    # Closing fills with a gain over closing fills with a gain or a loss, since the last reset.
    win_rate = models.FloatField(null=True, blank=True)
    closed_trades = models.PositiveIntegerField(default=0)
    rank = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "account analytics"

    def __str__(self) -> str:
        return f"analytics {self.account_id} @ {self.as_of:%Y-%m-%d %H:%M}"


class SymbolStats(models.Model):
    symbol = models.CharField(max_length=16, primary_key=True)
    as_of = models.DateTimeField()
    last_price_units = models.BigIntegerField(null=True, blank=True)
    previous_close_units = models.BigIntegerField(null=True, blank=True)
    change_today = models.FloatField(null=True, blank=True)
    day_high_units = models.BigIntegerField(null=True, blank=True)
    day_low_units = models.BigIntegerField(null=True, blank=True)
    day_volume = models.BigIntegerField(default=0)
    # Accounts holding it (long or short) and the shares they hold net.
    holders = models.PositiveIntegerField(default=0)
    net_shares_held = models.BigIntegerField(default=0)
    fills_today = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name_plural = "symbol stats"

    def __str__(self) -> str:
        return f"{self.symbol} @ {self.as_of:%Y-%m-%d %H:%M}"


FRONTEND_PAGE_MAX_LENGTH = 32
USER_AGENT_MAX_LENGTH = 300


class FrontendSample(models.Model):
    """One performance report of a dashboard page (``POST /v2/metrics/frontend``): what the
    browser measured over ``interval_s`` seconds. Kept as long as other monitoring samples."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    page = models.CharField(max_length=FRONTEND_PAGE_MAX_LENGTH)
    received_at = models.DateTimeField(db_index=True)
    interval_s = models.FloatField()
    renders = models.BigIntegerField()
    updates = models.BigIntegerField()
    render_ms_p50 = models.FloatField()
    render_ms_p95 = models.FloatField()
    render_ms_max = models.FloatField()
    long_tasks = models.BigIntegerField()
    long_task_ms = models.FloatField()
    frames = models.BigIntegerField()
    dropped_frames = models.BigIntegerField()
    # Only Chromium exposes the JS heap size; other browsers report null.
    js_heap_bytes = models.BigIntegerField(null=True, blank=True)
    dom_nodes = models.BigIntegerField()
    user_agent = models.CharField(max_length=USER_AGENT_MAX_LENGTH, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.page} @ {self.received_at:%Y-%m-%d %H:%M:%S}"


def statement_upload_to(instance: Statement, filename: str) -> str:
    return f"statements/{instance.account_id}/{filename}"


class Statement(models.Model):
    """A monthly account statement; the figures are stored beside the PDF for listings.

    One per account and period: the statement job (jobs) produces it once and it is kept. The
    table keeps the name it was created under, when statements belonged to the jobs app.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="statements")
    period = models.CharField(max_length=7, help_text="YYYY-MM")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    opening_cash_cents = models.BigIntegerField()
    closing_cash_cents = models.BigIntegerField()
    opening_equity_cents = models.BigIntegerField()
    closing_equity_cents = models.BigIntegerField()
    commissions_cents = models.BigIntegerField()
    realized_pl_cents = models.BigIntegerField()
    trade_count = models.PositiveIntegerField()
    pdf = models.FileField(upload_to=statement_upload_to, max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "jobs_statement"
        ordering = ["-period"]
        constraints = [
            models.UniqueConstraint(fields=["account", "period"], name="statement_account_period_unique")
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.period}"
