"""The browser's series: the dashboard's own reports (``POST /v2/metrics/frontend``) added up
(Property 31, docs/properties.md; README "Metrics").

A report covers one page's last interval (30 s by default): counts (renders, updates, long tasks,
frames, dropped frames) are added to counters, and the interval's 95th-percentile render time and
its JS heap are observed once per report, so the histograms' quantiles are over reports. Labels
are bounded whatever a client sends: a page or renderer this server does not serve is ``other``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

from config.metrics import LATENCY_BUCKETS, Deferred, metrics_enabled

if TYPE_CHECKING:
    from analytics.services import FrontendFigures

FRONTEND_PAGES = frozenset({"dashboard"})
FRONTEND_RENDERERS = frozenset({"selective", "naive"})
OTHER = "other"
_LABELS = ["page", "renderer"]

FRONTEND_REPORTS = Counter(
    "frontend_reports_total", "Performance reports the pages sent.", _LABELS, registry=None
)
FRONTEND_RENDERS = Counter(
    "frontend_renders_total", "Renders (store flushes) the pages made.", _LABELS, registry=None
)
FRONTEND_UPDATES = Counter(
    "frontend_updates_total", "State changes the pages rendered.", _LABELS, registry=None
)
FRONTEND_LONG_TASKS = Counter(
    "frontend_long_tasks_total", "Long tasks (over 50 ms) in the pages.", _LABELS, registry=None
)
FRONTEND_LONG_TASK_SECONDS = Counter(
    "frontend_long_task_seconds_total", "Time in the pages' long tasks.", _LABELS, registry=None
)
FRONTEND_FRAMES = Counter("frontend_frames_total", "Animation frames the pages drew.", _LABELS, registry=None)
FRONTEND_DROPPED_FRAMES = Counter(
    "frontend_dropped_frames_total", "Animation frames the pages missed (at 60 Hz).", _LABELS, registry=None
)
FRONTEND_RENDER_P95 = Histogram(
    "frontend_render_p95_seconds",
    "Each report's 95th-percentile render time.",
    _LABELS,
    buckets=LATENCY_BUCKETS,
    registry=None,
)
FRONTEND_RENDER_MAX = Histogram(
    "frontend_render_max_seconds",
    "Each report's slowest render.",
    _LABELS,
    buckets=LATENCY_BUCKETS,
    registry=None,
)
FRONTEND_JS_HEAP = Histogram(
    "frontend_js_heap_bytes",
    "Each report's JS heap (Chromium only).",
    _LABELS,
    buckets=tuple(float(mb * 1024 * 1024) for mb in (8, 16, 32, 64, 128, 256, 512, 1024)),
    registry=None,
)
_counters = [
    (Deferred(FRONTEND_RENDERS), "renders", 1.0),
    (Deferred(FRONTEND_UPDATES), "updates", 1.0),
    (Deferred(FRONTEND_LONG_TASKS), "long_tasks", 1.0),
    (Deferred(FRONTEND_LONG_TASK_SECONDS), "long_task_ms", 0.001),
    (Deferred(FRONTEND_FRAMES), "frames", 1.0),
    (Deferred(FRONTEND_DROPPED_FRAMES), "dropped_frames", 1.0),
]
_reports = Deferred(FRONTEND_REPORTS)
_render_p95 = Deferred(FRONTEND_RENDER_P95)
_render_max = Deferred(FRONTEND_RENDER_MAX)
_heap = Deferred(FRONTEND_JS_HEAP)


def frontend_report_count(*, page: str, renderer: str, figures: FrontendFigures) -> None:
    """Adds one stored report to the browser series."""
    if not metrics_enabled():
        return
    labels = (
        page if page in FRONTEND_PAGES else OTHER,
        renderer if renderer in FRONTEND_RENDERERS else OTHER,
    )
    _reports(*labels).inc()
    for children, name, scale in _counters:
        value = getattr(figures, name)
        if value:
            children(*labels).inc(value * scale)
    if figures.renders:
        _render_p95(*labels).observe(figures.render_ms_p95 / 1000.0)
        _render_max(*labels).observe(figures.render_ms_max / 1000.0)
    if figures.js_heap_bytes is not None:
        _heap(*labels).observe(float(figures.js_heap_bytes))
