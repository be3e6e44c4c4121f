"""Writes for background jobs: enqueueing (after commit, through the outbox when the broker is
down), exactly-once job runs, statements and the retention job.

A job run is claimed with one conditional UPDATE (queued, or running past its lease), its effect
is prepared outside any transaction (reads and rendering: on SQLite a transaction holds the
database's write lock), and committed in one short transaction together with the run's
``succeeded`` mark, conditional on still holding the claim. A worker killed between claim and
commit leaves a run whose lease expires; the redelivered message (or the recovery sweep) claims
it again. Domain uniqueness (one statement per account and period) covers the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu import pools

from analytics import statements
from analytics.models import Statement
from analytics.statement_pdf import statement_pdf_render
from jobs import retention
from jobs.models import JobRun, JobStatus, OutboxEntry
from jobs.retry import is_transient
from trading.models import Account

logger = logging.getLogger(__name__)

STATEMENT_JOB = "statement"
STATEMENTS_MONTHLY_JOB = "statements_monthly"
RETENTION_JOB = "retention_cleanup"

# Task names (jobs/tasks.py registers them); kept here so services need not import Celery tasks.
JOB_EXECUTE_TASK = "jobs.job_execute"
STATEMENTS_MONTHLY_TASK = "jobs.statements_monthly"


class JobBusy(Exception):
    """Another worker holds a live claim on the run; try again once its lease has expired."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"job run is claimed by another worker; retry in {retry_in:.1f}s")
        self.retry_in = retry_in


class LeaseLost(Exception):
    """The claim expired and another worker took the run over; this worker's effect is dropped."""


# --- Enqueueing -----------------------------------------------------------------------------------


