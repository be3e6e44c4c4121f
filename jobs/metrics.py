"""The jobs' series (Property 31, docs/properties.md; README "Metrics").

Per task, from Celery's signals in whichever process runs it (a worker child, or the caller when
tasks run eagerly): runs by outcome, durations, retries and failures. The task name is the label
(the registered tasks: a bounded set). Read when ``/metrics`` is collected rather than written as
they change: the broker's queue lengths, the outbox's size and the job runs by status, so they are
right even while no worker runs; each is one cheap query, and one that fails (broker or database
down) is skipped by the collector, never failing the scrape.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from celery import current_app
from celery.signals import task_failure, task_postrun, task_prerun, task_retry
from django.conf import settings
from django.db.models import Count
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from config.metrics import LATENCY_BUCKETS, Deferred, collect_time_gauge_register, metrics_enabled
from jobs.models import JobRun, JobStatus, OutboxEntry

JOB_TASK_RUNS = Counter(
    "job_task_runs_total",
    "Task executions by outcome: success, failure (will not be retried) or retry.",
    ["task", "outcome"],
    registry=None,
)
JOB_TASK_RETRIES = Counter(
    "job_retries_total", "Task executions that asked for a retry.", ["task"], registry=None
)
JOB_TASK_FAILURES = Counter(
    "job_failures_total",
    "Task executions that failed for good (no retry left).",
    ["task"],
    registry=None,
)
JOB_TASK_SECONDS = Histogram(
    "job_task_duration_seconds",
    "Time a task execution took, whatever its outcome.",
    ["task"],
    buckets=(*LATENCY_BUCKETS, 30.0, 60.0, 300.0),
    registry=None,
)
_runs = Deferred(JOB_TASK_RUNS)
_retries = Deferred(JOB_TASK_RETRIES)
_failures = Deferred(JOB_TASK_FAILURES)
_seconds = Deferred(JOB_TASK_SECONDS)

# task id -> when it started (perf_counter); entries go at postrun.
_started: dict[str, float] = {}


def _task_name(sender: Any) -> str:
    return str(getattr(sender, "name", None) or "unknown")


def _prerun(task_id: str | None = None, **kwargs: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.perf_counter()


def _postrun(sender: Any = None, task_id: str | None = None, state: str | None = None, **kwargs: Any) -> None:
    started = _started.pop(task_id, None) if task_id is not None else None
    if not metrics_enabled():
        return
    name = _task_name(sender)
    if started is not None:
        _seconds(name).observe(time.perf_counter() - started)
    outcome = {"SUCCESS": "success", "RETRY": "retry", "FAILURE": "failure"}.get(state or "", "other")
    _runs(name, outcome).inc()


def _retried(sender: Any = None, **kwargs: Any) -> None:
    if metrics_enabled():
        _retries(_task_name(sender)).inc()


def _failed(sender: Any = None, **kwargs: Any) -> None:
    if metrics_enabled():
        _failures(_task_name(sender)).inc()


# --- Collect-time gauges --------------------------------------------------------------------------------


def broker_queue_lengths() -> Iterable[Metric]:
    family = GaugeMetricFamily(
        "celery_queue_length", "Messages waiting in the broker's queue.", labels=["queue"]
    )
    app = current_app
    names = sorted(app.amqp.queues.keys()) or [app.conf.task_default_queue]
    with app.connection_for_read(settings.CELERY_BROKER_URL) as connection:
        connection.ensure_connection(max_retries=1, timeout=settings.REDIS_SOCKET_TIMEOUT)
        channel = connection.default_channel
        for name in names:
            # Not a passive declare: Redis keeps no key for an empty queue, and kombu's check for
            # one misses queues under a global key prefix, so a passive declare answers NOT_FOUND
            # for queues that hold messages. On Redis the active declare writes nothing.
            declared = channel.queue_declare(queue=name, passive=False)
            family.add_metric([name], float(declared.message_count))
    return [family]


def outbox_size() -> Iterable[Metric]:
    family = GaugeMetricFamily("job_outbox_size", "Task messages the broker refused, waiting in the outbox.")
    family.add_metric([], float(OutboxEntry.objects.count()))
    return [family]


def job_runs_by_status() -> Iterable[Metric]:
    family = GaugeMetricFamily("job_runs", "Job runs kept, by status.", labels=["status"])
    counts = dict.fromkeys(JobStatus.values, 0)
    for row in JobRun.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    for status, count in sorted(counts.items()):
        family.add_metric([status], float(count))
    return [family]


def jobs_metrics_install() -> None:
    """Connects the task signals and registers the collect-time gauges (JobsConfig.ready)."""
    task_prerun.connect(_prerun, dispatch_uid="jobs.metrics.prerun", weak=False)
    task_postrun.connect(_postrun, dispatch_uid="jobs.metrics.postrun", weak=False)
    task_retry.connect(_retried, dispatch_uid="jobs.metrics.retry", weak=False)
    task_failure.connect(_failed, dispatch_uid="jobs.metrics.failure", weak=False)
    collect_time_gauge_register("celery_queue_length", broker_queue_lengths)
    collect_time_gauge_register("job_outbox_size", outbox_size)
    collect_time_gauge_register("job_runs", job_runs_by_status)
