"""The ops performance page's data: the stored samples of one range, the open and recent alerts,
the recent slow queries, and the page's layout (docs/dashboard.md, "The ops page"; Property 33).

The samples are the monitor's (analytics/monitor_process.py): each range reads the tier that
gives it a few hundred to a thousand points (1 h: 10 s rows, 24 h: 1 min, 7 d: 10 min), so a
request's size stays bounded whatever the retention.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

from analytics.models import Alert, MonitorSample
from config.db_metrics import slow_queries_key
from config.redis_pools import redis_client


@dataclass(frozen=True)
class OpsRange:
    name: str
    tier: int  # which of settings.MONITOR_SAMPLE_TIERS (finest first) it reads
    span: dt.timedelta
    # How often the page asks for newer rows while showing this range.
    refresh_seconds: int

    @property
    def tier_seconds(self) -> int:
        return int(settings.MONITOR_SAMPLE_TIERS[self.tier][0])


OPS_RANGES = {
    "1h": OpsRange("1h", 0, dt.timedelta(hours=1), 5),
    "24h": OpsRange("24h", 1, dt.timedelta(hours=24), 30),
    "7d": OpsRange("7d", 2, dt.timedelta(days=7), 120),
}
DEFAULT_RANGE = "1h"
RECENT_ALERTS = 20
SLOW_QUERIES_SHOWN = 10
# The newest finest-tier row counts as "now" only if the monitor wrote it this recently.
LIVE_WITHIN = dt.timedelta(seconds=60)

# The page's layout: groups of charts; a series ending in ".*" is every key with that prefix (one
# line per process or per cache layer). ``scale`` turns the stored unit into the shown one.
OPS_GROUPS: list[dict[str, Any]] = [
    {
        "id": "api",
        "title": "API",
        "charts": [
            {"title": "Latency", "unit": "ms", "series": ["api.p50_ms", "api.p99_ms"]},
            {"title": "Requests", "unit": "/s", "series": ["api.requests_per_s"]},
            {"title": "5xx share", "unit": "%", "scale": 100, "series": ["api.error_ratio"]},
        ],
        "tables": ["slow_routes", "slow_queries"],
    },
    {
        "id": "database",
        "title": "Database",
        "charts": [
            {"title": "Queries", "unit": "/s", "series": ["db.queries_per_s", "db.slow_queries_per_s"]}
        ],
    },
    {
        "id": "cache",
        "title": "Cache and Redis",
        "charts": [
            {"title": "Hit rate per layer", "unit": "%", "scale": 100, "series": ["cache.hit_ratio.*"]},
            {
                "title": "Redis pool connections",
                "unit": "",
                "series": ["redis.pool_in_use", "redis.pool_max"],
            },
        ],
    },
    {
        "id": "websockets",
        "title": "WebSockets",
        "charts": [
            {"title": "Connections", "unit": "", "series": ["ws.connections"]},
            {"title": "Frames", "unit": "/s", "series": ["ws.frames_per_s"]},
            {"title": "Bytes", "unit": "KiB/s", "scale": 1 / 1024, "series": ["ws.bytes_per_s"]},
            {"title": "Slow-client closes", "unit": "", "series": ["ws.slow_client_closes"]},
            {
                "title": "Fan-out lag",
                "unit": "ms",
                "series": ["ws.fanout_lag_p50_ms", "ws.fanout_lag_p99_ms"],
            },
        ],
    },
    {
        "id": "market",
        "title": "Market",
        "charts": [
            {"title": "Ticks", "unit": "/s", "series": ["market.ticks_per_s"]},
            {"title": "Writer lag", "unit": "s", "series": ["market.writer_lag_s"]},
            {"title": "Writer queue depth", "unit": "windows", "series": ["market.queue_depth"]},
        ],
    },
    {
        "id": "jobs",
        "title": "Jobs",
        "charts": [
            {"title": "Task runs", "unit": "/s", "series": ["jobs.runs_per_s"]},
            {"title": "Failures", "unit": "", "series": ["jobs.failures"]},
            {"title": "Broker queue and outbox", "unit": "", "series": ["jobs.queue_length", "jobs.outbox"]},
        ],
    },
    {
        "id": "processes",
        "title": "Processes",
        "charts": [
            {
                "title": "Resident memory",
                "unit": "MiB",
                "scale": 1 / 1048576,
                "series": ["process.rss_bytes.*"],
            },
            {"title": "CPU", "unit": "% of a core", "scale": 100, "series": ["process.cpu.*"]},
        ],
    },
    {
        "id": "frontend",
        "title": "Dashboard pages",
        "charts": [
            {
                "title": "Render time",
                "unit": "ms",
                "series": ["frontend.render_p95_median_ms", "frontend.render_max_p99_ms"],
            },
            {"title": "Dropped frames", "unit": "%", "scale": 100, "series": ["frontend.dropped_ratio"]},
        ],
    },
]


def _alert_row(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "rule": alert.rule_name,
        "severity": alert.severity,
        "summary": alert.summary,
        "labels": alert.labels,
        "opened_at": alert.opened_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "peak": alert.peak_value,
        "last": alert.last_value,
        "threshold": alert.threshold,
    }


def ops_alerts_get() -> dict[str, list[dict[str, Any]]]:
    """The open alerts (all of them) and the most recently resolved ones."""
    open_alerts = Alert.objects.filter(resolved_at__isnull=True).order_by("-opened_at")
    recent = Alert.objects.filter(resolved_at__isnull=False).order_by("-resolved_at")[:RECENT_ALERTS]
    return {"open": [_alert_row(a) for a in open_alerts], "recent": [_alert_row(a) for a in recent]}


def ops_slow_queries_get() -> list[dict[str, Any]] | None:
    """The recent slow queries (config/db_metrics.py) grouped by statement shape, slowest first;
    None when Redis cannot be read."""
    try:
        raw = redis_client().lrange(slow_queries_key(), 0, -1)
    except (redis.RedisError, OSError):
        return None
    shapes: dict[str, dict[str, Any]] = {}
    for item in raw:
        try:
            entry = json.loads(item)
        except ValueError:
            continue
        shape = shapes.setdefault(
            entry["sql"], {"sql": entry["sql"], "count": 0, "max_ms": 0.0, "total_ms": 0.0}
        )
        shape["count"] += 1
        shape["max_ms"] = max(shape["max_ms"], float(entry["ms"]))
        shape["total_ms"] += float(entry["ms"])
        if shape.get("at", 0) < entry["at"]:
            shape["at"], shape["route"] = entry["at"], entry["route"]
    rows = sorted(shapes.values(), key=lambda row: (-row["max_ms"], row["sql"]))[:SLOW_QUERIES_SHOWN]
    for row in rows:
        row["mean_ms"] = round(row.pop("total_ms") / row["count"], 1)
    return rows


def ops_data_get(*, range_name: str, now: dt.datetime, since: dt.datetime | None = None) -> dict[str, Any]:
    """Everything the page shows for ``range_name`` (one of OPS_RANGES): the points of its tier
    within the range (only those after ``since`` when given, for a refresh), the newest live
    row, the alerts and the slow queries."""
    chosen = OPS_RANGES[range_name]
    rows = MonitorSample.objects.filter(tier_seconds=chosen.tier_seconds, at__gte=now - chosen.span)
    if since is not None:
        rows = rows.filter(at__gt=since)
    points = [[int(row.at.timestamp()), row.values] for row in rows.order_by("at")]
    finest = settings.MONITOR_SAMPLE_TIERS[0][0]
    newest = (
        MonitorSample.objects.filter(tier_seconds=finest, at__gte=now - LIVE_WITHIN).order_by("-at").first()
    )
    return {
        "range": chosen.name,
        "tier_seconds": chosen.tier_seconds,
        "refresh_seconds": chosen.refresh_seconds,
        "now": now.isoformat(),
        "points": points,
        "latest": None if newest is None else {"t": int(newest.at.timestamp()), "values": newest.values},
        "alerts": ops_alerts_get(),
        "slow_queries": ops_slow_queries_get(),
    }
