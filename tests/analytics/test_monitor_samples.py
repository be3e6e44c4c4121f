"""The ops page's samples: figures over an interval from two snapshots, and tiers averaged from
the finer ones, each tier cleaned after its own retention."""

from __future__ import annotations

import datetime as dt

import pytest
from pytest_django.fixtures import Settings

from analytics.models import MonitorSample
from analytics.monitor_process import TierSampler
from analytics.ops_series import ops_values
from config.metrics import MetricSample
from config.retention import RETENTION_RULES
from jobs.retention import retention_cleanup_rule

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)


def snapshot(requests: float, errors: float, fast: float, slow: float, rss: float) -> list[MetricSample]:
    route = {"route": "orders", "method": "GET"}
    return [
        MetricSample("http_requests_total", {"route": "orders", "method": "GET", "status": "2xx"}, requests),
        MetricSample(
            "http_request_errors_total", {"route": "orders", "method": "GET", "status": "5xx"}, errors
        ),
        MetricSample("http_request_duration_seconds_bucket", {**route, "le": "0.002"}, fast),
        MetricSample("http_request_duration_seconds_bucket", {**route, "le": "0.1"}, fast + slow),
        MetricSample("http_request_duration_seconds_bucket", {**route, "le": "+Inf"}, fast + slow),
        MetricSample("cache_hits_total", {"layer": "l1", "data_type": "quote"}, requests * 3),
        MetricSample("cache_misses_total", {"layer": "l1", "data_type": "quote"}, requests),
        MetricSample("process_resident_memory_bytes", {"role": "web", "slot": "1"}, rss),
        MetricSample("process_cpu_seconds_total", {"role": "web", "slot": "1"}, requests / 100),
    ]


def test_figures_cover_the_interval_not_the_totals_since_start() -> None:
    values = ops_values(snapshot(1000, 10, 990, 10, 1e8), snapshot(1100, 15, 1040, 60, 2e8), 10.0)
    assert values["api.requests_per_s"] == 10.0
    assert values["api.error_ratio"] == 0.05
    assert 0 < values["api.p50_ms"] <= 2.0 and 2.0 < values["api.p99_ms"] <= 100.0
    assert values["api.slow_routes"][0][0] == "orders" and values["api.slow_routes"][0][2] == 100
    assert values["cache.hit_ratio.l1"] == 0.75
    assert values["process.rss_bytes.web-1"] == 2e8
    assert values["process.cpu.web-1"] == pytest.approx(0.1)
    # A series no process has written gives no figure, not a zero.
    assert "market.ticks_per_s" not in values and "ws.connections" not in values


def test_tiers_are_averaged_from_the_finer_tier_and_dated_at_their_start() -> None:
    sampler = TierSampler(tiers=((10, 86400), (60, 604800), (600, 0)))
    now = START
    requests = 0.0
    for step in range(0, 26 * 60, 5):  # 26 minutes, a snapshot every 5 s
        now = START + dt.timedelta(seconds=step)
        requests += 50 if step < 600 else 100  # 10/s for ten minutes, then 20/s
        sampler.observe(snapshot(requests, 0, requests, 0, 1e8), now)
    fine = MonitorSample.objects.filter(tier_seconds=10)
    assert fine.count() == 26 * 6 - 1
    minutes = list(MonitorSample.objects.filter(tier_seconds=60).order_by("at"))
    assert minutes[0].at == START and len(minutes) == 25
    assert minutes[0].values["api.requests_per_s"] == pytest.approx(10.0)
    assert minutes[-1].values["api.requests_per_s"] == pytest.approx(20.0)
    tens = list(MonitorSample.objects.filter(tier_seconds=600).order_by("at"))
    assert [row.at for row in tens] == [START, START + dt.timedelta(minutes=10)]
    assert tens[0].values["api.requests_per_s"] == pytest.approx(10.0, rel=0.02)
    assert tens[1].values["api.requests_per_s"] == pytest.approx(20.0)


def test_each_tier_is_kept_for_its_own_retention(settings: Settings) -> None:
    settings.MONITORING_SAMPLE_RETENTION_DAYS = 14
    now = START
    for tier, age in [(10, dt.timedelta(hours=25)), (10, dt.timedelta(hours=23)), (60, dt.timedelta(days=6)),
                      (60, dt.timedelta(days=8)), (600, dt.timedelta(days=13)), (600, dt.timedelta(days=15))]:  # fmt: skip
        MonitorSample.objects.create(tier_seconds=tier, at=now - age, values={})
    for label, rule in RETENTION_RULES.items():
        if label.startswith("monitor samples"):
            retention_cleanup_rule(rule=rule, now=now)
    kept = sorted((row.tier_seconds, now - row.at) for row in MonitorSample.objects.all())
    assert kept == [(10, dt.timedelta(hours=23)), (60, dt.timedelta(days=6)), (600, dt.timedelta(days=13))]
