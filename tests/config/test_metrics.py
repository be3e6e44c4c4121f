"""/metrics and config's metrics (config/metrics.py, http_metrics.py, db_metrics.py, metrics_endpoint.py):
who may read it, that it parses, and that the HTTP and database series move when a request runs
(Property 31, docs/properties.md#p31; the processes' own series: tests/config/test_metrics_processes.py).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families
from pytest_django.fixtures import Settings

from config.cache import cache_manager, cache_manager_reset
from config.db_metrics import sql_normalise
from config.metrics import (
    MetricSample,
    histogram_quantile,
    metrics_directory,
    metrics_enabled,
    metrics_enabled_reset,
    metrics_snapshot,
    snapshot_value,
)
from tests.tools import require_tool
from tests.trading.api_support import key_client, post_order
from trading.models import Account, Asset

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client: Client) -> Client:
    staff = get_user_model().objects.create_user(username="operator", password="pw-123456!", is_staff=True)
    client.force_login(staff)
    return client


@pytest.fixture
def metrics_switch(settings: Settings) -> Iterator[Settings]:
    """The settings, with METRICS_ENABLED read afresh; put back and read afresh after the test."""
    was = settings.METRICS_ENABLED
    metrics_enabled_reset()
    yield settings
    # Put back here, before the reset: the settings fixture would put it back only after this
    # teardown, and a metrics_enabled() in between (the flusher thread's flush hooks, once a
    # second; any statement's db_metrics wrapper) would cache the test's False for the rest of
    # the process, silencing every later metrics test on this xdist worker.
    settings.METRICS_ENABLED = was
    metrics_enabled_reset()
    # A cache manager built while metrics were off keeps them off (it reads the switch once).
    cache_manager_reset()


def _families(text: str) -> dict[str, object]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def test_an_anonymous_caller_gets_a_plain_401_asking_for_a_bearer_token(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"].startswith("text/plain")  # not the API's JSON error shape


def test_a_signed_in_user_who_is_not_staff_gets_403(client: Client) -> None:
    client.force_login(get_user_model().objects.create_user(username="trader", password="pw-123456!"))
    assert client.get("/metrics").status_code == 403


def test_staff_read_the_metrics_in_prometheus_text_format(staff_client: Client) -> None:
    staff_client.get("/v2/clock")
    response = staff_client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    families = _families(response.content.decode())
    assert "http_requests" in families
    assert "http_request_duration_seconds" in families


def test_the_bearer_token_reads_the_metrics_and_nothing_else_does(client: Client, settings: Settings) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Basic s3cret-token").status_code == 401
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_an_order_through_the_api_moves_the_http_and_database_series(account: Account, asset: Asset) -> None:
    """Property 31 (docs/properties.md#p31): the HTTP layer and the database layer."""
    api = key_client(account)
    before = metrics_snapshot()
    response = post_order(api, symbol="AAPL", qty="1")
    assert response.status_code == 200, response.content
    after = metrics_snapshot()

    def moved(name: str, labels: dict[str, str]) -> float:
        return (snapshot_value(after, name, labels) or 0.0) - (snapshot_value(before, name, labels) or 0.0)

    orders = {"route": "orders", "method": "POST"}
    assert moved("http_requests_total", {**orders, "status": "2xx"}) == 1
    assert moved("http_request_duration_seconds_count", orders) == 1
    assert moved("db_request_queries_count", {"route": "orders"}) == 1
    assert moved("db_request_queries_sum", {"route": "orders"}) >= 1
    assert moved("db_request_query_seconds_total", {"route": "orders"}) > 0
    assert moved("db_queries_total", {}) >= 1


def test_a_request_no_route_matches_is_counted_under_one_label(client: Client) -> None:
    before = metrics_snapshot()
    client.get("/v2/no/such/thing/12345")
    client.get("/another/unknown/path")
    after = metrics_snapshot()
    routes = {sample.labels.get("route") for sample in after if sample.name == "http_requests_total"}
    assert not any(route and "12345" in route for route in routes)
    labels = {"route": "unmatched", "status": "4xx"}
    assert (snapshot_value(after, "http_requests_total", labels) or 0) - (
        snapshot_value(before, "http_requests_total", labels) or 0
    ) == 2


@pytest.fixture
def switch_read_after_the_switch_is_put_back() -> Iterator[None]:
    """Torn down after ``metrics_switch`` and before the settings fixture (set up in the opposite
    order), where the flusher thread may ask for the switch: it must read it on again."""
    yield
    assert metrics_enabled(), "the metrics switch was cached off after the test that turned it off"


def test_a_switch_turned_off_is_on_again_for_whatever_asks_after_the_test(
    switch_read_after_the_switch_is_put_back: None, metrics_switch: Settings
) -> None:
    metrics_switch.METRICS_ENABLED = False
    metrics_enabled_reset()
    assert not metrics_enabled()


def test_with_metrics_disabled_nothing_is_written(client: Client, metrics_switch: Settings) -> None:
    metrics_switch.METRICS_ENABLED = False
    metrics_enabled_reset()
    client.get("/v2/clock")  # a handler built now reads the switch
    files = {path: path.stat().st_mtime_ns for path in Path(metrics_directory()).glob("*.db")}
    before = metrics_snapshot()
    Client().get("/v2/clock")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    after = metrics_snapshot()
    assert {path: path.stat().st_mtime_ns for path in Path(metrics_directory()).glob("*.db")} == files
    assert snapshot_value(after, "http_requests_total") == snapshot_value(before, "http_requests_total")


def test_a_slow_query_is_logged_with_its_normalised_sql_and_route(
    account: Account, asset: Asset, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    api = key_client(account)
    settings.DB_SLOW_QUERY_MS = 0.0
    with caplog.at_level(logging.WARNING, logger="config.db.slow"):
        assert api.get("/v2/orders?symbols=AAPL").status_code == 200
    lines = [record.getMessage() for record in caplog.records if record.name == "config.db.slow"]
    assert lines
    assert all("'AAPL'" not in line for line in lines)
    assert all("route=orders " in line for line in lines), lines


def test_sql_is_normalised_to_one_shape_per_statement() -> None:
    assert sql_normalise("SELECT * FROM t WHERE a = 'x''y' AND b IN (1, 2, 3) AND c = 4.5") == (
        "SELECT * FROM t WHERE a = ? AND b IN (?, ...) AND c = ?"
    )
    assert sql_normalise('SELECT  "t"."id"\n FROM "t" WHERE "t"."id" IN (%s, %s)') == (
        'SELECT "t"."id" FROM "t" WHERE "t"."id" IN (?, ...)'
    )


def test_snapshot_value_filters_by_labels_and_aggregates() -> None:
    samples = [
        MetricSample("x_total", {"role": "web", "slot": "0"}, 3.0),
        MetricSample("x_total", {"role": "web", "slot": "1"}, 5.0),
        MetricSample("x_total", {"role": "ws", "slot": "0"}, 7.0),
        MetricSample("y", {}, 1.0),
    ]
    assert snapshot_value(samples, "x_total") == 15.0
    assert snapshot_value(samples, "x_total", {"role": "web"}) == 8.0
    assert snapshot_value(samples, "x_total", {"role": "web"}, "max") == 5.0
    assert snapshot_value(samples, "x_total", {"role": "web"}, "avg") == 4.0
    assert snapshot_value(samples, "x_total", {"role": "market"}) is None
    with pytest.raises(ValueError):
        snapshot_value(samples, "x_total", agg="median")


def test_latency_buckets_tell_2_ms_from_8_ms() -> None:
    def buckets(observed: float) -> list[MetricSample]:
        bounds = ["0.001", "0.002", "0.003", "0.004", "0.005", "0.006", "0.008", "0.01", "+Inf"]
        return [
            MetricSample("lat_bucket", {"le": bound}, 100.0 if float(bound) >= observed else 0.0)
            for bound in bounds
        ]

    fast = histogram_quantile(buckets(0.002), "lat", 0.99)
    slow = histogram_quantile(buckets(0.008), "lat", 0.99)
    assert fast is not None and slow is not None
    assert fast <= 0.002 < 0.006 < slow <= 0.008


def test_promtool_accepts_the_metrics(staff_client: Client, account: Account, asset: Asset) -> None:
    promtool = require_tool("promtool")
    post_order(key_client(account), symbol="AAPL", qty="1")
    staff_client.get("/v2/no/such/route")
    cache_manager().cached("promtool", "assets", lambda: 1)
    text = staff_client.get("/metrics").content
    # prometheus-client's own parser reads every family, the collect-time ones included.
    families = _families(text.decode())
    for name in (
        "http_requests",
        "db_queries",
        "cache_misses",
        "job_outbox_size",
        "job_runs",
        "process_cpu_seconds",
    ):
        assert name in families, name
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
