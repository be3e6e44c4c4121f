"""Precomputed read models: leaderboard snapshots, per-account analytics, per-symbol stats, and
the monthly statements (reports produced once by a job and kept).

Rows are written by ``analytics.services`` (run by jobs, or synchronously when a read finds them
too old) and served as stored, so the endpoints' query counts do not depend on how many accounts
or trades there are. Money is integer cents and prices 1/10,000 $, as in trading.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from trading.models import Account, Game


class LeaderboardPeriod(models.TextChoices):
    OVERALL = "overall", "Since each account's last reset"
    DAILY = "daily", "Today's trading day"


class LeaderboardSnapshot(models.Model):
    period = models.CharField(max_length=8, choices=LeaderboardPeriod.choices)
    as_of = models.DateTimeField()
    trading_day = models.DateField()
    account_count = models.PositiveIntegerField(default=0)
    # A digest of the ranking (accounts, names, equities and baselines by rank): the job compares a
    # new ranking with it and, when equal, moves this board's as_of instead of storing its entries
    # again (analytics.services.leaderboard_refresh). Empty: not known, never equal.
    fingerprint = models.CharField(max_length=64, blank=True, default="")

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


class GameBoard(models.Model):
    """A game's leaderboard at one instant: live (refreshed with the global boards, the newest
    SNAPSHOTS_KEPT kept) or final, the standings at the game's end, stored once and never changed
    (docs/architecture.md, Game leaderboards).

    One row per board, the ranked players in ``standings``: a 10,000-player game's board is one
    insert per refresh, not 10,000 (and deleting an old one deletes one row). Players are named by
    username only, no account key, so deleting an account leaves the frozen standings as they
    were."""

    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="+")
    # For a final board, the game's end: the instant its prices and holdings are taken at.
    as_of = models.DateTimeField()
    final = models.BooleanField(default=False)
    player_count = models.PositiveIntegerField(default=0)
    # The game's starting cash when the board was made: every player's return is measured against it.
    baseline_cents = models.BigIntegerField(default=0)
    # Best first (rank = position + 1): one [username, equity_cents, return (a fraction), sharpe,
    # max_drawdown] per player; sharpe and max_drawdown come from the player's daily equity since
    # the game's start (analytics.services.risk_figures), null until there are enough days.
    standings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-as_of", "-id"]
        indexes = [models.Index(fields=["game", "-as_of"], name="game_board_game_asof_idx")]
        constraints = [
            # Frozen once: a second freeze (two readers, the job) fails instead of replacing it.
            models.UniqueConstraint(
                fields=["game"], condition=models.Q(final=True), name="game_board_one_final"
            )
        ]

    def __str__(self) -> str:
        return f"{'final' if self.final else 'live'} board of {self.game_id} @ {self.as_of:%Y-%m-%d %H:%M:%S}"


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
FRONTEND_RENDERER_MAX_LENGTH = 16
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
    # Which market table the page drew with (static/js/app.js: selective, or the naive baseline).
    renderer = models.CharField(max_length=FRONTEND_RENDERER_MAX_LENGTH, blank=True, default="")
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


# --- Monitoring: alert rules, alerts and the ops page's samples (analytics/monitor.py) -----------
class RuleKind(models.TextChoices):
    VALUE = "value", "Value (a gauge as it is now)"
    RATE = "rate", "Rate per second of a counter over the window"
    RATIO = "ratio", "Ratio of two counters' increases over the window"
    QUANTILE = "quantile", "Quantile of a histogram's observations over the window"


class RuleAggregation(models.TextChoices):
    SUM = "sum", "Sum"
    MAX = "max", "Maximum"
    MIN = "min", "Minimum"
    AVG = "avg", "Average"


class RuleComparison(models.TextChoices):
    ABOVE = "gt", "above"
    BELOW = "lt", "below"


class AlertSeverity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


METRIC_NAME_MAX_LENGTH = 200


class AlertRule(models.Model):
    """A threshold on one figure of this host's metrics. It fires once the figure has been past
    ``threshold`` for ``for_seconds`` and clears once it has been back past ``clear_threshold``
    (the hysteresis) for as long; evaluated by ``run_monitor`` (docs/architecture.md, Monitoring).

    The figure: the samples named ``metric`` whose labels include every item of ``labels``. With
    ``group_by`` (label names, comma-separated) they are summed per group first (per process:
    ``role,slot``), then combined across groups by ``aggregation``, so "any process above" is
    ``max``. A counter is read as its rate (or, with ``denominator_metric``, as the ratio of the two
    increases) over ``window_seconds``; a histogram as the ``quantile`` of its observations in that
    window."""

    name = models.CharField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    metric = models.CharField(max_length=METRIC_NAME_MAX_LENGTH)
    labels = models.JSONField(default=dict, blank=True, help_text='Label filter, e.g. {"role": "web"}')
    kind = models.CharField(max_length=16, choices=RuleKind.choices, default=RuleKind.VALUE)
    aggregation = models.CharField(max_length=8, choices=RuleAggregation.choices, default=RuleAggregation.SUM)
    group_by = models.CharField(max_length=200, blank=True, help_text="Label names, comma-separated")
    denominator_metric = models.CharField(max_length=METRIC_NAME_MAX_LENGTH, blank=True)
    quantile = models.FloatField(default=0.99)
    window_seconds = models.PositiveIntegerField(default=60)
    comparison = models.CharField(max_length=2, choices=RuleComparison.choices, default=RuleComparison.ABOVE)
    threshold = models.FloatField()
    clear_threshold = models.FloatField()
    for_seconds = models.PositiveIntegerField(
        default=60, help_text="How long it must hold to fire, and to clear"
    )
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices, default=AlertSeverity.WARNING)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if not isinstance(self.labels, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in self.labels.items()
        ):
            errors["labels"] = 'A JSON object of label names to values, e.g. {"role": "web"}.'
        if self.comparison == RuleComparison.ABOVE and self.clear_threshold > self.threshold:
            errors["clear_threshold"] = "Firing above the threshold, it must clear at or below it."
        if self.comparison == RuleComparison.BELOW and self.clear_threshold < self.threshold:
            errors["clear_threshold"] = "Firing below the threshold, it must clear at or above it."
        if self.kind == RuleKind.RATIO and not self.denominator_metric:
            errors["denominator_metric"] = "A ratio needs the counter it divides by."
        if self.kind == RuleKind.QUANTILE and not 0 < self.quantile < 1:
            errors["quantile"] = "Between 0 and 1, e.g. 0.99."
        if self.kind != RuleKind.VALUE and self.window_seconds < 1:
            errors["window_seconds"] = "A rate, ratio or quantile needs a window of at least a second."
        if errors:
            raise ValidationError(errors)


class Alert(models.Model):
    """One firing of a rule, from opening to resolution; kept as history. The rule's name and
    thresholds are copied, so editing or deleting the rule leaves the history as it was."""

    rule = models.ForeignKey(
        AlertRule, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    rule_name = models.CharField(max_length=80)
    severity = models.CharField(max_length=16, choices=AlertSeverity.choices)
    summary = models.CharField(max_length=300)
    labels = models.JSONField(default=dict, blank=True)
    threshold = models.FloatField()
    clear_threshold = models.FloatField()
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    opened_value = models.FloatField()
    peak_value = models.FloatField()
    last_value = models.FloatField()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            # At most one open alert per rule: a restarted monitor adopts it instead of opening another.
            models.UniqueConstraint(
                fields=["rule_name"],
                condition=models.Q(resolved_at__isnull=True),
                name="alert_one_open_per_rule",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule_name} @ {self.opened_at:%Y-%m-%d %H:%M:%S}"


class MonitorSample(models.Model):
    """The ops page's figures at one instant, one row per tier and instant: ``values`` maps each
    series (analytics/ops_series.py) to its number, or a top list to its rows. A tier's row is
    the average of the finer tier's rows in its interval (analytics/monitor.py)."""

    tier_seconds = models.PositiveIntegerField()
    at = models.DateTimeField()
    values = models.JSONField(default=dict)

    class Meta:
        ordering = ["tier_seconds", "at"]
        constraints = [models.UniqueConstraint(fields=["tier_seconds", "at"], name="monitor_sample_tier_at")]

    def __str__(self) -> str:
        return f"{self.tier_seconds}s @ {self.at:%Y-%m-%d %H:%M:%S}"
