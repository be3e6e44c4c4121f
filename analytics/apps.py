import datetime as dt
from collections.abc import Callable

from django.apps import AppConfig
from django.conf import settings
from django.db.models import Q

from config.retention import retention_days, retention_register


def monitor_tier_retention(index: int) -> Callable[[], dt.timedelta]:
    """How long the ``index``-th sample tier is kept, read when the cleanup runs: its own time, or
    for a tier without one (0) MONITORING_SAMPLE_RETENTION_DAYS; never less than a finer tier's,
    so a coarser view never covers a shorter span."""

    def retention() -> dt.timedelta:
        kept = dt.timedelta(0)
        for _tier, seconds in settings.MONITOR_SAMPLE_TIERS[: index + 1]:
            own = (
                dt.timedelta(seconds=seconds)
                if seconds
                else dt.timedelta(days=settings.MONITORING_SAMPLE_RETENTION_DAYS)
            )
            kept = max(kept, own)
        return kept

    return retention


class AnalyticsConfig(AppConfig):
    name = "analytics"

    def ready(self) -> None:
        from analytics.services import SERIES_DAYS  # imports models: only once the registry is ready

        def equity_day_retention() -> dt.timedelta:
            # Never shorter than the series the analytics read back (volatility, drawdown, Sharpe),
            # whatever the setting says: a shorter one would silently change those figures.
            return dt.timedelta(days=max(settings.EQUITY_DAY_RETENTION_DAYS, SERIES_DAYS + 1))

        # Monitoring samples: the dashboard's frontend performance reports.
        retention_register(
            label="frontend samples",
            model="analytics.FrontendSample",
            time_field="received_at",
            retention=retention_days("MONITORING_SAMPLE_RETENTION_DAYS"),
        )
        # The ops page's samples, one rule per tier (settings.MONITOR_SAMPLE_TIERS): each kept its
        # own time, the coarsest for the monitoring retention (analytics/monitor_process.py).
        for index, (tier, _) in enumerate(settings.MONITOR_SAMPLE_TIERS):
            retention_register(
                label=f"monitor samples ({tier} s)",
                model="analytics.MonitorSample",
                time_field="at",
                retention=monitor_tier_retention(index),
                keep=~Q(tier_seconds=tier),
            )
        # One row per account and trading day, read for returns over periods (a year needs 366 days).
        retention_register(
            label="equity days",
            model="analytics.AccountEquityDay",
            time_field="day",
            retention=equity_day_retention,
        )
