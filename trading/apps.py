from django.apps import AppConfig


class TradingConfig(AppConfig):
    name = "trading"
    verbose_name = "Trading"

    def ready(self) -> None:
        from trading import signals  # noqa: F401  (connects the username-skeleton hooks)
