"""Property 31 (docs/properties.md#p31) for the jobs: a task run by a real worker on the real broker
moves its runs and durations (and a failing one its failures), written by the worker's process
into the metrics directory the test shares with it; the broker's queue, the outbox and the job
runs by status are read when the metrics are collected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from config.metrics import metrics_snapshot, snapshot_value
from config.redis_pools import redis_client
from jobs import services
from jobs.models import JobRun, JobStatus, OutboxEntry
from tests.jobs.workers import WorkerProcess, celery_worker, purge_broker, wait_for

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK = "jobs.job_runs_recover"


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return snapshot_value(metrics_snapshot(), name, labels) or 0.0


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[WorkerProcess]:
    purge_broker()
    with celery_worker(tmp_path, concurrency=1) as process:
        yield process


def test_a_task_run_by_the_worker_moves_the_task_series(worker: WorkerProcess) -> None:
    runs = value("job_task_runs_total", {"task": TASK, "outcome": "success"})
    durations = value("job_task_duration_seconds_count", {"task": TASK})
    services.job_enqueue(task_name=TASK)
    wait_for(
        lambda: value("job_task_runs_total", {"task": TASK, "outcome": "success"}) >= runs + 1,
        timeout=30,
        what="the worker's run counted",
        worker=worker,
    )
    assert value("job_task_duration_seconds_count", {"task": TASK}) >= durations + 1


def test_a_task_that_fails_for_good_moves_the_failures(worker: WorkerProcess) -> None:
    task = services.JOB_EXECUTE_TASK
    failures = value("job_failures_total", {"task": task})
    failed_runs = value("job_task_runs_total", {"task": task, "outcome": "failure"})
    services.job_enqueue(task_name=task, args=["not-a-job-id"])  # a permanent error: no retry
    wait_for(
        lambda: value("job_failures_total", {"task": task}) >= failures + 1,
        timeout=30,
        what="the failure counted",
        worker=worker,
    )
    assert value("job_task_runs_total", {"task": task, "outcome": "failure"}) >= failed_runs + 1


def test_the_queue_the_outbox_and_the_runs_by_status_are_read_at_collection() -> None:
    purge_broker()
    OutboxEntry.objects.create(task_name=TASK, args=[], kwargs={})
    JobRun.objects.create(name="statement", slot="x", status=JobStatus.FAILED)
    services.job_enqueue(task_name=TASK)  # no worker: it waits in the broker
    samples = metrics_snapshot()
    assert snapshot_value(samples, "job_outbox_size") == 1
    assert snapshot_value(samples, "job_runs", {"status": "failed"}) == 1
    assert snapshot_value(samples, "job_runs", {"status": "queued"}) == 0
    assert (snapshot_value(samples, "celery_queue_length") or 0) >= 1
    purge_broker()


def test_an_empty_broker_queue_reads_zero_not_an_error() -> None:
    """Redis keeps no key for an empty queue (after a purge, before any worker binds it): the
    queue's length is 0, and the monitor's broker rule and the ops page see a number."""
    purge_broker()
    redis_client().delete("_kombu.binding.celery", "celery")
    samples = metrics_snapshot()
    assert snapshot_value(samples, "celery_queue_length") == 0
    assert snapshot_value(samples, "metrics_collect_errors_total", {"source": "celery_queue_length"}) is None
