"""The resource monitor: alert rules evaluated against this host's metrics, with hysteresis, and the
ops page's samples in tiers (docs/architecture.md, Monitoring; Properties 25 and 32).

``run_monitor`` (analytics/management/commands/run_monitor.py) drives a ``Monitor``: every
``MONITOR_INTERVAL_SECONDS`` it takes a snapshot of the metrics (``config.metrics``), reads each
rule's figure from it and steps the rule's state:

    ok --(past threshold)--> pending --(held for_seconds)--> firing: an alert opens
    firing --(past clear_threshold)--> clearing --(held for_seconds)--> ok: the alert resolves

A pending rule whose figure comes back goes to ok without an alert (a dip shorter than the
duration); a clearing rule whose figure goes back beyond the clear threshold stays firing, so a
figure between the two thresholds keeps the alert open. Each opening and each resolution is one
notification (analytics/alert_delivery.py), never repeated while the state holds.

The rules are kept in memory between reloads (and in ``VAR_DIR/monitor-rules.json`` across
restarts), so a dead database still raises its alert; alert rows the database could not take are
kept and written once it answers again. Every instant comes from the injected ``clock``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from analytics.models import Alert, AlertRule, MonitorSample, RuleAggregation, RuleComparison, RuleKind
from config.metrics import MetricSample

logger = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

# Synthetic figures the monitor adds to each snapshot: whether it reached the database and Redis
# on this cycle (1 or 0), so the shipped rules can alert on an unreachable dependency.
DEPENDENCY_UP_METRIC = "monitor_dependency_up"


# --- Rules in memory --------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuleSpec:
    """An ``AlertRule`` as the monitor keeps it: plain data that outlives the database."""

    name: str
    metric: str
    threshold: float
    clear_threshold: float
    for_seconds: float
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    kind: str = RuleKind.VALUE
    aggregation: str = RuleAggregation.SUM
    group_by: tuple[str, ...] = ()
    denominator_metric: str = ""
    quantile: float = 0.99
    window_seconds: float = 60.0
    comparison: str = RuleComparison.ABOVE
    severity: str = "warning"
    description: str = ""
    rule_id: int | None = None

    @classmethod
    def from_rule(cls, rule: AlertRule) -> RuleSpec:
        return cls(
            name=rule.name,
            metric=rule.metric,
            threshold=rule.threshold,
            clear_threshold=rule.clear_threshold,
            for_seconds=float(rule.for_seconds),
            labels={str(k): str(v) for k, v in (rule.labels or {}).items()},
            kind=rule.kind,
            aggregation=rule.aggregation,
            group_by=tuple(part.strip() for part in rule.group_by.split(",") if part.strip()),
            denominator_metric=rule.denominator_metric,
            quantile=rule.quantile,
            window_seconds=float(rule.window_seconds),
            comparison=rule.comparison,
            severity=rule.severity,
            description=rule.description,
            rule_id=rule.pk,
        )

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RuleSpec:
        return cls(**{**data, "group_by": tuple(data.get("group_by", ()))})

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.comparison == RuleComparison.ABOVE else value < self.threshold

    def cleared(self, value: float) -> bool:
        """Past the clear threshold, on the healthy side (at it counts as cleared)."""
        if self.comparison == RuleComparison.ABOVE:
            return value <= self.clear_threshold
        return value >= self.clear_threshold

    def worse(self, a: float, b: float) -> float:
        return max(a, b) if self.comparison == RuleComparison.ABOVE else min(a, b)


def rules_load() -> list[RuleSpec]:
    """The enabled rules, from the database (raises ``DatabaseError`` when it is unreachable)."""
    return [RuleSpec.from_rule(rule) for rule in AlertRule.objects.filter(enabled=True)]


def rules_file() -> Path:
    return Path(settings.MONITOR_RULES_FILE)


def rules_file_write(rules: Iterable[RuleSpec], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(rule) for rule in rules]))
    tmp.replace(path)


def rules_file_read(path: Path) -> list[RuleSpec] | None:
    try:
        return [RuleSpec.from_json(entry) for entry in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return None


# Before the database has ever answered (the monitor starting during an outage, with no rules file
# yet), the reachability rules alone, as shipped (analytics/migrations/0005_default_alert_rules.py).
def _unreachable_rule(*, name: str, dependency: str) -> RuleSpec:
    return RuleSpec(
        name=name,
        metric=DEPENDENCY_UP_METRIC,
        labels={"dependency": dependency},
        aggregation=RuleAggregation.MIN,
        comparison=RuleComparison.BELOW,
        threshold=1.0,
        clear_threshold=1.0,
        for_seconds=15.0,
        severity="critical",
    )


FALLBACK_RULES: tuple[RuleSpec, ...] = (
    _unreachable_rule(name="Database unreachable", dependency="database"),
    _unreachable_rule(name="Redis unreachable", dependency="redis"),
)


# --- Reading a rule's figure ------------------------------------------------------------------------
def _matches(sample: MetricSample, name: str, labels: dict[str, str]) -> bool:
    return sample.name == name and all(sample.labels.get(key) == value for key, value in labels.items())


def _grouped(samples: Iterable[MetricSample], name: str, spec: RuleSpec) -> dict[tuple[str, ...], float]:
    """The matching samples summed per ``group_by`` group (each sample its own group without it)."""
    groups: dict[tuple[str, ...], float] = {}
    for index, sample in enumerate(samples):
        if not _matches(sample, name, spec.labels):
            continue
        key = (
            tuple(sample.labels.get(label, "") for label in spec.group_by) if spec.group_by else (str(index),)
        )
        groups[key] = groups.get(key, 0.0) + sample.value
    return groups


def _combine(values: dict[tuple[str, ...], float], spec: RuleSpec) -> tuple[float, tuple[str, ...]] | None:
    """The groups' values combined by the rule's aggregation, with the group that decided it
    (the largest for max, the smallest for min)."""
    if not values:
        return None
    if spec.aggregation == RuleAggregation.MAX:
        key = max(values, key=lambda k: values[k])
        return values[key], key
    if spec.aggregation == RuleAggregation.MIN:
        key = min(values, key=lambda k: values[k])
        return values[key], key
    total = sum(values.values())
    if spec.aggregation == RuleAggregation.AVG:
        return total / len(values), ()
    return total, ()


def _buckets(samples: Iterable[MetricSample], name: str, labels: dict[str, str]) -> dict[float, float]:
    bucket_name = f"{name}_bucket"
    buckets: dict[float, float] = {}
    for sample in samples:
        if _matches(sample, bucket_name, labels):
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def buckets_quantile(buckets: dict[float, float], quantile: float) -> float | None:
    """Prometheus's histogram_quantile over cumulative bucket counts (``le`` bound -> count);
    None without observations. An answer in the +Inf bucket is the highest finite bound."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = quantile * total
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (rank - previous_count) / (
                count - previous_count
            )
        previous_bound, previous_count = bound, count
    return previous_bound


