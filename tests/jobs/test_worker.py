"""Real worker processes on the real broker (Properties 10, 27, 35).

One worker for the module: its statement jobs hold for a second after claiming (a test hook), so
"202 before the PDF exists" does not depend on who is faster, and duplicate deliveries overlap a
running claim. Deliveries are counted from the worker's log (each ends "succeeded" or "retry"),
so a test ends when every copy was processed, not after a guessed sleep.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models import Count

from analytics.models import Statement
from jobs import services
from jobs.models import JobRun, JobStatus
from tests.analytics.statement_builders import Month, account_with_activity, last_month
from tests.jobs.workers import WorkerProcess, celery_worker, purge_broker, wait_for
from tests.trading.api_support import MakeAsset, key_client

pytestmark = [pytest.mark.live, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def worker(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    purge_broker()
    with celery_worker(
        tmp_path_factory.mktemp("workers"), overrides={"JOB_TEST_STATEMENT_HOLD_SECONDS": 1}
    ) as process:
        yield process


@pytest.fixture
def month(make_asset: MakeAsset) -> Month:
    make_asset("AAPL", price="100.00")
    return last_month()


def _finished_deliveries(worker: WorkerProcess, task: str, since: int) -> int:
    """Copies of ``task`` the worker has finished (succeeded or handed to a retry) since ``since``."""
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] (?:succeeded|retry)", worker.log()[since:]))


def _pdf_files(account_id: object) -> list[Path]:
    from django.conf import settings

    folder = Path(settings.MEDIA_ROOT) / "statements" / str(account_id)
    return sorted(folder.glob("*.pdf")) if folder.exists() else []


def test_statement_requested_over_http_is_made_by_the_worker(worker: WorkerProcess, month: Month) -> None:
    """Property 10 and 27: 202 at once with a job id; the worker runs it; status and PDF follow."""
    account = account_with_activity("pat", month)
    client = key_client(account)

    response = client.post("/v2/statements", {"period": month.period}, format="json")

    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "queued"
    assert not Statement.objects.exists()  # the work is the worker's, not the request's
    wait_for(
        lambda: client.get(f"/v2/jobs/{job['job_id']}").json()["status"] == "succeeded",
        timeout=30,
        what="the statement job",
        worker=worker,
    )
    done = client.get(f"/v2/jobs/{job['job_id']}").json()
    assert done["attempts"] == 1 and done["error"] is None and done["statement_id"]
    download = client.get(f"/v2/statements/{done['statement_id']}/pdf")
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert b"".join(getattr(download, "streaming_content")).startswith(b"%PDF-")  # noqa: B009 (untyped in the stubs)


def test_same_job_delivered_three_times_makes_one_statement(worker: WorkerProcess, month: Month) -> None:
    """Property 35: duplicate deliveries (at-least-once brokers do this) take effect once."""
    account = account_with_activity("dup", month)
    since = len(worker.log())
    job = services.statement_request(account_id=account.pk, period=month.period)  # delivery 1
    for _ in range(2):
        services.job_enqueue(task_name=services.JOB_EXECUTE_TASK, args=[str(job.pk)])

    wait_for(
        lambda: (
            _finished_deliveries(worker, services.JOB_EXECUTE_TASK, since) >= 3
            and JobRun.objects.get(pk=job.pk).status == JobStatus.SUCCEEDED
        ),
        timeout=40,
        what="three deliveries",
        worker=worker,
    )
    # A copy that met the live claim was retried; let those retries finish as well.
    retries = len(re.findall(r"Task jobs\.job_execute\[[^\]]+\] retry", worker.log()[since:]))
    wait_for(
        lambda: _finished_deliveries(worker, services.JOB_EXECUTE_TASK, since) >= 3 + retries,
        timeout=40,
        what="retried deliveries",
        worker=worker,
    )
    assert Statement.objects.filter(account=account).count() == 1
    assert len(_pdf_files(account.pk)) == 1
    assert JobRun.objects.get(pk=job.pk).attempts == 1


def test_two_beat_processes_fan_out_once(worker: WorkerProcess, month: Month) -> None:
    """Property 35: two beats sending the monthly job for the same slot: one statement each."""
    accounts = [account_with_activity(name, month) for name in ("bea", "ben")]
    since = len(worker.log())
    sends = [
        threading.Thread(
            target=services.job_enqueue,
            kwargs={"task_name": services.STATEMENTS_MONTHLY_TASK, "kwargs": {"period": month.period}},
        )
        for _ in range(2)
    ]
    for send in sends:
        send.start()
    for send in sends:
        send.join()

    wait_for(
        lambda: (
            _finished_deliveries(worker, services.STATEMENTS_MONTHLY_TASK, since) >= 2
            and Statement.objects.count() == 2
        ),
        timeout=40,
        what="both fan-outs and both statements",
        worker=worker,
    )
    assert sorted(Statement.objects.values_list("account_id", flat=True)) == sorted(a.pk for a in accounts)
    assert set(Statement.objects.values("account").annotate(n=Count("id")).values_list("n", flat=True)) == {1}
    fan_out = JobRun.objects.get(name=services.STATEMENTS_MONTHLY_JOB, slot=month.period)
    assert fan_out.status == JobStatus.SUCCEEDED and fan_out.result == {"enqueued": 2}
