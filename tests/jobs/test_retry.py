"""Property 30: retries back off exponentially, capped and jittered, up to a maximum; permanent
errors are not retried. The timing is a pure function; the policy is exercised through Celery's
own eager execution of the real tasks (every task that runs a job run), with failures recorded on
the job run. test_worker_failures.py takes permanent failures through a real worker."""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from django.db import OperationalError
from django.utils import timezone
from hypothesis import given, strategies as st

from jobs import services
from jobs.models import JobRun, JobStatus
from jobs.retry import is_transient, retry_cap, retry_delay, should_retry
from jobs.tasks import job_execute_task, retention_cleanup_task, statements_monthly_task

bases = st.floats(min_value=0.001, max_value=60, allow_nan=False)
caps = st.floats(min_value=0.001, max_value=3600, allow_nan=False)


class Extreme:
    """A random source stuck at one end of the range, to probe the bounds."""

    def __init__(self, high: bool) -> None:
        self.high = high

    def uniform(self, a: float, b: float) -> float:
        return b if self.high else a


@given(attempt=st.integers(min_value=0, max_value=200), base=bases, cap=caps, seed=st.integers())
def test_delay_within_capped_exponential_bound(attempt: int, base: float, cap: float, seed: int) -> None:
    delay = retry_delay(attempt=attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= delay <= min(cap, base * 2.0 ** min(attempt, 64))
    for high in (False, True):
        assert 0.0 <= retry_delay(attempt=attempt, base=base, cap=cap, rng=Extreme(high)) <= cap


@given(attempt=st.integers(min_value=0, max_value=200), base=bases, cap=caps)
def test_bound_doubles_until_the_cap_and_never_decreases(attempt: int, base: float, cap: float) -> None:
    now, following = (
        retry_cap(attempt=attempt, base=base, cap=cap),
        retry_cap(attempt=attempt + 1, base=base, cap=cap),
    )
    assert now <= following <= cap
    if following < cap:
        assert following == pytest.approx(2 * now)


@given(seed=st.integers())
def test_jitter_spreads_delays(seed: int) -> None:
    rng = random.Random(seed)
    delays = {retry_delay(attempt=5, base=1.0, cap=600.0, rng=rng) for _ in range(20)}
    assert len(delays) > 1


@given(attempt=st.integers(min_value=0, max_value=50), max_retries=st.integers(min_value=0, max_value=20))
def test_retries_stop_at_the_maximum(attempt: int, max_retries: int) -> None:
    assert should_retry(attempt=attempt, max_retries=max_retries, error=OperationalError("locked")) == (
        attempt < max_retries
    )
    assert not should_retry(attempt=attempt, max_retries=max_retries, error=ValueError("bad data"))


def test_transient_and_permanent_errors() -> None:
    assert is_transient(OperationalError("database is locked"))
    assert is_transient(redis.ConnectionError("down"))
    assert not is_transient(ValueError("bad period"))
    assert not is_transient(KeyError("account_id"))


# --- The task's policy, run by Celery eagerly against real job-run rows -------------------------


class Flaky:
    """A job handler failing ``failures`` times with ``error`` before it succeeds."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def prepare(self, job: JobRun) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def commit(self, job: JobRun, prepared: Any, token: uuid.UUID) -> dict[str, Any]:
        return {"calls": self.calls}


@pytest.fixture
def flaky_job(settings: Any) -> Iterator[str]:
    settings.JOB_MAX_RETRIES = 3
    yield "test_flaky"
    services.JOB_HANDLERS.pop("test_flaky", None)


def _run(name: str, handler: Flaky) -> JobRun:
    services.JOB_HANDLERS[name] = services.JobHandler(prepare=handler.prepare, commit=handler.commit)
    job, _ = services.job_run_ensure(name=name, slot="s1")
    job_execute_task.apply(args=[str(job.pk)])
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_transient_failures_are_retried_then_succeed(flaky_job: str) -> None:
    handler = Flaky(2, OperationalError("database is locked"))
    job = _run(flaky_job, handler)
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCEEDED, 3, {"calls": 3})


@pytest.mark.django_db
def test_transient_failures_stop_after_the_maximum(flaky_job: str) -> None:
    handler = Flaky(100, redis.ConnectionError("Redis is down"))
    job = _run(flaky_job, handler)
    # The first attempt and JOB_MAX_RETRIES retries, then a failure the admin shows.
    assert (job.status, job.attempts, handler.calls) == (JobStatus.FAILED, 4, 4)
    assert "ConnectionError: Redis is down" in job.error


@pytest.mark.django_db
def test_permanent_failures_are_not_retried(flaky_job: str) -> None:
    handler = Flaky(100, ValueError("no such period"))
    job = _run(flaky_job, handler)
    assert (job.status, job.attempts, handler.calls) == (JobStatus.FAILED, 1, 1)
    assert job.error == "ValueError: no such period"
    assert job.finished_at is not None


# --- Every task that runs a job run: the beat fan-out and the hourly cleanup as well ------------
# The run is created inside the task (no run id in the message), so the failure must still be
# recorded on it: a permanent error fails it at once, a transient one puts it back in the queue
# and retries it after a capped, jittered delay.


@dataclass(frozen=True)
class JobRunTask:
    name: str  # the job run's name, whose handler is made flaky
    send: Callable[[], Any]  # one delivery, run eagerly by Celery
    run: Callable[[], JobRun]  # the run the delivery worked on


def _job_run_tasks() -> dict[str, JobRunTask]:
    period = "2024-03"
    return {
        "job_execute": JobRunTask(
            name="test_flaky",
            send=lambda: job_execute_task.apply(
                args=[str(services.job_run_ensure(name="test_flaky", slot="s1")[0].pk)]
            ),
            run=lambda: JobRun.objects.get(name="test_flaky", slot="s1"),
        ),
        "statements_monthly": JobRunTask(
            name=services.STATEMENTS_MONTHLY_JOB,
            send=lambda: statements_monthly_task.apply(kwargs={"period": period}),
            run=lambda: JobRun.objects.get(name=services.STATEMENTS_MONTHLY_JOB, slot=period),
        ),
        "retention_cleanup": JobRunTask(
            name=services.RETENTION_JOB,
            send=lambda: retention_cleanup_task.apply(),
            run=lambda: JobRun.objects.get(name=services.RETENTION_JOB),
        ),
    }


class FlakyAround(Flaky):
    """Fails like Flaky, then runs the job's real handler."""

    def __init__(self, failures: int, error: Exception, real: services.JobHandler | None) -> None:
        super().__init__(failures, error)
        self.real = real

    def prepare(self, job: JobRun) -> Any:
        super().prepare(job)
        return self.real.prepare(job) if self.real else None

    def commit(self, job: JobRun, prepared: Any, token: uuid.UUID) -> dict[str, Any]:
        return self.real.commit(job, prepared, token) if self.real else super().commit(job, prepared, token)


@pytest.fixture(params=list(_job_run_tasks()))
def job_run_task(
    request: pytest.FixtureRequest, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> JobRunTask:
    settings.JOB_MAX_RETRIES = 3
    settings.JOB_RETRY_BASE_SECONDS = 0.5
    settings.JOB_RETRY_CAP_SECONDS = 1.5
    task = _job_run_tasks()[request.param]
    # Restored afterwards (the flaky one replaces the real handler for the test only).
    monkeypatch.setitem(services.JOB_HANDLERS, task.name, services.JOB_HANDLERS.get(task.name))
    return task


def _make_flaky(task: JobRunTask, failures: int, error: Exception) -> FlakyAround:
    handler = FlakyAround(failures, error, services.JOB_HANDLERS.get(task.name))
    services.JOB_HANDLERS[task.name] = services.JobHandler(prepare=handler.prepare, commit=handler.commit)
    return handler


def _countdowns(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        float(match.group(1))
        for record in caplog.records
        if (match := re.search(r"retrying in ([0-9.]+)s", record.getMessage()))
    ]


@pytest.mark.django_db
def test_permanent_errors_fail_the_run_at_once(
    job_run_task: JobRunTask, caplog: pytest.LogCaptureFixture
) -> None:
    """Property 30: a permanent error is not retried; the run is marked failed with the error
    (what the admin lists), not put back in the queue for the recovery sweep to send again."""
    handler = _make_flaky(job_run_task, 100, KeyError("account_id"))
    job_run_task.send()
    run = job_run_task.run()
    assert (run.status, run.attempts, handler.calls) == (JobStatus.FAILED, 1, 1)
    assert run.error == "KeyError: 'account_id'" and run.finished_at is not None
    assert _countdowns(caplog) == []
    # Finished: neither another delivery nor the recovery sweep runs it again.
    job_run_task.send()
    assert services.job_runs_recover(now=timezone.now() + dt.timedelta(days=1)) == 0
    assert (job_run_task.run().status, handler.calls) == (JobStatus.FAILED, 1)


@pytest.mark.django_db
def test_transient_errors_retry_with_capped_jittered_backoff(
    job_run_task: JobRunTask, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    """Property 30: transient errors are retried, each after a delay under min(cap, base * 2^n),
    and the run succeeds once the error clears."""
    caplog.set_level(logging.WARNING, logger="jobs.tasks")
    handler = _make_flaky(job_run_task, 3, OperationalError("database is locked"))
    job_run_task.send()
    run = job_run_task.run()
    assert (run.status, run.attempts, handler.calls) == (JobStatus.SUCCEEDED, 4, 4)
    delays = _countdowns(caplog)
    assert len(delays) == 3
    for attempt, delay in enumerate(delays):
        # The log rounds to milliseconds.
        assert 0 <= delay <= min(settings.JOB_RETRY_CAP_SECONDS, 0.5 * 2**attempt) + 0.0005


@pytest.mark.django_db
def test_transient_errors_fail_the_run_once_retries_run_out(job_run_task: JobRunTask) -> None:
    handler = _make_flaky(job_run_task, 100, redis.ConnectionError("Redis is down"))
    job_run_task.send()
    run = job_run_task.run()
    assert (run.status, run.attempts, handler.calls) == (JobStatus.FAILED, 4, 4)
    assert run.error == "ConnectionError: Redis is down"
