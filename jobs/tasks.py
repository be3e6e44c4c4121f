"""Celery entry points: thin wrappers, ids in, one service call each.

``JobTask`` adds the retry policy (jobs/retry.py): transient errors (database or Redis briefly
unavailable) are retried with capped exponential backoff and full jitter up to JOB_MAX_RETRIES;
anything else fails at once. Tasks that run a job run pass ``self.may_retry()`` down, so the run
is settled by the service that holds its claim: a failure that will not be retried (permanent,
or retries exhausted) marks the run failed with its error, which the admin shows; one that will
be retried puts it back in the queue. Messages are acknowledged late and rejected (so
redelivered) when the worker dies.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from analytics import services as analytics_services
from jobs import services
from jobs.retry import retry_delay, should_retry
from trading import services as trading_services

logger = logging.getLogger(__name__)


class JobTask(Task):
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    # Retry scheduling is explicit below (retry_delay); Celery's own autoretry stays off.
    max_retries = None

    def may_retry(self) -> bool:
        """Whether a transient failure of this delivery will be retried (retries remain)."""
        return int(self.request.retries or 0) < settings.JOB_MAX_RETRIES

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except services.JobBusy as busy:
            # Not a failure: the run's lease tells when it may be claimed again.
            raise self.retry(exc=busy, countdown=busy.retry_in) from None
        except Exception as error:
            attempt = int(self.request.retries or 0)
            if should_retry(attempt=attempt, max_retries=settings.JOB_MAX_RETRIES, error=error):
                countdown = retry_delay(
                    attempt=attempt, base=settings.JOB_RETRY_BASE_SECONDS, cap=settings.JOB_RETRY_CAP_SECONDS
                )
                logger.warning(
                    "%s failed (attempt %d), retrying in %.3fs: %s", self.name, attempt + 1, countdown, error
                )
                raise self.retry(exc=error, countdown=countdown) from None
            raise


@shared_task(base=JobTask, bind=True, name=services.JOB_EXECUTE_TASK)
def job_execute_task(self: JobTask, job_id: str) -> None:
    """Run a job run (a statement, ...) exactly once, whatever number of times it is delivered."""
    services.job_execute(job_id=job_id, may_retry=self.may_retry())


@shared_task(base=JobTask, bind=True, name=services.STATEMENTS_MONTHLY_TASK)
def statements_monthly_task(self: JobTask, period: str | None = None) -> None:
    """Fan out last month's statements, one run per account (the fan-out itself runs once)."""
    services.statements_monthly(period=period, may_retry=self.may_retry())


@shared_task(base=JobTask, bind=True, name="jobs.retention_cleanup")
def retention_cleanup_task(self: JobTask) -> None:
    services.retention_hourly(may_retry=self.may_retry())


# The tasks below change nothing that a job run records: a transient failure is retried, a
# permanent one is logged, and the next beat run tries again.


@shared_task(base=JobTask, bind=True, name="jobs.outbox_drain")
def outbox_drain_task(self: JobTask) -> None:
    services.outbox_drain()


@shared_task(base=JobTask, bind=True, name="jobs.job_runs_recover")
def job_runs_recover_task(self: JobTask) -> None:
    services.job_runs_recover()


@shared_task(base=JobTask, bind=True, name="jobs.orders_expire")
def orders_expire_task(self: JobTask) -> int:
    """Expire day orders whose trading day has ended (idempotent: a status-conditional update)."""
    return trading_services.orders_expire()


@shared_task(base=JobTask, bind=True, name="jobs.games_close_due")
def games_close_due_task(self: JobTask) -> int:
    """Cancel the open orders of games that are over (idempotent: only orders still open)."""
    return trading_services.games_close_due()


# --- Leaderboard and analytics (analytics/services.py) ------------------------------------------
# No retries: each run recomputes everything from scratch, so the next beat run supersedes a
# failed one, and readers recompute a leaderboard older than its staleness bound themselves.


@shared_task(name="jobs.leaderboard_refresh", ignore_result=True)
def leaderboard_refresh_task() -> None:
    """Overall and daily leaderboards for every account, every running game's board, and the final
    standings of games just over."""
    analytics_services.leaderboards_refresh_all()


@shared_task(name="jobs.analytics_refresh", ignore_result=True)
def analytics_refresh_task() -> None:
    """Per-account analytics, and the leaderboards from the same load of every account."""
    analytics_services.analytics_refresh_all()


@shared_task(name="jobs.symbol_stats_refresh", ignore_result=True)
def symbol_stats_refresh_task() -> None:
    """Per-symbol stats for every active asset."""
    analytics_services.symbol_stats_refresh()
