"""The ops page's figures, computed by the monitor from two snapshots of this host's metrics
(docs/architecture.md, Monitoring; Property 33).

``ops_values(previous, current, seconds)`` turns the snapshot taken ``seconds`` ago and the one
taken now into one flat mapping, stored as a ``MonitorSample`` row: a figure per key
(``"api.p99_ms"``, ``"process.rss_bytes.web-0"``), rates and quantiles over the interval (from
the increase of counters and histogram buckets, never from totals since a process started), and
the top slow routes as a list. A metric that no process has written yet gives no key, so the
page shows "no data" for it rather than a zero.

Metric names are those of ``config/metrics.py`` and the modules that register series (README,
Metrics); the table below is the one place the page's figures meet them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from analytics.monitor import buckets_quantile
from config.metrics import MetricSample

# Per-route latency and the API's totals.
HTTP_SECONDS = "http_request_duration_seconds"
HTTP_REQUESTS = "http_requests_total"
HTTP_ERRORS = "http_request_errors_total"
DB_QUERIES = "db_queries_total"
DB_SLOW_QUERIES = "db_slow_queries_total"
CACHE_HITS = "cache_hits_total"
CACHE_MISSES = "cache_misses_total"
REDIS_POOL_IN_USE = "redis_pool_connections_in_use"
REDIS_POOL_MAX = "redis_pool_connections_max"
WS_CONNECTIONS = "ws_connections"
WS_FRAMES = "stream_frames_sent_total"
WS_BYTES = "stream_sent_bytes_total"
WS_SLOW_CLOSES = "stream_slow_client_closes_total"
WS_FANOUT_LAG = "stream_fanout_lag_seconds"
MARKET_TICKS = "market_ticks_total"
MARKET_WRITER_LAG = "market_writer_lag_seconds"
MARKET_QUEUE_DEPTH = "market_queue_depth"
JOB_RUNS = "job_task_runs_total"
JOB_FAILURES = "job_failures_total"
JOB_QUEUE_LENGTH = "celery_queue_length"
OUTBOX_SIZE = "job_outbox_size"
PROCESS_RSS = "process_resident_memory_bytes"
PROCESS_CPU = "process_cpu_seconds_total"
# One observation per report: the page's p95 and its slowest render over the report's interval.
FRONTEND_RENDER_P95 = "frontend_render_p95_seconds"
FRONTEND_RENDER_MAX = "frontend_render_max_seconds"
FRONTEND_FRAMES = "frontend_frames_total"
FRONTEND_DROPPED = "frontend_dropped_frames_total"

SLOW_ROUTES_SHOWN = 5


def _total(samples: Iterable[MetricSample], name: str, **labels: str) -> float | None:
    values = [
        s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    return sum(values) if values else None


def _by(samples: Iterable[MetricSample], name: str, label: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for sample in samples:
        if sample.name == name:
            key = sample.labels.get(label, "")
            totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def _increase(now: float | None, then: float | None) -> float | None:
    if now is None:
        return None
    if then is None or now < then:  # new, or reset: all of it is new
        return now
    return now - then


def _buckets_by(
    samples: Iterable[MetricSample], name: str, label: str | None
) -> dict[str, dict[float, float]]:
    """``<name>_bucket`` counts per ``le``, grouped by ``label`` (one group "" without it)."""
    groups: dict[str, dict[float, float]] = {}
    bucket_name = f"{name}_bucket"
    for sample in samples:
        if sample.name == bucket_name:
            key = sample.labels.get(label, "") if label else ""
            bound = float(sample.labels["le"])
            group = groups.setdefault(key, {})
            group[bound] = group.get(bound, 0.0) + sample.value
    return groups


def _bucket_increase(now: dict[float, float], then: dict[float, float] | None) -> dict[float, float]:
    then = then or {}
    return {bound: _increase(count, then.get(bound)) or 0.0 for bound, count in now.items()}


class _Values:
    def __init__(self, previous: list[MetricSample], current: list[MetricSample], seconds: float) -> None:
        self.previous = previous
        self.current = current
        self.seconds = seconds
        self.out: dict[str, Any] = {}

    def put(self, key: str, value: float | None, digits: int = 4) -> None:
        if value is not None:
            self.out[key] = round(value, digits)

    def gauge(self, key: str, name: str, agg: str = "sum") -> None:
        values = [s.value for s in self.current if s.name == name]
        if values:
            self.put(key, max(values) if agg == "max" else sum(values))

    def increase(self, name: str, **labels: str) -> float | None:
        return _increase(_total(self.current, name, **labels), _total(self.previous, name, **labels))

    def rate(self, key: str, name: str) -> None:
        increase = self.increase(name)
        if increase is not None and self.seconds > 0:
            self.put(key, increase / self.seconds)

    def quantiles(self, prefix: str, name: str, quantiles: dict[str, float], scale: float = 1000.0) -> None:
        now = _buckets_by(self.current, name, None).get("")
        if now is None:
            return
        increase = _bucket_increase(now, _buckets_by(self.previous, name, None).get(""))
        for suffix, quantile in quantiles.items():
            value = buckets_quantile(increase, quantile)
            self.put(f"{prefix}{suffix}", None if value is None else value * scale, 3)


def ops_values(previous: list[MetricSample], current: list[MetricSample], seconds: float) -> dict[str, Any]:
    """The ops page's figures over the ``seconds`` between two snapshots (see the module)."""
    v = _Values(previous, current, seconds)

    # API: latency quantiles, throughput, error share, the slowest routes.
    v.quantiles("api.", HTTP_SECONDS, {"p50_ms": 0.5, "p99_ms": 0.99})
    v.rate("api.requests_per_s", HTTP_REQUESTS)
    requests, errors = v.increase(HTTP_REQUESTS), v.increase(HTTP_ERRORS)
    if requests:
        v.put("api.error_ratio", (errors or 0.0) / requests, 5)
    elif requests == 0:
        v.put("api.error_ratio", 0.0)
    routes_now = _buckets_by(current, HTTP_SECONDS, "route")
    routes_then = _buckets_by(previous, HTTP_SECONDS, "route")
    slow: list[tuple[str, float, float]] = []
    for route, buckets in routes_now.items():
        increase = _bucket_increase(buckets, routes_then.get(route))
        count = increase.get(float("inf"), 0.0)
        p99 = buckets_quantile(increase, 0.99)
        if p99 is not None and count > 0:
            slow.append((route, round(p99 * 1000.0, 3), count))
    if routes_now:
        slow.sort(key=lambda row: (-row[1], row[0]))
        v.out["api.slow_routes"] = [list(row) for row in slow[:SLOW_ROUTES_SHOWN]]

    # Database.
    v.rate("db.queries_per_s", DB_QUERIES)
    v.rate("db.slow_queries_per_s", DB_SLOW_QUERIES)

    # Cache hit ratio per layer; Redis pool use.
    hits_now, hits_then = _by(current, CACHE_HITS, "layer"), _by(previous, CACHE_HITS, "layer")
    misses_now, misses_then = _by(current, CACHE_MISSES, "layer"), _by(previous, CACHE_MISSES, "layer")
    for layer in sorted(set(hits_now) | set(misses_now)):
        hits = _increase(hits_now.get(layer, 0.0), hits_then.get(layer)) or 0.0
        misses = _increase(misses_now.get(layer, 0.0), misses_then.get(layer)) or 0.0
        if hits + misses > 0:
            v.put(f"cache.hit_ratio.{layer}", hits / (hits + misses))
    v.gauge("redis.pool_in_use", REDIS_POOL_IN_USE)
    v.gauge("redis.pool_max", REDIS_POOL_MAX)

    # WebSockets.
    v.gauge("ws.connections", WS_CONNECTIONS)
    v.rate("ws.frames_per_s", WS_FRAMES)
    v.rate("ws.bytes_per_s", WS_BYTES)
    v.put("ws.slow_client_closes", v.increase(WS_SLOW_CLOSES))
    v.quantiles("ws.fanout_lag_", WS_FANOUT_LAG, {"p50_ms": 0.5, "p99_ms": 0.99})

    # Market.
    v.rate("market.ticks_per_s", MARKET_TICKS)
    v.gauge("market.writer_lag_s", MARKET_WRITER_LAG, agg="max")
    v.gauge("market.queue_depth", MARKET_QUEUE_DEPTH, agg="max")

    # Jobs.
    v.rate("jobs.runs_per_s", JOB_RUNS)
    v.put("jobs.failures", v.increase(JOB_FAILURES))
    v.gauge("jobs.queue_length", JOB_QUEUE_LENGTH)
    v.gauge("jobs.outbox", OUTBOX_SIZE)

    # Processes: RSS and CPU (a fraction of one core) per role and slot.
    cpu_then = {
        (s.labels.get("role"), s.labels.get("slot")): s.value for s in previous if s.name == PROCESS_CPU
    }
    for sample in current:
        process = f"{sample.labels.get('role', '?')}-{sample.labels.get('slot', '0')}"
        if sample.name == PROCESS_RSS:
            v.put(f"process.rss_bytes.{process}", sample.value, 0)
        elif sample.name == PROCESS_CPU and seconds > 0:
            then = cpu_then.get((sample.labels.get("role"), sample.labels.get("slot")))
            if then is not None and sample.value >= then:
                v.put(f"process.cpu.{process}", (sample.value - then) / seconds)

    # The dashboards' own reports (POST /v2/metrics/frontend).
    v.quantiles("frontend.render_p95_", FRONTEND_RENDER_P95, {"median_ms": 0.5})
    v.quantiles("frontend.render_max_", FRONTEND_RENDER_MAX, {"p99_ms": 0.99})
    frames, dropped = v.increase(FRONTEND_FRAMES), v.increase(FRONTEND_DROPPED)
    if frames:
        v.put("frontend.dropped_ratio", (dropped or 0.0) / frames, 5)
    v.put("frontend.dropped_frames", dropped)
    return v.out


def ops_values_average(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One coarser tier's row from the finer rows in its interval: each number averaged over the
    rows that have it, a list (the slow routes) taken from the newest row that has one."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    latest: dict[str, Any] = {}
    for row in rows:
        for key, value in row.items():
            if isinstance(value, int | float):
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
            else:
                latest[key] = value
    return {**latest, **{key: round(sums[key] / counts[key], 5) for key in sums}}
