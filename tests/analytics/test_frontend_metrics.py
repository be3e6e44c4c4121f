"""POST /v2/metrics/frontend: reports stored, bad input refused whole, auth and CSRF, rate limit,
retention and the read-only admin."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from analytics import services
from analytics.models import FrontendSample
from config.metrics import metrics_snapshot, snapshot_value
from config.retention import RETENTION_RULES
from jobs.retention import retention_cleanup_rule
from tests.trading.api_support import assert_alpaca_error, key_client
from trading.errors import InvalidRequest
from trading.models import Account

pytestmark = pytest.mark.django_db

MakeAccount = Callable[..., Account]
URL = "/v2/metrics/frontend"
REPORT: dict[str, Any] = {
    "page": "dashboard",
    "interval_s": 30.0,
    "renders": 290,
    "updates": 14500,
    "render_ms_p50": 0.8,
    "render_ms_p95": 2.1,
    "render_ms_max": 7.9,
    "long_tasks": 1,
    "long_task_ms": 63.0,
    "frames": 1790,
    "dropped_frames": 4,
    "js_heap_bytes": 12345678,
    "dom_nodes": 2100,
}
FIGURES = [name for name in REPORT if name != "page"]


def _page_client(account: Account) -> tuple[APIClient, str]:
    """A browser-like session: CSRF enforced, the token read from the cookie the page set."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(account.user)
    page = client.get("/")
    assert page.status_code == 200
    return client, page.cookies["csrftoken"].value


def test_a_report_is_stored(make_account: MakeAccount) -> None:
    account = make_account()
    client, token = _page_client(account)

    response = client.post(
        URL,
        {**REPORT, "unknown": "ignored", "extra": [1, 2]},
        format="json",
        HTTP_X_CSRFTOKEN=token,
        HTTP_USER_AGENT="Mozilla/5.0 (X11) Chrome/130",
    )

    assert response.status_code == 204 and response.content == b""
    sample = FrontendSample.objects.get()
    assert sample.user_id == account.user.pk and sample.page == "dashboard"
    assert {name: getattr(sample, name) for name in FIGURES} == {name: REPORT[name] for name in FIGURES}
    assert sample.user_agent == "Mozilla/5.0 (X11) Chrome/130"
    assert abs((timezone.now() - sample.received_at).total_seconds()) < 60


def test_browsers_without_a_heap_figure_send_null(make_account: MakeAccount) -> None:
    client = key_client(make_account())

    response = client.post(URL, {**REPORT, "js_heap_bytes": None}, format="json")

    assert response.status_code == 204
    assert FrontendSample.objects.get().js_heap_bytes is None


@pytest.mark.parametrize("name", FIGURES)
@pytest.mark.parametrize("change", ["missing", "negative", "text"])
def test_a_missing_or_negative_figure_is_422_and_nothing_is_stored(
    make_account: MakeAccount, name: str, change: str
) -> None:
    client = key_client(make_account())
    body = dict(REPORT)
    if change == "missing":
        del body[name]
    elif change == "negative":
        body[name] = -1
    else:
        body[name] = "fast"

    response = client.post(URL, body, format="json")

    message = assert_alpaca_error(response, 422)["message"]
    assert name in message
    assert not FrontendSample.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        [REPORT],
        {**REPORT, "page": ""},
        {**REPORT, "page": "x" * 33},
        {**REPORT, "renders": 1.5},
        {**REPORT, "renders": 2**60},
    ],
    ids=["not-an-object", "empty-page", "long-page", "fractional-count", "huge-count"],
)
def test_malformed_reports_are_422(make_account: MakeAccount, body: Any) -> None:
    response = key_client(make_account()).post(URL, body, format="json")

    assert_alpaca_error(response, 422)
    assert not FrontendSample.objects.exists()


def test_the_service_refuses_what_the_endpoint_would(make_account: MakeAccount) -> None:
    figures = {name: REPORT[name] for name in FIGURES}
    with pytest.raises(InvalidRequest):
        services.frontend_sample_record(
            user_id=None, page="dashboard", figures=services.FrontendFigures(**{**figures, "frames": -3})
        )
    with pytest.raises(InvalidRequest):
        services.frontend_sample_record(
            user_id=None,
            page="dashboard",
            figures=services.FrontendFigures(**{**figures, "render_ms_p95": float("nan")}),
        )
    assert not FrontendSample.objects.exists()


def test_anonymous_reports_are_refused() -> None:
    response = APIClient().post(URL, REPORT, format="json")

    assert_alpaca_error(response, 401)
    assert not FrontendSample.objects.exists()


