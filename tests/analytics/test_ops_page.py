"""The ops page and its data endpoint: staff only, the stored samples of each range, alerts and
slow queries (the browser side is tests/e2e/test_ops_browser.py, Property 33)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from analytics.models import Alert, AlertRule, MonitorSample
from config.db_metrics import slow_queries_key, slow_query_record
from config.redis_pools import redis_client

pytestmark = pytest.mark.django_db


def client_for(*, staff: bool) -> Client:
    user = get_user_model().objects.create_user(username=f"u{staff}", password="x", is_staff=staff)
    client = Client()
    client.force_login(user)
    return client


def initial_data(html: str) -> dict[str, Any]:
    start = html.index('<script id="ops-initial" type="application/json">') + len(
        '<script id="ops-initial" type="application/json">'
    )
    return json.loads(html[start : html.index("</script>", start)])


def test_only_staff_see_the_page_and_its_data() -> None:
    anonymous = Client()
    assert anonymous.get("/ops/").status_code == 302
    assert anonymous.get("/ops/data").status_code == 401
    trader = client_for(staff=False)
    assert trader.get("/ops/").status_code == 403
    assert trader.get("/ops/data").status_code == 403
    assert "Ops" not in trader.get("/login").content.decode().split("</nav>")[0]
    staff = client_for(staff=True)
    page = staff.get("/ops/")
    assert page.status_code == 200
    assert '<a href="/ops/">Ops</a>' in page.content.decode()
    assert 'href="/ops/">Ops page</a>' in staff.get("/admin/").content.decode()


def test_the_page_carries_its_first_data_and_each_range_reads_its_tier(settings: Settings) -> None:
    now = timezone.now().replace(microsecond=0)
    for tier, ages in {10: [30, 600, 4000], 60: [120, 80000, 90000], 600: [1200, 500000, 700000]}.items():
        for age in ages:
            MonitorSample.objects.create(
                tier_seconds=tier, at=now - dt.timedelta(seconds=age), values={"api.p99_ms": float(tier)}
            )
    Alert.objects.create(rule_name="Open one", severity="critical", summary="s", threshold=1, clear_threshold=0,
                         opened_at=now, opened_value=2, peak_value=3, last_value=2)  # fmt: skip
    staff = client_for(staff=True)
    data = initial_data(staff.get("/ops/").content.decode())
    assert {group["id"] for group in data["groups"]} == {
        "api", "database", "cache", "websockets", "market", "jobs", "processes", "frontend",
    }  # fmt: skip
    assert data["data"]["range"] == "1h" and len(data["data"]["points"]) == 2
    assert data["data"]["latest"]["values"] == {"api.p99_ms": 10.0}
    assert [alert["rule"] for alert in data["data"]["alerts"]["open"]] == ["Open one"]
    assert len(staff.get("/ops/data?range=24h").json()["points"]) == 2
    week = staff.get("/ops/data?range=7d").json()
    assert len(week["points"]) == 2 and week["tier_seconds"] == 600
    newest = staff.get(f"/ops/data?range=1h&since={int((now - dt.timedelta(seconds=60)).timestamp())}").json()
    assert len(newest["points"]) == 1
    assert staff.get("/ops/data?range=1y").status_code == 400
    assert staff.get("/ops/data?since=soon").status_code == 400


def test_slow_queries_are_grouped_by_statement(settings: Settings) -> None:
    redis_client().delete(slow_queries_key())
    for ms in (250.0, 900.0):
        slow_query_record(shape="SELECT ? FROM trading_order WHERE id = ?", ms=ms, route="orders")
    slow_query_record(shape="UPDATE trading_account SET cash = ?", ms=300.0, route="-")
    rows = client_for(staff=True).get("/ops/data").json()["slow_queries"]
    assert [(row["sql"], row["count"], row["max_ms"], row["mean_ms"]) for row in rows] == [
        ("SELECT ? FROM trading_order WHERE id = ?", 2, 900.0, 575.0),
        ("UPDATE trading_account SET cash = ?", 1, 300.0, 300.0),
    ]


def test_rules_are_edited_in_the_admin_with_their_checks_and_alerts_are_read_only() -> None:
    admin = get_user_model().objects.create_superuser(username="root", password="x", email="root@example.com")
    client = Client()
    client.force_login(admin)
    assert client.get("/admin/analytics/alertrule/").status_code == 200
    assert client.get("/admin/analytics/alertrule/add/").status_code == 200
    form = {
        "name": "Too many orders",
        "description": "",
        "enabled": "on",
        "severity": "warning",
        "metric": "http_requests_total",
        "labels": '{"route": "orders"}',
        "kind": "rate",
        "aggregation": "sum",
        "group_by": "",
        "denominator_metric": "",
        "quantile": "0.99",
        "window_seconds": "60",
        "comparison": "gt",
        "threshold": "100",
        "clear_threshold": "150",
        "for_seconds": "30",
    }
    refused = client.post("/admin/analytics/alertrule/add/", form)
    assert refused.status_code == 200 and "it must clear at or below it" in refused.content.decode()
    accepted = client.post("/admin/analytics/alertrule/add/", {**form, "clear_threshold": "80"})
    assert accepted.status_code == 302
    assert AlertRule.objects.get(name="Too many orders").labels == {"route": "orders"}
    alert = Alert.objects.create(rule_name="r", severity="info", summary="s", threshold=1, clear_threshold=0,
                                 opened_at=timezone.now(), opened_value=2, peak_value=2, last_value=2)  # fmt: skip
    assert client.get("/admin/analytics/alert/").status_code == 200
    assert client.get("/admin/analytics/alert/add/").status_code == 403
    page = client.get(f"/admin/analytics/alert/{alert.pk}/change/")
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
