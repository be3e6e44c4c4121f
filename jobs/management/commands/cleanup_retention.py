"""``manage.py cleanup_retention``: the hourly retention job, by hand, with progress output."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from config.retention import RETENTION_RULES
from jobs.retention import retention_cleanup_rule


class Command(BaseCommand):
    help = "Delete ticks, minute bars, job runs (and other registered rows) older than their retention."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=None, help="rows per delete transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        total = 0
        for rule in RETENTION_RULES.values():
            retention = rule.retention()
            if retention is None:
                self.stdout.write(f"{rule.label}: kept for ever")
                continue
            self.stdout.write(f"{rule.label}: deleting rows older than {retention} ...")
            deleted = retention_cleanup_rule(
                rule=rule,
                now=now,
                batch_size=options["batch_size"],
                progress=lambda label, count: self.stdout.write(f"  {label}: {count} deleted so far"),
            )
            total += deleted
            self.stdout.write(f"{rule.label}: {deleted} deleted")
        self.stdout.write(self.style.SUCCESS(f"done: {total} rows deleted"))
