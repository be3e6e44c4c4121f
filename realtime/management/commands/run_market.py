"""``manage.py run_market``: the one market process (simulator, tick writer, order triggers)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.metrics import process_identity_set
from realtime.market import MarketConfig, MarketProcess


class Command(BaseCommand):
    help = "Run the market: simulate prices, store each window, publish it, trigger resting orders."
    # The market serves no URLs; importing the URL conf and API for checks only slows restarts.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=None, help="Price-model seed (MARKET_SEED).")
        parser.add_argument(
            "--symbols", type=int, default=None, help="Simulate the first N tradable symbols (0: all)."
        )
        parser.add_argument(
            "--window-ms", type=int, default=None, help="Batch window in ms (STREAM_BATCH_WINDOW_MS)."
        )
        parser.add_argument(
            "--tick-interval", type=float, default=None, help="Mean seconds between a symbol's ticks."
        )
        parser.add_argument("--duration", type=float, default=None, help="Stop after S seconds (0: run on).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["window_ms"] is not None and options["window_ms"] <= 0:
            raise CommandError("--window-ms must be positive")
        if options["tick_interval"] is not None and options["tick_interval"] <= 0:
            raise CommandError("--tick-interval must be positive")
        config = MarketConfig.from_settings(
            seed=options["seed"],
            symbols=options["symbols"],
            window_ms=options["window_ms"],
            tick_interval_s=options["tick_interval"],
            duration_s=options["duration"],
        )
        process_identity_set(role="market")
        market = MarketProcess(config)

        def stop(signum: int, frame: FrameType | None) -> None:
            # Finish the current window, flush the queue to the database, then exit.
            market.request_stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            market.setup()
        except RuntimeError as error:
            raise CommandError(str(error)) from None
        market.run()
