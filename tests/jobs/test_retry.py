"""Property 30: retries back off exponentially, capped and jittered, up to a maximum; permanent
errors are not retried. The timing is a pure function; the policy is exercised through Celery's
own eager execution of the real task class, with failures recorded on the job run."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.db import OperationalError
from hypothesis import given, strategies as st

from jobs import services
from jobs.models import JobRun, JobStatus
from jobs.retry import is_transient, retry_cap, retry_delay, should_retry
from jobs.tasks import job_execute_task

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
