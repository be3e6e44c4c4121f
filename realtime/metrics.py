"""The streams' and the market's series (Property 31, docs/properties.md; README "Metrics").

Conventions and the multiprocess machinery are config/metrics.py's. On the fan-out path nothing is
written per update, per frame or per connection: the fan-out counts in its ``FanoutStats`` (plain
integers) and the metrics flusher's thread writes what changed once a second
(``FanoutMetrics.flush``), so the event loop never writes a metric for the fan-out and the cost
does not grow with the clients or the windows. Connection events are rare next to the frames:
the connection gauge is written as a socket opens and closes, messages received and refused
authentications go through deferred series (counted in memory, written once a second).

The market writes per window from its writer thread: ticks, rows, the writer's lag, the queue's
depth (in windows; ``market_queue_capacity_windows`` is the most it holds). The market's gauges carry
no process labels: one market per host.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import fields
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from config.metrics import (
    LATENCY_BUCKETS,
    Deferred,
    LabelledChildren,
    metrics_enabled,
    metrics_flush_hook_register,
    process_identity,
)

# --- WebSockets --------------------------------------------------------------------------------------
# Endpoints: market_data (/v2/iex, /v2/sip, /v2/test), trade_updates (/stream), dashboard.
STREAM_CONNECTIONS = Gauge(
    "ws_connections",
    "Open WebSocket connections, per process (role, slot) and endpoint.",
    ["role", "slot", "endpoint"],
    multiprocess_mode="livesum",
    registry=None,
)
STREAM_MESSAGES_RECEIVED = Counter(
    "stream_messages_received_total", "Messages received from stream clients.", ["endpoint"], registry=None
)
STREAM_AUTH_FAILURES = Counter(
    "stream_auth_failures_total",
    "Refused stream authentications: bad credentials, no session, or a client blocked after too many.",
    ["endpoint", "reason"],
    registry=None,
)
STREAM_FRAMES_SENT = Counter(
    "stream_frames_sent_total", "Market-data frames written to stream clients.", registry=None
)
STREAM_SENT_BYTES = Counter(
    "stream_sent_bytes_total", "Payload bytes of the market-data frames written.", registry=None
)
STREAM_CONFLATED_WINDOWS = Counter(
    "stream_conflated_windows_total",
    "Windows a connection had folded into its conflated batch instead of sent as they came.",
    registry=None,
)
STREAM_THROTTLED_WINDOWS = Counter(
    "stream_throttled_windows_total",
    "Windows held back because the connection was over its byte budget.",
    registry=None,
)
STREAM_SLOW_CLIENT_CLOSES = Counter(
    "stream_slow_client_closes_total", "Connections closed as slow clients (Alpaca's 407).", registry=None
)
STREAM_FANOUT_WINDOWS = Counter(
    "stream_fanout_windows_total", "Market windows received by the fan-out.", registry=None
)
STREAM_FANOUT_MISSED_WINDOWS = Counter(
    "stream_fanout_missed_windows_total",
    "Market windows the fan-out never received (gaps in the window numbers).",
    registry=None,
)
STREAM_FANOUT_RESUBSCRIBES = Counter(
    "stream_fanout_resubscribes_total",
    "Times the fan-out's Redis subscription was set up again.",
    registry=None,
)
STREAM_FANOUT_LAG = Histogram(
    "stream_fanout_lag_seconds",
    "From the market publishing a window to the fan-out having written it to every socket.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)

_connections = LabelledChildren(STREAM_CONNECTIONS)
_received = Deferred(STREAM_MESSAGES_RECEIVED)
_auth_failures = Deferred(STREAM_AUTH_FAILURES)


def stream_connection_opened(endpoint: str) -> None:
    if metrics_enabled():
        identity = process_identity()
        _connections(identity.role, identity.slot, endpoint).inc()


def stream_connection_closed(endpoint: str) -> None:
    if metrics_enabled():
        identity = process_identity()
        _connections(identity.role, identity.slot, endpoint).dec()


def stream_message_received(endpoint: str) -> None:
    if metrics_enabled():
        _received(endpoint).inc()


def stream_auth_failed(endpoint: str, reason: str) -> None:
    if metrics_enabled():
        _auth_failures(endpoint, reason).inc()


# FanoutStats field -> the counter its increments go to.
_FANOUT_COUNTERS: dict[str, Counter] = {
    "windows": STREAM_FANOUT_WINDOWS,
    "missed_windows": STREAM_FANOUT_MISSED_WINDOWS,
    "resubscribes": STREAM_FANOUT_RESUBSCRIBES,
    "frames": STREAM_FRAMES_SENT,
    "bytes": STREAM_SENT_BYTES,
    "conflated": STREAM_CONFLATED_WINDOWS,
    "throttled": STREAM_THROTTLED_WINDOWS,
    "slow_disconnects": STREAM_SLOW_CLIENT_CLOSES,
}


class FanoutMetrics:
    """Writes what a fan-out's ``FanoutStats`` gained since the last flush, from the metrics
    flusher's thread once a second (``metrics_flush_hook_register``): the event loop only adds to
    plain integers and, per window, the lag to an in-memory histogram. Reading the integers from
    another thread is safe (each read is one object; a window counted just after a read is
    written at the next flush)."""

    def __init__(self, stats: Any) -> None:
        self.stats = stats
        self.enabled = metrics_enabled()
        names = {field.name for field in fields(stats)}
        missing = _FANOUT_COUNTERS.keys() - names
        if missing:
            raise ValueError(f"FanoutStats lacks {sorted(missing)}")
        self.written = dict.fromkeys(_FANOUT_COUNTERS, 0)
        self._lock = threading.Lock()
        if self.enabled:
            _fanouts.add(self)

    def window_done(self, published_at_ns: int | None) -> None:
        """After a window's delivery: when the window says when it was published, the fan-out
        lag (wall clock: the market is another process)."""
        if self.enabled and published_at_ns:
            _fanout_lag().observe(max(0.0, time.time() - published_at_ns / 1e9))

    def flush(self) -> None:
        with self._lock:  # a scrape's flush and the flusher's may overlap
            stats, written = self.stats, self.written
            for name, counter in _FANOUT_COUNTERS.items():
                value = getattr(stats, name)
                if value != written[name]:
                    counter.inc(value - written[name])
                    written[name] = value


_fanouts: weakref.WeakSet[FanoutMetrics] = weakref.WeakSet()
_fanout_lag = Deferred(STREAM_FANOUT_LAG)


def _fanouts_flush() -> None:
    for fanout in list(_fanouts):
        fanout.flush()


metrics_flush_hook_register("stream_fanout", _fanouts_flush)


# --- Market ----------------------------------------------------------------------------------------------
MARKET_TICKS = Counter("market_ticks_total", "Ticks the market produced.", registry=None)
MARKET_WINDOWS = Counter("market_windows_total", "Windows the market produced.", registry=None)
MARKET_WINDOWS_PUBLISHED = Counter(
    "market_windows_published_total", "Windows stored and published to the web processes.", registry=None
)
MARKET_PUBLISH_FAILURES = Counter(
    "market_publish_failures_total", "Stored windows that could not be published (Redis).", registry=None
)
MARKET_ROWS_WRITTEN = Counter(
    "market_rows_written_total", "Rows the writer stored (ticks and bars).", registry=None
)
MARKET_QUEUE_DEPTH = Gauge(
    "market_queue_depth",
    "Windows waiting for the writer.",
    multiprocess_mode="livesum",
    registry=None,
)
MARKET_QUEUE_CAPACITY = Gauge(
    "market_queue_capacity_windows",
    "Windows the writer's queue holds before the simulator waits.",
    multiprocess_mode="livemax",
    registry=None,
)
MARKET_WRITER_LAG = Gauge(
    "market_writer_lag_seconds",
    "From the last committed window's production to its commit.",
    multiprocess_mode="livemax",
    registry=None,
)
MARKET_THROTTLE_WAITS = Counter(
    "market_throttle_waits_total", "Writes the write throttle made wait.", registry=None
)
MARKET_THROTTLE_WAIT_SECONDS = Counter(
    "market_throttle_wait_seconds_total", "Time writes waited for the write throttle.", registry=None
)
MARKET_DATABASE_OUTAGES = Counter(
    "market_database_outages_total", "Database outages the writer went through.", registry=None
)
MARKET_DATABASE_UNAVAILABLE = Gauge(
    "market_database_unavailable",
    "1 while the writer cannot reach the database, else 0.",
    multiprocess_mode="livemax",
    registry=None,
)


def market_window_produced(*, ticks: int, queue_depth: int, queue_capacity: int) -> None:
    if metrics_enabled():
        MARKET_WINDOWS.inc()
        MARKET_TICKS.inc(ticks)
        MARKET_QUEUE_DEPTH.set(queue_depth)
        MARKET_QUEUE_CAPACITY.set(queue_capacity)


def market_window_committed(*, rows: int, lag_s: float, queue_depth: int) -> None:
    if metrics_enabled():
        MARKET_ROWS_WRITTEN.inc(rows)
        MARKET_WRITER_LAG.set(lag_s)
        MARKET_QUEUE_DEPTH.set(queue_depth)


def market_window_published(*, ok: bool) -> None:
    if metrics_enabled():
        (MARKET_WINDOWS_PUBLISHED if ok else MARKET_PUBLISH_FAILURES).inc()


def market_throttle_waited(seconds: float) -> None:
    if metrics_enabled() and seconds > 0:
        MARKET_THROTTLE_WAITS.inc()
        MARKET_THROTTLE_WAIT_SECONDS.inc(seconds)


def market_database_outage(*, begins: bool) -> None:
    if metrics_enabled():
        if begins:
            MARKET_DATABASE_OUTAGES.inc()
        MARKET_DATABASE_UNAVAILABLE.set(1 if begins else 0)
