"""Property 35 through a crash: a worker SIGKILLed mid-job, with the message taken and never
acknowledged, on the real broker with its visibility timeout shortened for the test. After a
new worker starts, exactly one statement exists by a deadline (not merely at most one)."""

from __future__ import annotations

import pytest

from analytics.models import Statement
from jobs import services
from jobs.models import JobRun, JobStatus
from tests.analytics.statement_builders import account_with_activity, last_month
from tests.jobs.workers import celery_worker, purge_broker, wait_for
from tests.trading.api_support import MakeAsset

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_worker_killed_mid_job_statement_made_once_after_restart(tmp_path, make_asset: MakeAsset) -> None:
    make_asset("AAPL", price="100.00")
    month = last_month()
    account = account_with_activity("kim", month)
    purge_broker()

    # This worker claims the run, then blocks in the statement job (test hook) until killed.
    with celery_worker(tmp_path, overrides={"JOB_TEST_STATEMENT_HOLD_SECONDS": 60}, concurrency=1) as doomed:
        job = services.statement_request(account_id=account.pk, period=month.period)
        wait_for(
            lambda: JobRun.objects.get(pk=job.pk).status == JobStatus.RUNNING,
            timeout=30,
            what="the first worker to claim the run",
            worker=doomed,
        )
        doomed.kill()
    assert not Statement.objects.exists()
    assert JobRun.objects.get(pk=job.pk).status == JobStatus.RUNNING  # claimed, never finished

    # The broker gives the unacknowledged message to the new worker once the visibility timeout
    # has passed; the run is claimed again once the dead worker's lease has expired.
    with celery_worker(tmp_path) as survivor:
        wait_for(
            lambda: Statement.objects.filter(account=account, period=month.period).exists(),
            timeout=45,
            what="the redelivered job",
            worker=survivor,
        )
        run = JobRun.objects.get(pk=job.pk)
        assert run.status == JobStatus.SUCCEEDED and run.attempts == 2
    assert Statement.objects.filter(account=account).count() == 1
