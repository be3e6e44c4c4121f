"""Where an alert's opening and resolution go: the log at once, then, from a delivery thread, a mail
to staff (Django's mail backend) and a JSON POST to ``ALERT_WEBHOOK_URL``, retried with capped
backoff (docs/architecture.md, Monitoring).

The monitor calls ``AlertDelivery.__call__`` and moves on: a slow mail server or a webhook that
is down delays only the delivery thread, and a delivery that fails every attempt is logged and
dropped, never raised into the monitor.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import DatabaseError, connection

from analytics.monitor import AlertEvent, AlertTransition
from config.backoff import backoff_delay

logger = logging.getLogger("analytics.alerts")

Sleep = Callable[[float], None]


def staff_emails() -> list[str]:
    """Every active staff user's email address (raises ``DatabaseError`` when it is down)."""
    users = get_user_model().objects.filter(is_active=True, is_staff=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def webhook_post(*, url: str, payload: dict[str, object], timeout: float) -> None:
    """One POST of ``payload`` as JSON; raises ``OSError`` (urllib's errors are OSErrors) unless
    the answer is a 2xx."""
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "market-simulator-monitor"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if not 200 <= response.status < 300:
            raise urllib.error.HTTPError(url, response.status, response.reason, response.headers, None)


class AlertDelivery:
    """Logs each event and queues its mail and webhook delivery for a background thread."""

    def __init__(self, *, sleep: Sleep = time.sleep, webhook_url: str | None = None) -> None:
        self.sleep = sleep
        self.webhook_url = settings.ALERT_WEBHOOK_URL if webhook_url is None else webhook_url
        self.queue: queue.Queue[tuple[AlertEvent, list[str]] | None] = queue.Queue()
        self._emails: list[str] = []  # the last list the database gave, for while it is down
        self._thread: threading.Thread | None = None

    def __call__(self, event: AlertEvent) -> None:
        alert = event.alert
        if event.transition is AlertTransition.OPENED:
            logger.warning("alert opened [%s]: %s", alert.severity, alert.summary)
        else:
            logger.warning(
                "alert resolved [%s]: %s (peak %.4g, now %.4g)",
                alert.severity,
                alert.rule_name,
                alert.peak_value,
                alert.last_value,
            )
        self.start()
        self.queue.put((event, self.recipients()))

    def recipients(self) -> list[str]:
        """The staff addresses, read here in the monitor's thread (with its database
        connection); while the database is down, the ones read before."""
        try:
            self._emails = staff_emails()
        except DatabaseError:
            logger.warning("alert mail: the database is down; mailing the staff addresses read before")
            with contextlib.suppress(DatabaseError):
                connection.close()  # a connection broken by the outage: the next query opens anew
        return list(self._emails)

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="alert-delivery", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Delivers what is queued (up to ``timeout``), then ends the thread."""
        if self._thread is not None and self._thread.is_alive():
            self.queue.put(None)
            self._thread.join(timeout)

    def drain(self, timeout: float = 30.0) -> bool:
        """Waits until every queued event has been delivered (or given up); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            try:
                if item is None:
                    return
                self.deliver(*item)
            except Exception:
                logger.exception("alert delivery failed")
            finally:
                self.queue.task_done()

    def deliver(self, event: AlertEvent, emails: list[str]) -> None:
        self.mail(event, emails)
        if self.webhook_url:
            self.webhook(event)

    def mail(self, event: AlertEvent, emails: list[str]) -> None:
        if not emails:
            return
        payload = event.payload()
        subject = str(payload["text"])
        lines = [f"{key}: {value}" for key, value in payload.items() if key != "text"]
        try:
            send_mail(subject, "\n".join(lines), settings.ALERT_MAIL_FROM, emails)
        except Exception:
            logger.warning("alert mail to staff failed", exc_info=True)

    def webhook(self, event: AlertEvent) -> bool:
        """POSTs the event, retrying with backoff; True once one attempt was answered 2xx."""
        attempts = settings.ALERT_WEBHOOK_ATTEMPTS
        payload = event.payload()
        for attempt in range(1, attempts + 1):
            try:
                webhook_post(
                    url=self.webhook_url, payload=payload, timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS
                )
                return True
            except (OSError, ValueError) as error:
                if attempt == attempts:
                    logger.error(
                        "alert webhook: giving up on %s %s after %d attempts: %s",
                        payload["status"],
                        payload["rule"],
                        attempts,
                        error,
                    )
                    return False
                delay = backoff_delay(
                    failures=attempt,
                    base_s=settings.ALERT_WEBHOOK_RETRY_BASE_SECONDS,
                    cap_s=settings.ALERT_WEBHOOK_RETRY_CAP_SECONDS,
                )
                logger.warning(
                    "alert webhook: attempt %d failed (%s); retrying in %.0f s", attempt, error, delay
                )
                self.sleep(delay)
        return False
