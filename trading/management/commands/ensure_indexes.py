"""Build missing or invalid indexes without blocking writes: see trading/indexes.py."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from trading.indexes import Outcome, ensure_indexes


class Command(BaseCommand):
    help = (
        "Compare the models' declared indexes and unique constraints with the database and create the "
        "missing ones (CREATE INDEX CONCURRENTLY on PostgreSQL, rebuilding INVALID leftovers)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Report only; change nothing.")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: default).")
        parser.add_argument(
            "--app", action="append", dest="apps", default=None, help="App label to check (default: trading)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connection = connections[options["database"]]
        if connection.vendor == "sqlite":
            self.stdout.write(
                "SQLite has no concurrent index build: missing indexes are built with a plain CREATE INDEX "
                "and writers wait until each one finishes."
            )
        elif connection.vendor != "postgresql":
            self.stdout.write(f"{connection.vendor}: missing indexes are built with Django's ordinary DDL.")
        if options["dry_run"]:
            self.stdout.write("Dry run: nothing will be changed.")

        def report(outcome: Outcome) -> None:
            self.stdout.write(outcome.line())

        try:
            outcomes = ensure_indexes(
                using=options["database"],
                app_labels=options["apps"] or ["trading"],
                dry_run=options["dry_run"],
                report=report,
            )
        except RuntimeError as error:
            raise CommandError(str(error)) from error
        counts = Counter(outcome.status for outcome in outcomes)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        self.stdout.write(
            f"{len(outcomes)} indexes and unique constraints checked: {summary or 'none declared'}."
        )
        if counts["failed"]:
            raise CommandError(
                f"{counts['failed']} could not be built; see the lines starting with 'failed'."
            )
