"""Retention: delete rows older than their retention, in bounded batches (Property 29).

A registry of (model, time field, retention) so each app registers its own tables (monitoring
samples, when they exist, call ``retention_register`` from their AppConfig.ready). Each batch is
one short transaction deleting at most RETENTION_BATCH_SIZE rows up to a primary-key bound, so the
tick writer and the API never wait long behind cleanup, and SQLite's single write lock is
released between batches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from trading import calendar


@dataclass(frozen=True)
class RetentionRule:
    label: str
    model: str  # "app_label.ModelName", resolved late so apps can register before loading
    time_field: str
    # None keeps rows for ever (daily bars); read at run time so settings overrides apply.
    retention: Callable[[], dt.timedelta | None]
    # Rows never deleted whatever their age (a job run still queued or running).
    keep: Q | None = None

    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)


RETENTION_RULES: dict[str, RetentionRule] = {}


def retention_register(
    *,
    label: str,
    model: str,
    time_field: str,
    retention: Callable[[], dt.timedelta | None],
    keep: Q | None = None,
) -> None:
    RETENTION_RULES[label] = RetentionRule(
        label=label, model=model, time_field=time_field, retention=retention, keep=keep
    )


def _hours(setting: str) -> Callable[[], dt.timedelta]:
    return lambda: dt.timedelta(hours=getattr(settings, setting))


def _days(setting: str) -> Callable[[], dt.timedelta]:
    return lambda: dt.timedelta(days=getattr(settings, setting))


retention_register(
    label="ticks",
    model="trading.StockPriceHistory",
    time_field="recorded_at",
    retention=_hours("TICK_RETENTION_HOURS"),
)
retention_register(
    label="minute bars",
    model="trading.MinuteBar",
    time_field="start",
    retention=_days("MINUTE_BAR_RETENTION_DAYS"),
)
retention_register(label="daily bars", model="trading.DailyBar", time_field="start", retention=lambda: None)
retention_register(
    label="job runs",
    model="jobs.JobRun",
    time_field="created_at",
    retention=_days("JOB_RUN_RETENTION_DAYS"),
    keep=Q(status__in=("queued", "running")),
)
# Monitoring samples: the dashboard's frontend performance reports.
retention_register(
    label="frontend samples",
    model="analytics.FrontendSample",
    time_field="received_at",
    retention=_days("MONITORING_SAMPLE_RETENTION_DAYS"),
)


def _equity_day_retention() -> dt.timedelta:
    # Imported late: this module loads before the apps' models do.
    from analytics.services import SERIES_DAYS

    # Never shorter than the series the analytics read back (volatility, drawdown, Sharpe),
    # whatever the setting says: a shorter one would silently change those figures.
    return dt.timedelta(days=max(settings.EQUITY_DAY_RETENTION_DAYS, SERIES_DAYS + 1))


# One row per account and trading day, read for returns over periods (a year needs 366 days).
retention_register(
    label="equity days", model="analytics.AccountEquityDay", time_field="day", retention=_equity_day_retention
)


def retention_cleanup_rule(
    *,
    rule: RetentionRule,
    now: dt.datetime,
    batch_size: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Delete one rule's expired rows; returns how many. Rows exactly at the cutoff stay."""
    retention = rule.retention()
    if retention is None:
        return 0
    model = rule.model_class()
    cutoff: dt.datetime | dt.date = now - retention
    if not isinstance(model._meta.get_field(rule.time_field), models.DateTimeField):
        # A date column holds trading days: age counts from today's trading day, not from the
        # UTC date, which is already tomorrow's on a New York evening.
        cutoff = calendar.trading_day_of(now) - retention
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    expired = model._default_manager.filter(**{f"{rule.time_field}__lt": cutoff})
    if rule.keep is not None:
        expired = expired.exclude(rule.keep)
    deleted = 0
    while True:
        # The batch's highest key bounds the DELETE: a range the database walks by index, not a
        # list of thousands of literals, and never more than batch_size rows per transaction.
        bound = expired.order_by("pk").values_list("pk", flat=True)[batch_size - 1 : batch_size].first()
        with transaction.atomic():
            batch = expired if bound is None else expired.filter(pk__lte=bound)
            count, _ = batch.delete()
        deleted += count
        if progress is not None and count:
            progress(rule.label, deleted)
        if bound is None:
            return deleted


def retention_cleanup(
    *,
    now: dt.datetime,
    batch_size: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Every registered rule, in registration order: {label: rows deleted}."""
    return {
        label: retention_cleanup_rule(rule=rule, now=now, batch_size=batch_size, progress=progress)
        for label, rule in RETENTION_RULES.items()
    }
