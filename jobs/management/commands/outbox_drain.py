"""``manage.py outbox_drain``: publish the messages kept while the broker was unreachable."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from jobs import services
from jobs.models import OutboxEntry


class Command(BaseCommand):
    help = "Publish outbox messages to the broker, oldest first; stops at the first broker failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=None, help="at most this many messages")

    def handle(self, *args: Any, **options: Any) -> None:
        waiting = OutboxEntry.objects.count()
        self.stdout.write(f"{waiting} message(s) in the outbox")
        sent = services.outbox_drain(
            limit=options["limit"] or max(waiting, 1),
            progress=lambda count: self.stdout.write(f"  {count} published") if count % 100 == 0 else None,
        )
        left = OutboxEntry.objects.count()
        style = self.style.SUCCESS if not left else self.style.WARNING
        self.stdout.write(style(f"published {sent}; {left} left"))
