"""Statement jobs in-process: exactly-once job runs (claims, leases, takeover), the beat fan-out,
the outbox, and the API's answers including bad input (Properties 10, 27, 35).

Worker processes are exercised in test_worker.py; here the services run directly. The figures and
the PDF are analytics' (tests/analytics/test_statements.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from analytics.models import Statement
from jobs import services
from jobs.models import JobRun, JobStatus, OutboxEntry
from tests.analytics.statement_builders import Month, account_with_activity, daily_close, last_month
from tests.clock import frozen_at, new_york
from tests.trading.api_support import MakeAsset, assert_alpaca_error, key_client
from trading.models import Account

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(make_asset: MakeAsset, settings: Any) -> Month:
    settings.COMMISSION_PER_ORDER_CENTS = 100
    make_asset("AAPL", price="100.00")
    month = last_month()
    daily_close("AAPL", month.end - dt.timedelta(days=1), "105.00")
    return month


@pytest.fixture
def trader(month: Month) -> Account:
    return account_with_activity("alice", month)


def _execute(job: JobRun) -> dict[str, Any] | None:
    return services.job_execute(job_id=job.pk)


def test_statement_produced_once_however_often_executed(trader: Account, month: Month) -> None:
    job = services.statement_request(account_id=trader.pk, period=month.period)
    assert job.status == JobStatus.QUEUED

    first = _execute(job)
    assert _execute(job) is None and _execute(job) is None

    statement = Statement.objects.get(account=trader, period=month.period)
    assert first == {"statement_id": str(statement.pk)}
    job.refresh_from_db()
    assert (job.status, job.attempts, job.result) == (JobStatus.SUCCEEDED, 1, first)
    assert statement.pdf.read().startswith(b"%PDF-")
    assert statement.trade_count == 2 and statement.commissions_cents == 200
    # Asking again answers the same finished run.
    assert services.statement_request(account_id=trader.pk, period=month.period).pk == job.pk


def test_domain_uniqueness_backs_the_job_run(trader: Account, month: Month) -> None:
    """Even a second run for the same (account, period), e.g. after a run row was deleted,
    finds the existing statement instead of making another."""
    job = services.statement_request(account_id=trader.pk, period=month.period)
    _execute(job)
    original = Statement.objects.get()
    job.delete()
    again = services.statement_request(account_id=trader.pk, period=month.period)
    assert _execute(again) == {"statement_id": str(original.pk)}
    assert Statement.objects.count() == 1


# --- Claims and leases ---------------------------------------------------------------------------


def test_live_claim_is_busy_and_expired_claim_is_taken_over(settings: Any) -> None:
    settings.JOB_LEASE_SECONDS = 60
    job, _ = services.job_run_ensure(name="noop", slot="x")
    t0 = timezone.now()
    claim = services.job_claim(job_id=job.pk, now=t0)
    assert claim is not None
    _, first_token = claim

    with pytest.raises(services.JobBusy) as busy:
        services.job_claim(job_id=job.pk, now=t0 + dt.timedelta(seconds=10))
    assert 49 < busy.value.retry_in <= 51

    later = services.job_claim(job_id=job.pk, now=t0 + dt.timedelta(seconds=61))
    assert later is not None and later[1] != first_token
    job.refresh_from_db()
    assert (job.status, job.attempts) == (JobStatus.RUNNING, 2)


def test_unknown_and_finished_runs_are_not_claimed() -> None:
    assert services.job_claim(job_id=uuid.uuid4()) is None
    job, _ = services.job_run_ensure(name="noop", slot="y")
    JobRun.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED)
    assert services.job_claim(job_id=job.pk) is None


def test_effect_dropped_when_the_claim_was_taken_over(settings: Any) -> None:
    """A worker that outlived its lease must not commit: the taker-over produces the effect."""
    settings.JOB_LEASE_SECONDS = 1
    committed: list[uuid.UUID] = []

    def commit(job: JobRun, prepared: None, token: uuid.UUID) -> dict[str, Any]:
        committed.append(token)
        return {}

    def slow_prepare(job: JobRun) -> None:
        # Meanwhile the lease expired and another worker claimed the run.
        services.job_claim(job_id=job.pk, now=timezone.now() + dt.timedelta(seconds=5))

    services.JOB_HANDLERS["takeover"] = services.JobHandler(prepare=slow_prepare, commit=commit)
    try:
        job, _ = services.job_run_ensure(name="takeover", slot="z")
        assert _execute(job) is None
    finally:
        services.JOB_HANDLERS.pop("takeover")
    job.refresh_from_db()
    assert committed == [] and job.status == JobStatus.RUNNING and job.attempts == 2


def test_recover_resends_lost_runs(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    settings.JOB_LEASE_SECONDS = 60
    services.job_run_ensure(name="noop", slot="fresh")
    lost, _ = services.job_run_ensure(name="noop", slot="lost")
    JobRun.objects.filter(pk=lost.pk).update(created_at=timezone.now() - dt.timedelta(minutes=5))
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens: sends go to the outbox
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_runs_recover() == 1
    assert list(OutboxEntry.objects.values_list("args", flat=True)) == [[str(lost.pk)]]


# --- Beat fan-out ---------------------------------------------------------------------------------


def test_monthly_fan_out_once_per_period(month: Month) -> None:
    accounts = [account_with_activity(name, month) for name in ("ann", "bob")]
    # An account opened after the month has nothing to report for it.
    later = account_with_activity("cid", month)
    Account.objects.filter(pk=later.pk).update(created_at=month.end + dt.timedelta(hours=2))

    # Two beat processes (or one firing hourly on the 1st): the fan-out happens once.
    assert services.statements_monthly(period=month.period) == {"enqueued": 2}
    assert services.statements_monthly(period=month.period) is None
    runs = JobRun.objects.filter(name=services.STATEMENT_JOB)
    assert sorted(runs.values_list("account_id", flat=True)) == sorted(a.pk for a in accounts)
    for run in runs:
        _execute(run)
        _execute(run)
    assert list(Statement.objects.values("account").annotate(n=Count("id")).values_list("n", flat=True)) == [
        1,
        1,
    ]


# --- Outbox -------------------------------------------------------------------------------------


def test_unreachable_broker_fills_outbox_and_drain_publishes(
    trader: Account, month: Month, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    reachable = settings.CELERY_BROKER_URL
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with django_capture_on_commit_callbacks(execute=True):
        job = services.statement_request(account_id=trader.pk, period=month.period)
    entry = OutboxEntry.objects.get()
    assert (entry.task_name, entry.args) == (services.JOB_EXECUTE_TASK, [str(job.pk)])
    assert entry.last_error
    assert services.outbox_drain() == 0  # still down: kept, attempt counted
    entry.refresh_from_db()
    assert entry.attempts == 2

    settings.CELERY_BROKER_URL = reachable
    try:
        assert services.outbox_drain() == 1
        assert not OutboxEntry.objects.exists()
    finally:
        from config.celery import app

        app.control.purge()  # no worker here; leave the queue as found


# --- API -------------------------------------------------------------------------------------------


def test_request_answers_202_with_a_pollable_job(trader: Account, month: Month) -> None:
    client = key_client(trader)
    response = client.post("/v2/statements", {"period": month.period}, format="json")
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["statement_id"] is None
    assert body["status_url"].endswith(f"/v2/jobs/{body['job_id']}")
    assert (
        client.post("/v2/statements", {"period": month.period}, format="json").json()["job_id"]
        == body["job_id"]
    )

    services.job_execute(job_id=body["job_id"])
    polled = client.get(f"/v2/jobs/{body['job_id']}").json()
    assert polled["status"] == "succeeded" and polled["attempts"] == 1 and polled["error"] is None
    listed = client.get("/v2/statements").json()
    assert [item["id"] for item in listed] == [polled["statement_id"]]
    assert listed[0]["period"] == month.period and listed[0]["trade_count"] == 2
    download = client.get(f"/v2/statements/{polled['statement_id']}/pdf", HTTP_ACCEPT="application/pdf")
    assert download.status_code == 200 and download["Content-Type"] == "application/pdf"
    assert b"".join(getattr(download, "streaming_content")).startswith(b"%PDF-")  # noqa: B009 (untyped in the stubs)


@pytest.mark.parametrize(
    "body",
    [{"period": "2026-13"}, {"period": "2026-1"}, {"period": "nope"}, {"period": ""}, {}, {"period": None}],
)
def test_invalid_periods_422(trader: Account, body: dict[str, Any]) -> None:
    assert_alpaca_error(key_client(trader).post("/v2/statements", body, format="json"), 422)
    assert not JobRun.objects.exists()


def test_unfinished_and_future_periods_422(trader: Account) -> None:
    client = key_client(trader)
    now = timezone.now()
    for period in (f"{now:%Y-%m}", f"{now.year + 1}-01"):
        message = assert_alpaca_error(client.post("/v2/statements", {"period": period}, format="json"), 422)
        assert "has not ended" in message["message"]


@pytest.mark.parametrize(
    ("now", "status"),
    [
        # April's last second in New York is already May in UTC: April has not ended yet.
        frozen_at(new_york(2026, 4, 30, 23, 59, 59), 422, name="before-new-york-midnight"),
        frozen_at(new_york(2026, 5, 1, 0, 0, 1), 202, name="after-new-york-midnight"),
    ],
)
def test_a_month_may_be_requested_from_new_york_midnight_after_it(
    now: dt.datetime, status: int, make_account: Any
) -> None:
    response = key_client(make_account()).post("/v2/statements", {"period": "2026-04"}, format="json")
    assert response.status_code == status, response.content


def test_other_users_jobs_and_statements_are_not_found(
    trader: Account, month: Month, make_account: Any
) -> None:
    job = services.statement_request(account_id=trader.pk, period=month.period)
    services.job_execute(job_id=job.pk)
    statement = Statement.objects.get()
    mallory = key_client(make_account(username="mallory"))

    assert_alpaca_error(mallory.get(f"/v2/jobs/{job.pk}"), 404)
    assert_alpaca_error(mallory.get(f"/v2/statements/{statement.pk}/pdf"), 404)
    assert mallory.get("/v2/statements").json() == []
    assert_alpaca_error(mallory.get(f"/v2/jobs/{uuid.uuid4()}"), 404)
    assert_alpaca_error(mallory.get("/v2/jobs/not-a-uuid"), 404)
    assert_alpaca_error(mallory.get("/v2/statements/12345/pdf"), 404)


def test_staff_may_fetch_any_statement(trader: Account, month: Month, make_account: Any) -> None:
    job = services.statement_request(account_id=trader.pk, period=month.period)
    services.job_execute(job_id=job.pk)
    staff_account = make_account(username="operator")
    get_user_model().objects.filter(pk=staff_account.user_id).update(is_staff=True)
    staff = key_client(staff_account)
    assert staff.get(f"/v2/jobs/{job.pk}").status_code == 200
    assert staff.get(f"/v2/statements/{Statement.objects.get().pk}/pdf").status_code == 200


def test_anonymous_refused(client: Any) -> None:
    assert_alpaca_error(
        client.post("/v2/statements", {"period": "2020-01"}, content_type="application/json"), 401
    )
    assert_alpaca_error(client.get(f"/v2/jobs/{uuid.uuid4()}"), 401)


def test_outbox_drain_command(settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    with django_capture_on_commit_callbacks(execute=True):
        services.job_enqueue(task_name=services.JOB_EXECUTE_TASK, args=[str(uuid.uuid4())])
    out = StringIO()
    call_command("outbox_drain", stdout=out)
    assert "1 message(s) in the outbox" in out.getvalue() and "published 0; 1 left" in out.getvalue()


def test_failed_runs_visible_in_admin(admin_client: Any) -> None:
    job, _ = services.job_run_ensure(name="statement", slot="acct:2020-01")
    services.job_fail(job_id=job.pk, error="NotFound: account not found")
    page = admin_client.get("/admin/jobs/jobrun/?status__exact=failed")
    assert page.status_code == 200
    assert b"NotFound: account not found" in page.content and b"acct:2020-01" in page.content
    detail = admin_client.get(f"/admin/jobs/jobrun/{job.pk}/change/")
    assert detail.status_code == 200 and b"NotFound: account not found" in detail.content
