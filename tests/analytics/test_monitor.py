"""Property 32: threshold rules fire and clear alerts, with hysteresis, one notification each way.

The monitor runs with an injected clock; its notifications go through the real delivery (Django's
mail backend, the locmem one in tests, and a real HTTP server on a loopback port for the
webhook). The samples are what ``config.metrics.metrics_snapshot`` returns, built here so each
step's value is exact.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.exceptions import ValidationError
from pytest_django.fixtures import Settings

from analytics.alert_delivery import AlertDelivery
from analytics.models import Alert, AlertRule
from analytics.monitor import (
    DEPENDENCY_UP_METRIC,
    AlertTransition,
    Monitor,
    RuleSpec,
    buckets_quantile,
    rules_file_read,
)
from config.metrics import MetricSample
from tests.analytics.webhook import WebhookReceiver
from tests.processes import free_port

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 4, 15, 0, tzinfo=dt.UTC)
STEP_S = 5


class DatetimeClock:
    """Wall-clock instants that move only when told."""

    def __init__(self, start: dt.datetime = START) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def staff_user() -> Any:
    return get_user_model().objects.create_user(
        username="operator", email="ops@example.com", password="x", is_staff=True
    )


def rss(value: float, slot: str = "0") -> list[MetricSample]:
    return [MetricSample("process_resident_memory_bytes", {"role": "web", "slot": slot}, value)]


def memory_rule(**overrides: Any) -> AlertRule:
    fields: dict[str, Any] = {
        "name": "Test memory",
        "metric": "process_resident_memory_bytes",
        "group_by": "role,slot",
        "aggregation": "max",
        "threshold": 100.0,
        "clear_threshold": 50.0,
        "for_seconds": 30,
        "severity": "critical",
        **overrides,
    }
    AlertRule.objects.update(enabled=False)  # only the rule under test
    return AlertRule.objects.create(**fields)


def monitor_for(delivery: AlertDelivery, clock: DatetimeClock, **kwargs: Any) -> Monitor:
    monitor = Monitor(notify=delivery, clock=clock, **kwargs)
    monitor.rules_reload(force=True)
    return monitor


def hold(monitor: Monitor, clock: DatetimeClock, samples: list[MetricSample], seconds: float) -> list[Any]:
    """Evaluates every STEP_S seconds for ``seconds`` with the same samples; the events seen."""
    events = []
    for _ in range(int(seconds // STEP_S)):
        clock.advance(STEP_S)
        events.extend(monitor.evaluate(samples))
    return events


def test_p32_held_for_the_duration_opens_one_alert_and_past_the_clear_threshold_resolves_it(
    receiver: WebhookReceiver, staff_user: Any, settings: Settings
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    rule = memory_rule()
    clock = DatetimeClock()
    delivery = AlertDelivery(webhook_url=receiver.url)
    monitor = monitor_for(delivery, clock)

    assert monitor.evaluate(rss(10)) == []
    # Above the threshold, not yet for the duration: pending, nothing opened.
    assert monitor.evaluate(rss(150)) == []
    assert hold(monitor, clock, rss(150), 25) == []
    assert not Alert.objects.exists()
    # The duration reached: exactly one alert, however long it stays above.
    opened = hold(monitor, clock, rss(180), 5)
    assert [event.transition for event in opened] == [AlertTransition.OPENED]
    assert hold(monitor, clock, rss(220), 60) == []
    # Between the thresholds: still open, whatever the time.
    assert hold(monitor, clock, rss(70), 120) == []
    # Past the clear threshold for less than the duration, then back between: still open.
    assert hold(monitor, clock, rss(40), 20) == []
    assert hold(monitor, clock, rss(70), 10) == []
    # Past the clear threshold for the duration (from its first reading there): resolved, once.
    resolved = hold(monitor, clock, rss(40), 35)
    assert [event.transition for event in resolved] == [AlertTransition.RESOLVED]
    assert hold(monitor, clock, rss(40), 60) == []
    assert delivery.drain()

    alert = Alert.objects.get()
    assert alert.rule_id == rule.pk
    assert alert.rule_name == "Test memory"
    assert alert.opened_at == START + dt.timedelta(seconds=30)
    assert alert.opened_value == 180
    assert alert.peak_value == 220
    assert alert.last_value == 40
    assert alert.labels == {"role": "web", "slot": "0"}
    assert alert.resolved_at == opened[0].at + dt.timedelta(seconds=60 + 120 + 20 + 10 + 35)
    assert [message["status"] for message in receiver.messages] == ["firing", "resolved"]
    firing, cleared = receiver.messages
    assert firing["rule"] == "Test memory" and firing["severity"] == "critical"
    assert firing["labels"] == {"role": "web", "slot": "0"} and firing["value"] == 180
    assert cleared["peak"] == 220 and cleared["resolved_at"] == alert.resolved_at.isoformat()
    assert [message.to for message in mail.outbox] == [["ops@example.com"], ["ops@example.com"]]
    assert "[FIRING] critical" in mail.outbox[0].subject
    assert "[RESOLVED] critical" in mail.outbox[1].subject


def test_p32_a_breach_shorter_than_the_duration_opens_no_alert(receiver: WebhookReceiver) -> None:
    memory_rule()
    clock = DatetimeClock()
    delivery = AlertDelivery(webhook_url=receiver.url)
    monitor = monitor_for(delivery, clock)
    for _ in range(5):
        assert hold(monitor, clock, rss(500), 25) == []  # 25 s above a 30 s rule
        assert hold(monitor, clock, rss(80), 5) == []  # one reading back under the threshold
    assert hold(monitor, clock, rss(90), 300) == []
    assert delivery.drain()
    assert not Alert.objects.exists()
    assert receiver.messages == []


def test_p32_the_highest_process_decides_and_names_itself(receiver: WebhookReceiver) -> None:
    memory_rule(for_seconds=0)
    monitor = monitor_for(AlertDelivery(webhook_url=""), DatetimeClock())
    events = monitor.evaluate([*rss(10, slot="0"), *rss(120, slot="1"), *rss(30, slot="2")])
    assert [event.alert.labels for event in events] == [{"role": "web", "slot": "1"}]
    assert "slot=1" in events[0].alert.summary


def test_p32_webhook_failures_are_retried_and_never_break_the_monitor(settings: Settings) -> None:
    memory_rule(for_seconds=0)
    flaky = WebhookReceiver(fail_first=2)
    slept: list[float] = []
    try:
        clock = DatetimeClock()
        delivery = AlertDelivery(webhook_url=flaky.url, sleep=slept.append)
        monitor = monitor_for(delivery, clock)
        assert len(hold(monitor, clock, rss(500), 5)) == 1
        assert delivery.drain()
        assert flaky.attempts == 3 and [m["status"] for m in flaky.messages] == ["firing"]
        assert slept == [1.0, 2.0]
    finally:
        flaky.close()

    # Nothing listening at all: every attempt fails, the delivery gives up, the monitor goes on.
    dead = AlertDelivery(webhook_url=f"http://127.0.0.1:{free_port()}/hook", sleep=slept.append)
    monitor.notify = dead
    assert [e.transition for e in hold(monitor, clock, rss(10), 5)] == [AlertTransition.RESOLVED]
    assert dead.drain()
    assert len(slept) == 2 + settings.ALERT_WEBHOOK_ATTEMPTS - 1
    assert [e.transition for e in hold(monitor, clock, rss(500), 5)] == [AlertTransition.OPENED]
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 1


def test_p32_below_rules_and_unreachable_dependencies(receiver: WebhookReceiver) -> None:
    """The shipped reachability rules: a probe that fails for their duration opens the alert."""
    AlertRule.objects.exclude(name__in=["Database unreachable", "Redis unreachable"]).update(enabled=False)
    clock = DatetimeClock()
    redis_up = [True]
    delivery = AlertDelivery(webhook_url=receiver.url)
    monitor = Monitor(
        notify=delivery,
        clock=clock,
        snapshot=list,
        probes={"database": lambda: True, "redis": lambda: redis_up[0]},
    )
    monitor.rules_reload(force=True)
    events = []
    for _ in range(6):
        clock.advance(STEP_S)
        events.extend(monitor.evaluate())
    assert events == []
    redis_up[0] = False
    for _ in range(4):
        clock.advance(STEP_S)
        events.extend(monitor.evaluate())
    assert [(e.transition, e.alert.rule_name) for e in events] == [
        (AlertTransition.OPENED, "Redis unreachable")
    ]
    redis_up[0] = True
    for _ in range(4):
        clock.advance(STEP_S)
        events.extend(monitor.evaluate())
    assert [e.transition for e in events] == [AlertTransition.OPENED, AlertTransition.RESOLVED]
    assert delivery.drain()
    assert [m["status"] for m in receiver.messages] == ["firing", "resolved"]


def test_rates_ratios_and_quantiles_are_read_over_their_window() -> None:
    clock = DatetimeClock()
    monitor = Monitor(notify=lambda event: None, clock=clock)
    monitor.rules_set(
        [
            RuleSpec(name="errors", metric="errors_total", kind="rate", window_seconds=10, threshold=1.0,
                     clear_threshold=0.5, for_seconds=0),
            RuleSpec(name="share", metric="errors_total", kind="ratio", denominator_metric="requests_total",
                     window_seconds=10, threshold=0.1, clear_threshold=0.05, for_seconds=0),
            RuleSpec(name="p99", metric="latency_seconds", kind="quantile", quantile=0.99, window_seconds=10,
                     threshold=0.5, clear_threshold=0.25, for_seconds=0),
        ]
    )  # fmt: skip

    def samples(errors: float, requests: float, slow: float, total: float) -> list[MetricSample]:
        return [
            MetricSample("errors_total", {"route": "a"}, errors),
            MetricSample("requests_total", {"route": "a"}, requests),
            MetricSample("latency_seconds_bucket", {"le": "0.1"}, total - slow),
            MetricSample("latency_seconds_bucket", {"le": "1.0"}, total),
            MetricSample("latency_seconds_bucket", {"le": "+Inf"}, total),
        ]

    # The totals since the processes started say nothing; only increases within the window count.
    assert monitor.evaluate(samples(errors=1000, requests=2000, slow=900, total=2000)) == []
    clock.advance(10)
    assert monitor.evaluate(samples(errors=1001, requests=2100, slow=900, total=2100)) == []
    clock.advance(10)
    events = monitor.evaluate(samples(errors=1031, requests=2200, slow=950, total=2200))
    assert sorted(e.alert.rule_name for e in events) == ["errors", "p99", "share"]
    by_name = {e.alert.rule_name: e.alert.opened_value for e in events}
    assert by_name["errors"] == pytest.approx(3.0)  # 30 errors in 10 s
    assert by_name["share"] == pytest.approx(0.3)  # 30 of 100 requests
    assert 0.1 < by_name["p99"] <= 1.0  # half the window's requests took 0.1-1 s
    assert buckets_quantile({0.1: 50, 1.0: 100, float("inf"): 100}, 0.5) == pytest.approx(0.1)
    assert buckets_quantile({0.1: 0, float("inf"): 0}, 0.99) is None


def test_rules_are_kept_across_restarts_for_a_database_outage(tmp_path: Path) -> None:
    memory_rule()
    path = tmp_path / "monitor-rules.json"
    monitor = Monitor(notify=lambda event: None, clock=DatetimeClock(), rules_path=path)
    assert set(monitor.states) == {"Database unreachable", "Redis unreachable"}
    assert monitor.rules_reload(force=True)
    cached = rules_file_read(path)
    assert cached is not None and [spec.name for spec in cached] == ["Test memory"]
    # A monitor started while the database is down evaluates the rules read before.
    restarted = Monitor(notify=lambda event: None, clock=DatetimeClock(), rules_path=path)
    assert list(restarted.states) == ["Test memory"]


def test_a_restarted_monitor_carries_on_the_open_alert(receiver: WebhookReceiver) -> None:
    memory_rule(for_seconds=10)
    clock = DatetimeClock()
    first = monitor_for(AlertDelivery(webhook_url=receiver.url), clock)
    assert len(hold(first, clock, rss(500), 15)) == 1
    second_delivery = AlertDelivery(webhook_url=receiver.url)
    second = monitor_for(second_delivery, clock)
    assert hold(second, clock, rss(500), 60) == []
    assert [e.transition for e in hold(second, clock, rss(10), 15)] == [AlertTransition.RESOLVED]
    assert second_delivery.drain()
    assert Alert.objects.get().resolved_at == clock.now


def test_disabling_a_rule_resolves_its_open_alert() -> None:
    rule = memory_rule(for_seconds=0)
    clock = DatetimeClock()
    monitor = monitor_for(AlertDelivery(webhook_url=""), clock)
    assert len(monitor.evaluate(rss(500))) == 1
    rule.enabled = False
    rule.save()
    clock.advance(60)
    monitor.rules_reload(force=True)
    monitor.evaluate(rss(500))
    assert Alert.objects.get().resolved_at == clock.now


def test_the_queue_depth_rule_can_fire_within_the_queue_it_watches() -> None:
    # market_queue_depth counts windows, and the queue never holds more than its capacity.
    rule = AlertRule.objects.get(name="Market writer queue depth")
    assert rule.clear_threshold < rule.threshold < settings.MARKET_QUEUE_MAX_WINDOWS


def test_the_shipped_rules_are_installed_and_validated() -> None:
    names = set(AlertRule.objects.values_list("name", flat=True))
    assert {
        "Process memory (RSS)",
        "WebSocket connections per process",
        "API p99 latency",
        "API 5xx rate",
        "Market writer lag",
        "Market writer queue depth",
        "Job failures",
        "Broker queue length",
        "Database unreachable",
        "Redis unreachable",
        "Dashboard dropped frames",
    } <= names
    for rule in AlertRule.objects.all():
        rule.full_clean()
    reachability = {s.spec.name: s.spec for s in Monitor(notify=lambda e: None).states.values()}
    for name, spec in reachability.items():
        stored = RuleSpec.from_rule(AlertRule.objects.get(name=name))
        assert stored.metric == spec.metric == DEPENDENCY_UP_METRIC and stored.labels == spec.labels
        assert (stored.threshold, stored.comparison, stored.for_seconds) == (
            spec.threshold,
            spec.comparison,
            spec.for_seconds,
        )
    bad = AlertRule(name="bad", metric="x", threshold=10, clear_threshold=20, kind="ratio")
    with pytest.raises(ValidationError) as raised:
        bad.full_clean()
    assert set(raised.value.message_dict) == {"clear_threshold", "denominator_metric"}
