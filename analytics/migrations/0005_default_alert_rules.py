"""The shipped alert rules (README, "Monitoring and alerts"): editable in the admin afterwards.

The values are written out here, not imported, so the migration stays what it was when the code
moves on. The two reachability rules match analytics.monitor.FALLBACK_RULES, which the monitor
evaluates before the database has ever answered.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

MIB = 1024 * 1024

DEFAULT_RULES = [
    {
        "name": "Process memory (RSS)",
        "description": "A process's resident memory (Property 25): a leak or an unbounded buffer.",
        "metric": "process_resident_memory_bytes",
        "group_by": "role,slot",
        "aggregation": "max",
        "threshold": 1024 * MIB,
        "clear_threshold": 896 * MIB,
        "for_seconds": 60,
        "severity": "warning",
    },
    {
        "name": "WebSocket connections per process",
        "description": "Open stream connections of one process, near what one daphne serves well.",
        "metric": "ws_connections",
        "group_by": "role,slot",
        "aggregation": "max",
        "threshold": 5000,
        "clear_threshold": 4500,
        "for_seconds": 60,
        "severity": "warning",
    },
    {
        "name": "API p99 latency",
        "description": "99th percentile of HTTP response time over the last 5 minutes, in seconds.",
        "metric": "http_request_duration_seconds",
        "kind": "quantile",
        "quantile": 0.99,
        "window_seconds": 300,
        "threshold": 1.0,
        "clear_threshold": 0.5,
        "for_seconds": 120,
        "severity": "warning",
    },
    {
        "name": "API 5xx rate",
        "description": "Share of HTTP requests answered 5xx over the last 5 minutes.",
        "metric": "http_request_errors_total",
        "kind": "ratio",
        "denominator_metric": "http_requests_total",
        "window_seconds": 300,
        "threshold": 0.05,
        "clear_threshold": 0.01,
        "for_seconds": 60,
        "severity": "critical",
    },
    {
        "name": "Market writer lag",
        "description": "Seconds between a tick and its row in the database.",
        "metric": "market_writer_lag_seconds",
        "aggregation": "max",
        "threshold": 5.0,
        "clear_threshold": 2.0,
        "for_seconds": 30,
        "severity": "warning",
    },
    {
        "name": "Market writer queue depth",
        "description": "Ticks waiting for the writer.",
        "metric": "market_queue_depth",
        "aggregation": "max",
        "threshold": 10000,
        "clear_threshold": 1000,
        "for_seconds": 30,
        "severity": "warning",
    },
    {
        "name": "Job failures",
        "description": "Background jobs failing (after their retries), per second over 10 minutes.",
        "metric": "job_failures_total",
        "kind": "rate",
        "window_seconds": 600,
        "threshold": 1 / 60,
        "clear_threshold": 0.0,
        "for_seconds": 60,
        "severity": "warning",
    },
    {
        "name": "Broker queue length",
        "description": "Messages waiting in the Celery broker: the workers are behind or down.",
        "metric": "celery_queue_length",
        "threshold": 1000,
        "clear_threshold": 100,
        "for_seconds": 120,
        "severity": "warning",
    },
    {
        "name": "Database unreachable",
        "description": "The monitor could not run a query.",
        "metric": "monitor_dependency_up",
        "labels": {"dependency": "database"},
        "aggregation": "min",
        "comparison": "lt",
        "threshold": 1.0,
        "clear_threshold": 1.0,
        "for_seconds": 15,
        "severity": "critical",
    },
    {
        "name": "Redis unreachable",
        "description": "The monitor could not PING Redis.",
        "metric": "monitor_dependency_up",
        "labels": {"dependency": "redis"},
        "aggregation": "min",
        "comparison": "lt",
        "threshold": 1.0,
        "clear_threshold": 1.0,
        "for_seconds": 15,
        "severity": "critical",
    },
    {
        "name": "Dashboard dropped frames",
        "description": "Share of animation frames the dashboards dropped over the last 5 minutes.",
        "metric": "frontend_dropped_frames_total",
        "kind": "ratio",
        "denominator_metric": "frontend_frames_total",
        "window_seconds": 300,
        "threshold": 0.2,
        "clear_threshold": 0.05,
        "for_seconds": 120,
        "severity": "info",
    },
]


def rules_create(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    AlertRule = apps.get_model("analytics", "AlertRule")
    for rule in DEFAULT_RULES:
        AlertRule.objects.get_or_create(name=rule["name"], defaults=rule)


def rules_delete(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    AlertRule = apps.get_model("analytics", "AlertRule")
    AlertRule.objects.filter(name__in=[rule["name"] for rule in DEFAULT_RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("analytics", "0004_monitoring")]

    operations = [migrations.RunPython(rules_create, rules_delete)]