def _publish(*, task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    # The project's Celery app, which config/__init__.py loads in every process (the wiring is
    # above jobs, so it is not imported here); tasks are sent by name.
    app = current_app
    # A bounded pool per broker URL, waited on briefly so a request whose broker is down falls back
    # to the outbox instead of hanging; read from settings at call time.
    connection = app.connection_for_write(settings.CELERY_BROKER_URL)
    with pools.connections[connection].acquire(block=True, timeout=settings.REDIS_POOL_TIMEOUT) as conn:
        app.send_task(task_name, args=list(args), kwargs=dict(kwargs), connection=conn)


def _publish_or_store(*, task_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> bool:
    """Publish now; if the broker refuses, keep the message in the outbox. True if published."""
    try:
        _publish(task_name=task_name, args=args, kwargs=kwargs)
        return True
    except Exception as error:  # any broker failure: the message must not be lost
        logger.warning("broker unavailable, %s goes to the outbox: %s", task_name, error)
        OutboxEntry.objects.create(
            task_name=task_name,
            args=list(args),
            kwargs=dict(kwargs),
            attempts=1,
            last_error=str(error)[:2000],
        )
        return False


def job_enqueue(*, task_name: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> None:
    """Send a task once the current transaction commits (at once outside one).

    After commit, so a worker never looks for rows it cannot see yet; and a rolled-back request
    sends nothing.
    """
    payload_args, payload_kwargs = list(args), dict(kwargs or {})
    transaction.on_commit(
        lambda: _publish_or_store(task_name=task_name, args=payload_args, kwargs=payload_kwargs)
    )


def outbox_drain(*, limit: int | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Publish outbox messages oldest first; stop at the first broker failure. Returns the count.

    Each row is deleted in the transaction that publishes it, so two drainers cannot both claim
    a row (the second's DELETE finds nothing); a crash after publishing and before commit sends a
    message twice, which job runs absorb.
    """
    sent = 0
    batch = limit or settings.OUTBOX_DRAIN_BATCH
    for entry in list(OutboxEntry.objects.order_by("id")[:batch]):
        try:
            with transaction.atomic():
                if not OutboxEntry.objects.filter(pk=entry.pk).delete()[0]:
                    continue
                _publish(task_name=entry.task_name, args=entry.args, kwargs=entry.kwargs)
        except Exception as error:  # the broker is still down: keep the rest for the next drain
            OutboxEntry.objects.filter(pk=entry.pk).update(
                attempts=F("attempts") + 1, last_error=str(error)[:2000]
            )
            logger.warning("outbox drain stopped: %s", error)
            break
        sent += 1
        if progress is not None:
            progress(sent)
    return sent


# --- Job runs ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class JobHandler:
    """``prepare`` runs outside any transaction and may be slow; ``commit`` runs inside the
    transaction that marks the run succeeded and returns the run's result."""

    prepare: Callable[[JobRun], Any]
    commit: Callable[[JobRun, Any, uuid.UUID], dict[str, Any]]


JOB_HANDLERS: dict[str, JobHandler] = {}


def job_run_ensure(
    *, name: str, slot: str, params: Mapping[str, Any] | None = None, account_id: uuid.UUID | None = None
) -> tuple[JobRun, bool]:
    """The run for (name, slot), created queued if there was none. True when this call created it."""
    try:
        with transaction.atomic():
            return (
                JobRun.objects.create(name=name, slot=slot, params=dict(params or {}), account_id=account_id),
                True,
            )
    except IntegrityError:
        return JobRun.objects.get(name=name, slot=slot), False


def job_run_requeue(*, job_id: uuid.UUID) -> bool:
    """Put a failed run back in the queue (a user asking again); False if it had not failed."""
    return bool(
        JobRun.objects.filter(pk=job_id, status=JobStatus.FAILED).update(
            status=JobStatus.QUEUED, error="", finished_at=None, claim_token=None, lease_expires_at=None
        )
    )


def job_claim(*, job_id: uuid.UUID | str, now: dt.datetime | None = None) -> tuple[JobRun, uuid.UUID] | None:
    """Claim a run for this worker. None when there is nothing to do (finished or unknown);
    JobBusy when another worker's claim is still live."""
    now = now or timezone.now()
    token = uuid.uuid4()
    claimable = Q(status=JobStatus.QUEUED) | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    claimed = (
        JobRun.objects.filter(pk=job_id)
        .filter(claimable)
        .update(
            status=JobStatus.RUNNING,
            claim_token=token,
            attempts=F("attempts") + 1,
            lease_expires_at=now + dt.timedelta(seconds=settings.JOB_LEASE_SECONDS),
            started_at=now,
        )
    )
    job = JobRun.objects.filter(pk=job_id).first()
    if job is None or job.is_finished:
        return None
    if not claimed:
        assert job.lease_expires_at is not None
        raise JobBusy(max(0.5, (job.lease_expires_at - now).total_seconds() + 0.5))
    return job, token


def job_release_for_retry(*, job_id: uuid.UUID | str, token: uuid.UUID, error: str) -> None:
    """Give the claim back after a transient failure so the retry (or any worker) can claim it."""
    JobRun.objects.filter(pk=job_id, claim_token=token, status=JobStatus.RUNNING).update(
        status=JobStatus.QUEUED, error=error[:4000], lease_expires_at=None
    )


def job_fail(*, job_id: uuid.UUID | str, error: str, token: uuid.UUID | None = None) -> None:
    """Record a permanent failure (or retries exhausted), visible in the admin and the API."""
    runs = JobRun.objects.filter(pk=job_id).exclude(status=JobStatus.SUCCEEDED)
    if token is not None:
        runs = runs.filter(Q(claim_token=token) | Q(status=JobStatus.QUEUED))
    runs.update(
        status=JobStatus.FAILED, error=error[:4000], finished_at=timezone.now(), lease_expires_at=None
    )


def job_execute(*, job_id: uuid.UUID | str, may_retry: bool = True) -> dict[str, Any] | None:
    """Run a job run's effect exactly once; None when it was done already or does not exist.

    Errors propagate after the run is settled under this worker's claim: a transient error, when
    ``may_retry`` (the caller will try again: the task has retries left), gives the claim back
    (queued); any other error marks the run failed with the error, which the admin and the API
    show, and nothing retries it. Settling here, with the claim token, means a duplicate delivery
    can never take over a run between its release and its failure mark.
    """
    claim = job_claim(job_id=job_id)
    if claim is None:
        return None
    job, token = claim
    handler = JOB_HANDLERS.get(job.name)
    if handler is None:
        job_fail(job_id=job.pk, token=token, error=f"no handler for job {job.name!r}")
        return None
    try:
        prepared = handler.prepare(job)
        with transaction.atomic():
            # Marked first, conditional on the claim: the row lock (PostgreSQL) or the write lock
            # (SQLite) then keeps any other claim out until the effect below has committed.
            finished = JobRun.objects.filter(pk=job.pk, claim_token=token, status=JobStatus.RUNNING).update(
                status=JobStatus.SUCCEEDED, error="", finished_at=timezone.now(), lease_expires_at=None
            )
            if not finished:
                raise LeaseLost(f"job run {job.pk} was claimed again before it finished")
            result = handler.commit(job, prepared, token)
            JobRun.objects.filter(pk=job.pk).update(result=result)
    except LeaseLost:
        # The worker that took the run over produces the effect; this one's is dropped.
        logger.warning("job run %s: lease lost, effect dropped", job.pk)
        return None
    except Exception as error:
        described = f"{type(error).__name__}: {error}"
        if may_retry and is_transient(error):
            job_release_for_retry(job_id=job.pk, token=token, error=described)
        else:
            job_fail(job_id=job.pk, token=token, error=described)
        raise
    except BaseException as error:
        # The worker is going away (shutdown, a time limit): the run is not at fault.
        job_release_for_retry(job_id=job.pk, token=token, error=f"{type(error).__name__}: {error}")
        raise
    return result


def job_runs_recover(*, now: dt.datetime | None = None, stale_after: dt.timedelta | None = None) -> int:
    """Re-send runs whose message was lost: queued for long, or running past their lease.

    The broker redelivers unacknowledged messages by itself; this catches the rest (an outbox
    row deleted by hand, a Redis restart without persistence).
    """
    now = now or timezone.now()
    stale_after = stale_after or dt.timedelta(seconds=settings.JOB_LEASE_SECONDS)
    stale = JobRun.objects.filter(
        Q(status=JobStatus.QUEUED, created_at__lt=now - stale_after)
        | Q(status=JobStatus.RUNNING, lease_expires_at__lt=now)
    ).values_list("pk", flat=True)[:1000]
    ids = [str(pk) for pk in stale]
    for job_id in ids:
        job_enqueue(task_name=JOB_EXECUTE_TASK, args=[job_id])
    return len(ids)


# --- Statements ---------------------------------------------------------------------------------


def statement_job_slot(*, account_id: uuid.UUID | str, period: str) -> str:
    return f"{account_id}:{period}"


def statement_request(*, account_id: uuid.UUID, period: str, now: dt.datetime | None = None) -> JobRun:
    """Ask for an account's statement for a finished month; answers the (possibly existing) run.

    Raises InvalidRequest for a malformed, unfinished or future period.
    """
    statements.statement_period_bounds(period=period, now=now or timezone.now())
    with transaction.atomic():
        job, created = job_run_ensure(
            name=STATEMENT_JOB,
            slot=statement_job_slot(account_id=account_id, period=period),
            params={"account_id": str(account_id), "period": period},
            account_id=account_id,
        )
        if created or job_run_requeue(job_id=job.pk):
            job_enqueue(task_name=JOB_EXECUTE_TASK, args=[str(job.pk)])
            job.refresh_from_db()
    return job


def statements_monthly(
    *, period: str | None = None, now: dt.datetime | None = None, may_retry: bool = True
) -> dict[str, Any] | None:
    """Beat: last month's statement for every account, one job run (and task) per account.

    The fan-out is itself a run unique per period, so a second beat process, or the beat firing
    again later that day, enqueues nothing; each account's run is unique as well. A permanent
    error (a malformed or unfinished ``period``) fails the fan-out's run: see ``job_execute``.
    """
    period = period or statements.statement_last_period(now=now or timezone.now())
    fan_out, _ = job_run_ensure(name=STATEMENTS_MONTHLY_JOB, slot=period, params={"period": period})
    return job_execute(job_id=fan_out.pk, may_retry=may_retry)


def _statements_fan_out(job: JobRun) -> int:
    """Idempotent: a run is sent only by the call that created it. A crash between creating and
    sending leaves it queued, and ``job_runs_recover`` sends it."""
    period = job.params["period"]
    _, period_end = statements.statement_period_bounds(period=period, now=timezone.now())
    enqueued = 0
    account_ids = (
        Account.objects.filter(created_at__lt=period_end).order_by("pk").values_list("pk", flat=True)
    )
    for account_id in account_ids.iterator(chunk_size=1000):
        run, created = job_run_ensure(
            name=STATEMENT_JOB,
            slot=statement_job_slot(account_id=account_id, period=period),
            params={"account_id": str(account_id), "period": period},
            account_id=account_id,
        )
        if created:
            job_enqueue(task_name=JOB_EXECUTE_TASK, args=[str(run.pk)])
            enqueued += 1
    return enqueued


JOB_HANDLERS[STATEMENTS_MONTHLY_JOB] = JobHandler(
    prepare=_statements_fan_out, commit=lambda job, enqueued, token: {"enqueued": enqueued}
)


@dataclasses.dataclass(frozen=True)
class _PreparedStatement:
    data: statements.StatementData
    pdf: bytes


def _statement_prepare(job: JobRun) -> _PreparedStatement:
    data = statements.statement_data(account_id=job.params["account_id"], period=job.params["period"])
    return _PreparedStatement(data=data, pdf=statement_pdf_render(data=data))


def _statement_commit(job: JobRun, prepared: _PreparedStatement, token: uuid.UUID) -> dict[str, Any]:
    data = prepared.data
    statement = Statement(
        account_id=data.account_id,
        period=data.period,
        period_start=data.start,
        period_end=data.end,
        opening_cash_cents=data.opening_cash_cents,
        closing_cash_cents=data.closing_cash_cents,
        opening_equity_cents=data.opening_equity_cents,
        closing_equity_cents=data.closing_equity_cents,
        commissions_cents=data.commissions_cents,
        realized_pl_cents=data.realized_pl_cents,
        trade_count=len(data.trades),
    )
    # The claim token in the name: two racing workers never overwrite each other's file.
    statement.pdf.save(f"{data.period}-{token.hex[:12]}.pdf", ContentFile(prepared.pdf), save=False)
    try:
        with transaction.atomic():
            statement.save(force_insert=True)
    except IntegrityError:
        # Produced already (e.g. by a run from before an admin reset): the existing one stands.
        if statement.pdf.name:
            default_storage.delete(statement.pdf.name)
        existing = Statement.objects.get(account_id=data.account_id, period=data.period)
        return {"statement_id": str(existing.pk)}
    return {"statement_id": str(statement.pk)}


JOB_HANDLERS[STATEMENT_JOB] = JobHandler(prepare=_statement_prepare, commit=_statement_commit)


# --- Retention ----------------------------------------------------------------------------------


def retention_run(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Beat: delete what is past retention. Idempotent, so it runs in ``prepare`` (many short
    batch transactions) and the run records only the counts."""
    return retention.retention_cleanup(now=now or timezone.now())


def _retention_commit(job: JobRun, prepared: dict[str, int], token: uuid.UUID) -> dict[str, Any]:
    return {"deleted": prepared}


JOB_HANDLERS[RETENTION_JOB] = JobHandler(prepare=lambda job: retention_run(), commit=_retention_commit)


def retention_hourly(*, now: dt.datetime | None = None, may_retry: bool = True) -> dict[str, Any] | None:
    """Beat: one cleanup per hour bucket, whichever beat process or delivery gets there first.
    A permanent error fails the hour's run (see ``job_execute``); the next hour tries afresh."""
    now = now or timezone.now()
    job, _ = job_run_ensure(name=RETENTION_JOB, slot=now.strftime("%Y-%m-%dT%H"))
    return job_execute(job_id=job.pk, may_retry=may_retry)
