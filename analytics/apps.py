import datetime as dt

from django.apps import AppConfig
from django.conf import settings

from config.retention import retention_days, retention_register


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
        # One row per account and trading day, read for returns over periods (a year needs 366 days).
        retention_register(
            label="equity days",
            model="analytics.AccountEquityDay",
            time_field="day",
            retention=equity_day_retention,
        )