def test_session_reports_need_the_csrf_header(make_account: MakeAccount) -> None:
    client, token = _page_client(make_account())

    refused = client.post(URL, REPORT, format="json")
    wrong = client.post(URL, REPORT, format="json", HTTP_X_CSRFTOKEN="x" * 64)

    for response in (refused, wrong):
        assert "CSRF" in assert_alpaca_error(response, 403)["message"]
    assert not FrontendSample.objects.exists()
    assert client.post(URL, REPORT, format="json", HTTP_X_CSRFTOKEN=token).status_code == 204


def test_reports_are_rate_limited_like_other_writes(
    make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "write": "2/min"}
    client = key_client(make_account())

    statuses = [client.post(URL, REPORT, format="json") for _ in range(3)]

    assert [response.status_code for response in statuses] == [204, 204, 429]
    assert_alpaca_error(statuses[-1], 429)
    assert 1 <= int(statuses[-1]["Retry-After"]) <= 60
    assert FrontendSample.objects.count() == 2


def test_samples_are_kept_as_long_as_monitoring_samples(
    make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    settings.MONITORING_SAMPLE_RETENTION_DAYS = 14
    now = timezone.now()
    figures = services.FrontendFigures(**{name: REPORT[name] for name in FIGURES})
    for age_days in (20, 15, 13, 1):
        services.frontend_sample_record(
            user_id=None, page="dashboard", figures=figures, now=now - dt.timedelta(days=age_days)
        )

    deleted = retention_cleanup_rule(rule=RETENTION_RULES["frontend samples"], now=now, batch_size=1)

    assert deleted == 2
    kept = sorted((now - sample.received_at).days for sample in FrontendSample.objects.all())
    assert kept == [1, 13]


def test_staff_read_samples_in_the_admin_and_cannot_edit_them(
    make_account: MakeAccount, client: Client
) -> None:
    account = make_account()
    services.frontend_sample_record(
        user_id=account.user.pk,
        page="dashboard",
        figures=services.FrontendFigures(**{name: REPORT[name] for name in FIGURES}),
    )
    sample = FrontendSample.objects.get()
    staff = get_user_model().objects.create_superuser(
        username="boss", email="boss@example.com", password=None
    )
    client.force_login(staff)

    listing = client.get("/admin/analytics/frontendsample/")
    detail = client.get(f"/admin/analytics/frontendsample/{sample.pk}/change/")

    assert listing.status_code == 200 and "dashboard" in listing.content.decode()
    assert detail.status_code == 200 and 'name="render_ms_p95"' not in detail.content.decode()
    assert client.get("/admin/analytics/frontendsample/add/").status_code == 403


# --- Property 31 (docs/properties.md#p31): the reports move the browser series ---------------------


def test_a_report_keeps_its_renderer_and_moves_the_browser_series(make_account: MakeAccount) -> None:
    labels = {"page": "dashboard", "renderer": "naive"}

    def value(name: str) -> float:
        return snapshot_value(metrics_snapshot(), name, labels) or 0.0

    names = [
        "frontend_reports_total",
        "frontend_renders_total",
        "frontend_dropped_frames_total",
        "frontend_long_task_seconds_total",
        "frontend_render_p95_seconds_count",
        "frontend_js_heap_bytes_count",
    ]
    before = {name: value(name) for name in names}
    response = key_client(make_account()).post(URL, {**REPORT, "renderer": "naive"}, format="json")
    assert response.status_code == 204
    assert FrontendSample.objects.get().renderer == "naive"
    moved = {name: value(name) - before[name] for name in names}
    assert moved == {
        "frontend_reports_total": 1.0,
        "frontend_renders_total": 290.0,
        "frontend_dropped_frames_total": 4.0,
        "frontend_long_task_seconds_total": pytest.approx(0.063),
        "frontend_render_p95_seconds_count": 1.0,
        "frontend_js_heap_bytes_count": 1.0,
    }
    # p95 2.1 ms: between the 2 ms and 3 ms bounds.
    samples = metrics_snapshot()
    at = {
        bound: snapshot_value(samples, "frontend_render_p95_seconds_bucket", {**labels, "le": bound}) or 0.0
        for bound in ("0.002", "0.003")
    }
    assert at["0.003"] - at["0.002"] >= 1


def test_a_page_or_renderer_the_server_does_not_serve_is_labelled_other(make_account: MakeAccount) -> None:
    before = snapshot_value(
        metrics_snapshot(), "frontend_reports_total", {"page": "other", "renderer": "other"}
    )
    response = key_client(make_account()).post(
        URL, {**REPORT, "page": "x" * 20, "renderer": "webgl"}, format="json"
    )
    assert response.status_code == 204
    after = snapshot_value(
        metrics_snapshot(), "frontend_reports_total", {"page": "other", "renderer": "other"}
    )
    assert (after or 0.0) - (before or 0.0) == 1.0
