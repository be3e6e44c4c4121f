"""Property 30 through a real worker: a permanent error in a task that creates its own job run (the
beat's statement fan-out, the hourly cleanup) fails that run at once, with the error in the admin,
and nothing retries or re-sends it.

The errors are real ones: a fan-out for a month that has not ended (an operator's typo), and a
retention setting so large that the cutoff cannot be computed (OverflowError), given to the worker
through its environment.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs import services
from jobs.models import JobRun, JobStatus
from tests.jobs.workers import WorkerProcess, celery_worker, purge_broker, wait_for

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# timedelta(hours=10**12) is past timedelta's range: every cleanup fails the same way.
UNUSABLE_RETENTION_ENV = {"TICK_RETENTION_HOURS": str(10**12)}


@pytest.fixture(scope="module")
def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    purge_broker()
    with celery_worker(tmp_path_factory.mktemp("failures"), extra_env=UNUSABLE_RETENTION_ENV) as process:
        yield process


def _deliveries(worker: WorkerProcess, task: str, since: int, outcome: str) -> int:
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] {outcome}", worker.log()[since:]))


def _assert_failed_once(worker: WorkerProcess, run: JobRun, task: str, since: int, error: str) -> None:
    assert (run.status, run.attempts) == (JobStatus.FAILED, 1), run.error
    assert error in run.error and run.finished_at is not None
    assert _deliveries(worker, task, since, "retry") == 0, worker.log()[since:]
    # Not queued again: the recovery sweep only re-sends queued or stranded running runs.
    assert services.job_runs_recover(now=timezone.now() + dt.timedelta(days=1)) == 0


def _admin_lists_error(run: JobRun, text: str) -> None:
    staff = get_user_model().objects.create_superuser(f"ops-{run.pk.hex[:6]}", "ops@example.com", None)
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("admin:jobs_jobrun_changelist"), {"status__exact": "failed"})
    assert page.status_code == 200 and text in page.content.decode()


def test_fan_out_for_an_unfinished_month_fails_its_run(worker: WorkerProcess) -> None:
    period = f"{timezone.now().year + 1}-01"
    since = len(worker.log())
    services.job_enqueue(task_name=services.STATEMENTS_MONTHLY_TASK, kwargs={"period": period})

    wait_for(
        lambda: JobRun.objects.filter(
            name=services.STATEMENTS_MONTHLY_JOB, slot=period, status="failed"
        ).exists(),
        timeout=30,
        what="the fan-out to fail",
        worker=worker,
    )
    wait_for(
        lambda: _deliveries(worker, services.STATEMENTS_MONTHLY_TASK, since, "raised unexpected") == 1,
        timeout=10,
        what="the worker to report the failure",
        worker=worker,
    )
    run = JobRun.objects.get(name=services.STATEMENTS_MONTHLY_JOB, slot=period)
    _assert_failed_once(worker, run, services.STATEMENTS_MONTHLY_TASK, since, "has not ended yet")
    _admin_lists_error(run, "has not ended yet")

    # A second beat process's copy finds the run finished and does nothing.
    services.job_enqueue(task_name=services.STATEMENTS_MONTHLY_TASK, kwargs={"period": period})
    wait_for(
        lambda: _deliveries(worker, services.STATEMENTS_MONTHLY_TASK, since, "succeeded") == 1,
        timeout=30,
        what="the duplicate delivery",
        worker=worker,
    )
    assert JobRun.objects.get(pk=run.pk).attempts == 1


def test_hourly_cleanup_with_an_unusable_retention_fails_its_run(worker: WorkerProcess) -> None:
    since = len(worker.log())
    services.job_enqueue(task_name="jobs.retention_cleanup")

    wait_for(
        lambda: JobRun.objects.filter(name=services.RETENTION_JOB, status="failed").exists(),
        timeout=30,
        what="the cleanup to fail",
        worker=worker,
    )
    wait_for(
        lambda: _deliveries(worker, "jobs.retention_cleanup", since, "raised unexpected") == 1,
        timeout=10,
        what="the worker to report the failure",
        worker=worker,
    )
    run = JobRun.objects.get(name=services.RETENTION_JOB)
    _assert_failed_once(worker, run, "jobs.retention_cleanup", since, "OverflowError")
    _admin_lists_error(run, "OverflowError")
