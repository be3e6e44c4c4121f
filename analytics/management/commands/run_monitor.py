"""``manage.py run_monitor``: the host's resource monitor (alert rules, ops page samples)."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.monitor_process import MonitorProcess
from config.metrics import process_identity_set


class Command(BaseCommand):
    help = "Evaluate the alert rules against this host's metrics and store the ops page's samples."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=None,
            help="Seconds between evaluations (MONITOR_INTERVAL_SECONDS).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["interval"] is not None and options["interval"] <= 0:
            raise CommandError("--interval must be positive")
        process_identity_set(role="monitor")
        process = MonitorProcess(interval=options["interval"], log=lambda line: self.stdout.write(line))

        def stop(signum: int, frame: FrameType | None) -> None:
            process.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        process.run()