def _increase(now: float, then: float) -> float:
    """A counter's increase; a smaller value means it was reset (its files cleared), so all of
    ``now`` is new."""
    return now - then if now >= then else now


@dataclass
class Reading:
    """What one snapshot says for one rule: a value now, or the raw counts a windowed figure is
    computed from."""

    at: dt.datetime
    groups: dict[tuple[str, ...], float] = field(default_factory=dict)
    denominator: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)


@dataclass
class Figure:
    value: float
    labels: dict[str, str]


class RuleReader:
    """Turns snapshots into one rule's figure, keeping the readings its window needs."""

    def __init__(self, spec: RuleSpec) -> None:
        self.spec = spec
        self.history: deque[Reading] = deque()

    def read(self, samples: list[MetricSample], now: dt.datetime) -> Figure | None:
        spec = self.spec
        if spec.kind == RuleKind.VALUE:
            combined = _combine(_grouped(samples, spec.metric, spec), spec)
            return None if combined is None else Figure(combined[0], self._labels(combined[1]))
        reading = Reading(at=now)
        if spec.kind == RuleKind.QUANTILE:
            reading.buckets = _buckets(samples, spec.metric, spec.labels)
        else:
            reading.groups = _grouped(samples, spec.metric, spec)
            if spec.kind == RuleKind.RATIO:
                reading.denominator = sum(
                    s.value for s in samples if _matches(s, spec.denominator_metric, spec.labels)
                )
        self.history.append(reading)
        # Keep the newest reading at least a window old: the figure covers the whole window.
        horizon = now - dt.timedelta(seconds=spec.window_seconds)
        while len(self.history) > 2 and self.history[1].at <= horizon:
            self.history.popleft()
        oldest = self.history[0]
        if oldest is reading:
            return None
        return self._windowed(oldest, reading)

    def _windowed(self, oldest: Reading, newest: Reading) -> Figure | None:
        spec = self.spec
        if spec.kind == RuleKind.QUANTILE:
            increases = {
                bound: _increase(count, oldest.buckets.get(bound, 0.0))
                for bound, count in newest.buckets.items()
            }
            value = buckets_quantile(increases, spec.quantile)
            return None if value is None else Figure(value, {})
        if spec.kind == RuleKind.RATIO:
            numerator = _increase(sum(newest.groups.values()), sum(oldest.groups.values()))
            denominator = _increase(newest.denominator, oldest.denominator)
            return None if denominator <= 0 else Figure(numerator / denominator, {})
        seconds = (newest.at - oldest.at).total_seconds()
        if seconds <= 0:
            return None
        rates = {
            key: _increase(value, oldest.groups.get(key, 0.0)) / seconds
            for key, value in newest.groups.items()
        }
        combined = _combine(rates, spec)
        return None if combined is None else Figure(combined[0], self._labels(combined[1]))

    def _labels(self, key: tuple[str, ...]) -> dict[str, str]:
        if not self.spec.group_by or len(key) != len(self.spec.group_by):
            return {}
        return dict(zip(self.spec.group_by, key, strict=True))


