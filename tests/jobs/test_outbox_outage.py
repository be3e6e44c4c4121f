"""The broker stopped mid-run, with real processes: gunicorn, a Celery worker and a test-owned
Redis (cache, rate limits and broker) on its own port.

While Redis is down, requests that enqueue jobs still answer 202 (no 500): the message goes to
the outbox table. Once Redis is back, the outbox drain (the task beat sends every 30 s; sent here
by the test, as beat would) publishes the messages and the worker runs each job exactly once.
Reads and orders during the same kind of outage are covered by
tests/config/test_cache_processes.py::test_redis_outage_degrades_to_the_database_without_errors.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from analytics.models import Statement
from jobs import services
from jobs.models import JobRun, JobStatus, OutboxEntry
from tests.analytics.statement_builders import Month, account_with_activity, last_month
from tests.jobs.workers import celery_worker, wait_for
from tests.processes import ServerProcess, free_port, gunicorn_server, redis_server, redis_timeouts
from tests.trading.api_support import MakeAsset
from trading import services as trading
from trading.models import Account

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _request_statement(
    server: ServerProcess, account: Account, period: str
) -> tuple[int, dict[str, Any], float]:
    key, secret = trading.api_key_create(account_id=account.pk)
    request = urllib.request.Request(
        f"{server.base_url}/v2/statements",
        data=json.dumps({"period": period}).encode(),
        method="POST",
        headers={
            "APCA-API-KEY-ID": key.key_id,
            "APCA-API-SECRET-KEY": secret,
            "Content-Type": "application/json",
        },
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), time.monotonic() - started


def test_jobs_enqueued_while_redis_is_down_run_once_after_it_returns(
    tmp_path: Path, make_asset: MakeAsset, settings: Any
) -> None:
    make_asset("AAPL", price="100.00")
    month: Month = last_month()
    before, during = (
        account_with_activity("early", month),
        [account_with_activity(name, month) for name in ("outage1", "outage2")],
    )
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {"REDIS_URL": broker, "CELERY_BROKER_URL": broker}

    with (
        redis_server(port, tmp_path) as first_redis,
        gunicorn_server(tmp_path, extra_env=env, overrides=redis_timeouts(socket=0.5, pool=0.5)) as web,
        celery_worker(tmp_path, extra_env=env, overrides=redis_timeouts(socket=0.5, pool=0.5)) as worker,
    ):
        # Redis up: the ordinary path, straight to the broker.
        status, body, _ = _request_statement(web, before, month.period)
        assert status == 202, body
        wait_for(
            lambda: JobRun.objects.get(pk=body["job_id"]).status == JobStatus.SUCCEEDED,
            timeout=30,
            what="the statement requested before the outage",
            worker=worker,
        )
        assert not OutboxEntry.objects.exists()

        first_redis.kill()
        first_redis.wait(timeout=10)

        # Redis down: the requests still answer 202 at once; their messages wait in the outbox.
        queued = []
        for account in during:
            status, body, took = _request_statement(web, account, month.period)
            assert status == 202, (status, body, web.log()[-3000:])
            assert took < 10, took  # a bounded wait for the broker, not a hang
            queued.append(body["job_id"])
        assert sorted(OutboxEntry.objects.values_list("args", flat=True)) == sorted(
            [job_id] for job_id in queued
        )
        assert set(JobRun.objects.filter(pk__in=queued).values_list("status", flat=True)) == {
            JobStatus.QUEUED
        }
        assert Statement.objects.count() == 1

        with redis_server(port, tmp_path):
            # What beat sends every 30 s, through the restarted broker.
            settings.CELERY_BROKER_URL = broker
            services.job_enqueue(task_name="jobs.outbox_drain")
            wait_for(
                lambda: (
                    Statement.objects.filter(account__in=during).count() == 2
                    and not OutboxEntry.objects.exists()
                    and set(JobRun.objects.filter(pk__in=queued).values_list("status", flat=True))
                    == {JobStatus.SUCCEEDED}
                ),
                timeout=90,
                what="the outbox to drain and the worker to run the jobs",
                worker=worker,
            )
        # Exactly once: one claim per run, one statement per account.
        assert [run.attempts for run in JobRun.objects.filter(pk__in=queued)] == [1, 1]
        for account in (before, *during):
            assert Statement.objects.filter(account=account, period=month.period).count() == 1
        assert "Internal Server Error" not in web.log()
