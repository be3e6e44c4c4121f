from typing import Any

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.db.models.signals import post_migrate

from config.cache import django_cache_close_receiver_sync, django_cache_close_setting_changed
from config.db_metrics import db_metrics_install
from config.retention import retention_days, retention_hours, retention_register


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        # Every process that loads the apps counts its database queries (config/db_metrics.py).
        db_metrics_install()
        # Django's per-request cache close does nothing for this project's cache (config/cache.py);
        # decided again whenever a test overrides the settings it depends on.
        django_cache_close_receiver_sync()
        setting_changed.connect(django_cache_close_setting_changed, dispatch_uid="django_cache_close")
        # Raw ticks are the bulk of the database; 1-minute bars are kept longer, daily bars for ever.
        retention_register(
            label="ticks",
            model="trading.StockPriceHistory",
            time_field="recorded_at",
            retention=retention_hours("TICK_RETENTION_HOURS"),
            # Along tick_symbol_time_idx: the table has no index on time alone.
            partition_field="symbol",
            # A symbol's last tick is its price over a weekend or a stopped market: orders are
            # sized and filled at it, and the latest quotes in Redis copy it (trading/quotes.py).
            keep_newest=True,
        )
        retention_register(
            label="minute bars",
            model="trading.MinuteBar",
            time_field="start",
            retention=retention_days("MINUTE_BAR_RETENTION_DAYS"),
            # Along minute_bar_unique (symbol, start): the table has no index on time alone.
            partition_field="symbol",
        )
        retention_register(
            label="daily bars", model="trading.DailyBar", time_field="start", retention=lambda: None
        )

        # `flush` and `migrate` both end with post_migrate: the quotes the market published
        # before may name ticks the database no longer holds (trading/quotes.py).
        post_migrate.connect(_latest_quotes_forget, sender=self)
        from trading import receivers

        receivers.connect()
        from trading import signals  # noqa: F401  (connects the username-skeleton hooks)


def _latest_quotes_forget(**kwargs: Any) -> None:
    from trading.quotes import latest_quotes_forget

    latest_quotes_forget()