# --- States and alerts -------------------------------------------------------------------------------
class RuleStatus(Enum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    CLEARING = "clearing"


class AlertTransition(Enum):
    OPENED = "opened"
    RESOLVED = "resolved"


@dataclass
class OpenAlert:
    """An alert as the monitor holds it; ``pk`` is None until the database has taken the row."""

    rule_name: str
    severity: str
    summary: str
    labels: dict[str, str]
    threshold: float
    clear_threshold: float
    opened_at: dt.datetime
    opened_value: float
    peak_value: float
    last_value: float
    resolved_at: dt.datetime | None = None
    pk: int | None = None
    dirty: bool = True
    rule_id: int | None = None


@dataclass(frozen=True)
class AlertEvent:
    """One notification: an alert opened or resolved."""

    transition: AlertTransition
    alert: OpenAlert
    metric: str
    comparison: str
    at: dt.datetime

    def payload(self) -> dict[str, Any]:
        alert = self.alert
        verb = "FIRING" if self.transition is AlertTransition.OPENED else "RESOLVED"
        return {
            "status": "firing" if self.transition is AlertTransition.OPENED else "resolved",
            "rule": alert.rule_name,
            "severity": alert.severity,
            "summary": alert.summary,
            "metric": self.metric,
            "labels": alert.labels,
            "comparison": self.comparison,
            "threshold": alert.threshold,
            "clear_threshold": alert.clear_threshold,
            "value": alert.last_value,
            "peak": alert.peak_value,
            "opened_at": alert.opened_at.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            # Slack's and Mattermost's incoming webhooks show this field.
            "text": f"[{verb}] {alert.severity}: {alert.summary}",
        }


def _format_value(value: float) -> str:
    return f"{value:.4g}"


@dataclass
class RuleState:
    spec: RuleSpec
    reader: RuleReader
    status: RuleStatus = RuleStatus.OK
    since: dt.datetime | None = None  # when pending or clearing began
    alert: OpenAlert | None = None

    def step(self, figure: Figure | None, now: dt.datetime) -> AlertTransition | None:
        """Advances the state by one evaluation; returns the transition it made, if any."""
        spec = self.spec
        if figure is None:
            # No data: nothing to confirm a pending breach with, and no evidence an alert is over.
            if self.status is RuleStatus.PENDING:
                self.status, self.since = RuleStatus.OK, None
            return None
        value = figure.value
        if self.status is RuleStatus.OK:
            if spec.breached(value):
                self.status, self.since = RuleStatus.PENDING, now
            else:
                return None
        if self.status is RuleStatus.PENDING:
            if not spec.breached(value):
                self.status, self.since = RuleStatus.OK, None
                return None
            assert self.since is not None
            if (now - self.since).total_seconds() >= spec.for_seconds:
                self.status, self.since = RuleStatus.FIRING, None
                self.alert = self._opened(figure, now)
                return AlertTransition.OPENED
            return None
        alert = self.alert
        assert alert is not None
        alert.last_value = value
        if spec.worse(value, alert.peak_value) != alert.peak_value:
            alert.peak_value = value
            alert.dirty = True
        if self.status is RuleStatus.FIRING:
            if not spec.cleared(value):
                return None
            self.status, self.since = RuleStatus.CLEARING, now
        if not spec.cleared(value):
            self.status, self.since = RuleStatus.FIRING, None
            return None
        assert self.since is not None
        if (now - self.since).total_seconds() >= spec.for_seconds:
            self.status, self.since = RuleStatus.OK, None
            alert.resolved_at = now
            alert.dirty = True
            return AlertTransition.RESOLVED
        return None

    def _opened(self, figure: Figure, now: dt.datetime) -> OpenAlert:
        spec = self.spec
        where = "".join(f" {key}={value}" for key, value in sorted(figure.labels.items()))
        side = ">" if spec.comparison == RuleComparison.ABOVE else "<"
        summary = (
            f"{spec.name}:{where} {spec.metric} is {_format_value(figure.value)} "
            f"({side} {_format_value(spec.threshold)} for {spec.for_seconds:g} s)"
        )
        return OpenAlert(
            rule_name=spec.name,
            severity=spec.severity,
            summary=summary[:300],
            labels=figure.labels,
            threshold=spec.threshold,
            clear_threshold=spec.clear_threshold,
            opened_at=now,
            opened_value=figure.value,
            peak_value=figure.value,
            last_value=figure.value,
            rule_id=spec.rule_id,
        )


# --- Persistence --------------------------------------------------------------------------------------
def alert_save(*, alert: OpenAlert) -> None:
    """Writes the alert's row (creating it the first time); raises ``DatabaseError`` when the
    database is unreachable, leaving ``alert.dirty`` set for the next try."""
    rule_exists = alert.rule_id is not None and AlertRule.objects.filter(pk=alert.rule_id).exists()
    fields = {
        "rule_id": alert.rule_id if rule_exists else None,
        "rule_name": alert.rule_name,
        "severity": alert.severity,
        "summary": alert.summary,
        "labels": alert.labels,
        "threshold": alert.threshold,
        "clear_threshold": alert.clear_threshold,
        "opened_at": alert.opened_at,
        "resolved_at": alert.resolved_at,
        "opened_value": alert.opened_value,
        "peak_value": alert.peak_value,
        "last_value": alert.last_value,
    }
    if alert.pk is None:
        try:
            with transaction.atomic():
                alert.pk = Alert.objects.create(**fields).pk
        except IntegrityError:
            # An open row of this rule already exists (left by a monitor that died): adopt it.
            existing = Alert.objects.get(rule_name=alert.rule_name, resolved_at__isnull=True)
            alert.pk = existing.pk
            Alert.objects.filter(pk=alert.pk).update(**{k: v for k, v in fields.items() if k != "opened_at"})
    else:
        Alert.objects.filter(pk=alert.pk).update(**fields)
    alert.dirty = False


def open_alerts_load() -> list[OpenAlert]:
    """The alerts the database holds open (a restarted monitor carries them on)."""
    return [
        OpenAlert(
            rule_name=row.rule_name,
            severity=row.severity,
            summary=row.summary,
            labels=row.labels,
            threshold=row.threshold,
            clear_threshold=row.clear_threshold,
            opened_at=row.opened_at,
            opened_value=row.opened_value,
            peak_value=row.peak_value,
            last_value=row.last_value,
            pk=row.pk,
            dirty=False,
            rule_id=row.rule_id,
        )
        for row in Alert.objects.filter(resolved_at__isnull=True)
    ]


# --- The monitor -------------------------------------------------------------------------------------
Notify = Callable[[AlertEvent], None]
Snapshot = Callable[[], list[MetricSample]]


class Monitor:
    """Evaluates the rules on every ``evaluate()``; the loop around it is run_monitor's."""

    def __init__(
        self,
        *,
        notify: Notify,
        clock: Clock = timezone.now,
        snapshot: Snapshot | None = None,
        probes: dict[str, Callable[[], bool]] | None = None,
        rules_path: Path | None = None,
        reload_seconds: float | None = None,
    ) -> None:
        from config.metrics import metrics_snapshot

        self.notify = notify
        self.clock = clock
        self.snapshot = snapshot or metrics_snapshot
        self.probes = probes if probes is not None else {}
        self.rules_path = rules_path
        self.reload_seconds = (
            settings.MONITOR_RULES_RELOAD_SECONDS if reload_seconds is None else reload_seconds
        )
        self.states: dict[str, RuleState] = {}
        self.loaded_at: dt.datetime | None = None
        self.adopted = False
        # Alerts resolved but not yet written: kept until the database takes them.
        self.unsaved: list[OpenAlert] = []
        self.rules_set(self._initial_rules())

    def _initial_rules(self) -> list[RuleSpec]:
        if self.rules_path is not None:
            cached = rules_file_read(self.rules_path)
            if cached is not None:
                return cached
        return list(FALLBACK_RULES)

    # --- rules ---------------------------------------------------------------------------------------
    def rules_set(self, rules: Iterable[RuleSpec]) -> None:
        """Replaces the rules; a rule whose definition did not change keeps its state, a changed
        one starts over (keeping its open alert, which it resolves by its new thresholds)."""
        states: dict[str, RuleState] = {}
        for spec in rules:
            current = self.states.get(spec.name)
            if current is not None and current.spec == spec:
                states[spec.name] = current
                continue
            state = RuleState(spec=spec, reader=RuleReader(spec))
            if current is not None and current.alert is not None:
                state.status, state.alert = RuleStatus.FIRING, current.alert
            states[spec.name] = state
        for name, dropped in self.states.items():
            if name not in states and dropped.alert is not None:
                # A deleted or disabled rule cannot clear: its alert is resolved now.
                dropped.alert.resolved_at = self.clock()
                dropped.alert.dirty = True
                self.unsaved.append(dropped.alert)
                self._emit(AlertTransition.RESOLVED, dropped)
        self.states = states

    def rules_reload(self, *, force: bool = False) -> bool:
        """Rereads the rules when due (or ``force``); on a database error keeps the current
        ones. Returns whether it read them."""
        now = self.clock()
        if (
            not force
            and self.loaded_at is not None
            and (now - self.loaded_at).total_seconds() < self.reload_seconds
        ):
            return False
        try:
            rules = rules_load()
            if not self.adopted:
                self._adopt(open_alerts_load())
        except DatabaseError:
            logger.warning("monitor: the database is unreachable; evaluating the rules read before")
            database_connection_reset()
            return False
        self.loaded_at = now
        self.rules_set(rules)
        if self.rules_path is not None:
            try:
                rules_file_write(rules, self.rules_path)
            except OSError:
                logger.warning("monitor: could not write %s", self.rules_path, exc_info=True)
        return True

    def _adopt(self, alerts: list[OpenAlert]) -> None:
        self.adopted = True
        for alert in alerts:
            state = self.states.get(alert.rule_name)
            if state is None:
                state = RuleState(spec=_orphan_spec(alert), reader=RuleReader(_orphan_spec(alert)))
                self.states[alert.rule_name] = state
            if state.alert is None:
                state.status, state.alert = RuleStatus.FIRING, alert

    # --- evaluation ----------------------------------------------------------------------------------
    def probe_samples(self) -> list[MetricSample]:
        samples = []
        for dependency, probe in self.probes.items():
            try:
                up = probe()
            except Exception:
                up = False
            samples.append(MetricSample(DEPENDENCY_UP_METRIC, {"dependency": dependency}, 1.0 if up else 0.0))
        return samples

    def evaluate(self, samples: list[MetricSample] | None = None) -> list[AlertEvent]:
        """One cycle: every rule read from ``samples`` (a fresh snapshot plus the dependency
        probes when not given), its state stepped, the transitions notified and the alerts
        written (or kept for later while the database is down)."""
        now = self.clock()
        if samples is None:
            samples = [*self.snapshot(), *self.probe_samples()]
        events: list[AlertEvent] = []
        for state in self.states.values():
            try:
                figure = state.reader.read(samples, now)
            except (KeyError, ValueError):
                logger.warning("monitor: rule %s could not be read", state.spec.name, exc_info=True)
                figure = None
            transition = state.step(figure, now)
            if transition is None:
                continue
            assert state.alert is not None
            events.append(self._emit(transition, state))
            if transition is AlertTransition.RESOLVED:
                self.unsaved.append(state.alert)
                state.alert = None
        self.alerts_save()
        return events

    def _emit(self, transition: AlertTransition, state: RuleState) -> AlertEvent:
        assert state.alert is not None
        event = AlertEvent(
            transition=transition,
            # A copy: the delivery thread reads it later, while the monitor goes on updating its own.
            alert=replace(state.alert, labels=dict(state.alert.labels)),
            metric=state.spec.metric,
            comparison=state.spec.comparison,
            at=self.clock(),
        )
        try:
            self.notify(event)
        except Exception:  # a notifier's failure must never stop the evaluation
            logger.exception("monitor: notifying %s failed", state.spec.name)
        return event

    def open_alerts(self) -> list[OpenAlert]:
        return [state.alert for state in self.states.values() if state.alert is not None]

    def alerts_save(self) -> None:
        """Writes every alert the database has not taken yet; stops at the first database error
        (the rest wait for the next cycle)."""
        pending = [*self.unsaved, *(alert for alert in self.open_alerts() if alert.dirty)]
        for alert in pending:
            try:
                alert_save(alert=alert)
            except DatabaseError:
                logger.warning(
                    "monitor: the database is unreachable; %s is kept until it answers", alert.rule_name
                )
                database_connection_reset()
                return
        self.unsaved = [alert for alert in self.unsaved if alert.dirty]


def _orphan_spec(alert: OpenAlert) -> RuleSpec:
    """A rule for an open alert whose rule is gone or disabled: it never matches a sample, so
    ``rules_set`` resolves the alert on the next reload."""
    return RuleSpec(
        name=alert.rule_name,
        metric="",
        threshold=alert.threshold,
        clear_threshold=alert.clear_threshold,
        for_seconds=0.0,
        severity=alert.severity,
    )


def database_connection_reset() -> None:
    """Drops a connection broken by an outage, so the next query opens a fresh one."""
    with contextlib.suppress(DatabaseError):
        connection.close()


# --- Samples for the ops page, in tiers --------------------------------------------------------------
def monitor_samples_store(*, tier_seconds: int, at: dt.datetime, values: dict[str, Any]) -> None:
    """Writes one tier's row (replacing one at the same instant)."""
    MonitorSample.objects.update_or_create(tier_seconds=tier_seconds, at=at, defaults={"values": values})
