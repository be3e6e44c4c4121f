"""Prometheus metrics of every process on a host, through one directory (docs/architecture.md,
Metrics; Property 31, docs/properties.md).

prometheus-client's multiprocess mode: each process writes its values to memory-mapped files in
``PROMETHEUS_MULTIPROC_DIR`` and whichever process answers ``/metrics`` merges them. The client
picks that mode when it is first imported, so this module sets the directory before importing it,
and ``config/__init__.py`` imports this module first: every entry point (manage.py, config.asgi,
config.wsgi, celery -A config, config.gunicorn_conf) loads the ``config`` package before anything
else. The directory is ``VAR_DIR/metrics`` unless the environment names one. It is emptied by the
launcher (``make run``'s process manager, ``metrics_directory_clear``), never by a process that
restarts: a restarted worker would wipe its siblings' counters.

Conventions: base units and Prometheus suffixes (``_total``, ``_seconds``, ``_bytes``), bounded
labels only (route names, endpoints, task names, roles and slots; never raw paths, user ids or
pids). Per-process figures are labelled by ``role`` (web, ws, worker, beat, market, monitor) and
``slot`` (which of that role's processes: a gunicorn worker's or a Celery child's index), so a
restarted process takes its predecessor's series.

Metrics are created with ``registry=None``: their values live in the files, which the host
collector below merges; the client's default registry (with its own process and GC collectors,
which would report only the scraping process) is not used.

``METRICS_ENABLED=false`` is the baseline the cost is measured against (``benchmark api`` and
``benchmark stream``): every call site asks ``metrics_enabled()`` first and writes nothing.

The reader the monitor uses:

- ``metrics_snapshot() -> list[MetricSample]``: every sample of every process on this host, merged
  as ``/metrics`` shows them (counters summed over processes; histograms as their ``_bucket``
  (cumulative, with an ``le`` label), ``_sum`` and ``_count`` samples; gauges per their mode), plus
  the per-process figures (RSS, CPU, open files) and the collect-time gauges the apps register
  (``collect_time_gauge_register``).
- ``snapshot_value(samples, name, labels_filter=None, agg="sum") -> float | None``: one number
  out of a snapshot: the samples named ``name`` whose labels include every ``labels_filter`` item,
  aggregated by ``agg`` (``sum``, ``max``, ``min``, ``avg``, ``count``); ``None`` when none
  matches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

MULTIPROC_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def metrics_directory_for(environment: Mapping[str, str]) -> Path:
    """The multiprocess directory that ``environment`` names: ``PROMETHEUS_MULTIPROC_DIR``, else
    ``VAR_DIR/metrics`` (VAR_DIR as the settings read it)."""
    named = environment.get(MULTIPROC_DIR_VARIABLE)
    if named:
        return Path(named)
    var_dir = environment.get("VAR_DIR") or str(Path(__file__).resolve().parent.parent / "var")
    return Path(var_dir) / "metrics"


def metrics_directory() -> Path:
    """This process's multiprocess directory (set when this module was first imported)."""
    return Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])


# What the operator's environment said, before this process filled it in (the launcher passes
# its children the directory of the environment it gives them: config/process_manager.py).
OPERATOR_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
os.environ[MULTIPROC_DIR_VARIABLE] = str(metrics_directory_for(os.environ))
metrics_directory().mkdir(parents=True, exist_ok=True)

# The multiprocess value class is chosen when prometheus_client is first imported: after the above.
import atexit  # noqa: E402
import bisect  # noqa: E402
import contextlib  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values  # noqa: E402
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Latency buckets, in seconds: 1 ms steps up to 10 ms, so a 2 ms read and an 8 ms one fall in
# different buckets, then coarser up to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.004,
    0.005,
    0.006,
    0.008,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# Counts per unit of work (queries per request, frames per batch).
COUNT_BUCKETS: tuple[float, ...] = (0, 1, 2, 3, 5, 10, 20, 50, 100, 500)
# Sizes in bytes (frames, payloads).
SIZE_BUCKETS: tuple[float, ...] = (256, 1024, 4096, 16384, 65536, 262144, 1048576)


# --- On or off -------------------------------------------------------------------------------------
_enabled: bool | None = None


def metrics_enabled() -> bool:
    """``settings.METRICS_ENABLED``, read once per process (each call site asks before writing)."""
    global _enabled
    if _enabled is None:
        from django.conf import settings

        _enabled = bool(getattr(settings, "METRICS_ENABLED", True))
    return _enabled


def metrics_enabled_reset() -> None:
    """Forget the cached switch, so the next ``metrics_enabled()`` reads the settings again."""
    global _enabled
    _enabled = None


# --- Process identity: role and slot ---------------------------------------------------------------
@dataclass
class ProcessIdentity:
    role: str = "other"
    slot: str = "0"


_identity = ProcessIdentity()
_PROCESS_FILE_PREFIX = "process_"


def process_identity() -> ProcessIdentity:
    return _identity


def process_identity_set(*, role: str, slot: int | str = 0) -> None:
    """Names this process for the per-process series (RSS, CPU, open files, GC, database queries)
    and registers it in the metrics directory, where the process that answers ``/metrics`` reads
    its RSS, CPU and open files (no writes of its own needed). Call it once the process knows
    what it is: gunicorn's post_fork, Celery's worker_process_init, the market's start."""
    _identity.role = role
    _identity.slot = str(slot)
    if not metrics_enabled():
        return
    pid = os.getpid()
    try:
        created = psutil.Process(pid).create_time()
    except psutil.Error:
        created = 0.0
    path = metrics_directory() / f"{_PROCESS_FILE_PREFIX}{pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": pid, "role": role, "slot": str(slot), "created": created}))
    tmp.replace(path)
    gc_pause_tracking_start()


def metrics_process_dead(pid: int, directory: Path | None = None) -> None:
    """What a supervisor calls when a child exits (gunicorn's child_exit, Celery's
    worker_process_shutdown, the process manager): drops the process's live gauges and its
    registration."""
    directory = directory or metrics_directory()
    mark_process_dead(pid, str(directory))
    (directory / f"{_PROCESS_FILE_PREFIX}{pid}.json").unlink(missing_ok=True)


def metrics_directory_clear(directory: Path) -> None:
    """Empties ``directory``: only the launcher (``make run``), before it starts any process."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)


def _registered_processes() -> list[dict[str, Any]]:
    """The live registered processes, one per (role, slot): the newest if two claim it."""
    newest: dict[tuple[str, str], dict[str, Any]] = {}
    for path in metrics_directory().glob(f"{_PROCESS_FILE_PREFIX}*.json"):
        try:
            entry = json.loads(path.read_text())
            alive = psutil.Process(int(entry["pid"]))
            if entry["created"] and abs(alive.create_time() - float(entry["created"])) > 1.0:
                raise psutil.NoSuchProcess(int(entry["pid"]))  # the pid was reused
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            path.unlink(missing_ok=True)
            continue
        except (OSError, ValueError, KeyError, psutil.Error):
            continue
        entry["process"] = alive
        key = (entry["role"], entry["slot"])
        if key not in newest or entry["created"] > newest[key]["created"]:
            newest[key] = entry
    return list(newest.values())


def _process_families() -> list[Metric]:
    rss = GaugeMetricFamily("process_resident_memory_bytes", "Resident set size.", labels=["role", "slot"])
    cpu = CounterMetricFamily(
        "process_cpu_seconds",
        "CPU time (user + system) since the process started.",
        labels=["role", "slot"],
    )
    fds = GaugeMetricFamily("process_open_fds", "Open file descriptors.", labels=["role", "slot"])
    started = GaugeMetricFamily(
        "process_start_time_seconds", "Start time since the Unix epoch.", labels=["role", "slot"]
    )
    for entry in _registered_processes():
        process: psutil.Process = entry["process"]
        labels = [entry["role"], entry["slot"]]
        try:
            with process.oneshot():
                rss.add_metric(labels, float(process.memory_info().rss))
                times = process.cpu_times()
                cpu.add_metric(labels, float(times.user + times.system))
                fds.add_metric(labels, float(process.num_fds()))
                started.add_metric(labels, float(process.create_time()))
        except psutil.Error:
            continue
    return [rss, cpu, fds, started]


# --- GC pauses --------------------------------------------------------------------------------------
GC_PAUSE_SECONDS = Counter(
    "python_gc_pause_seconds_total",
    "Time spent in the cyclic garbage collector.",
    ["role", "slot", "generation"],
    registry=None,
)
GC_COLLECTIONS = Counter(
    "python_gc_collections_total",
    "Collections of the cyclic garbage collector.",
    ["role", "slot", "generation"],
    registry=None,
)
# A collection can run hundreds of times a second under load and each metric write is a locked
# file write, so the pauses add up in memory and a flusher thread writes them at most once per this
# interval. The gc callback itself must never write a metric: it runs inside whatever allocation
# triggered the collection, which can be a metric write holding prometheus-client's process-wide,
# non-reentrant values lock, and a write from the callback would wait on that lock forever.
GC_FLUSH_INTERVAL_S = 1.0
_GC_GENERATIONS = (0, 1, 2)


class _GcPauses:
    """The gc callback and the flusher. The callback only adds to running totals it never resets
    (preallocated lists, mutated in place: no lock, no allocation worth a collection); the flusher
    writes the difference since its last flush, so nothing a collection adds while a flush runs
    is lost."""

    def __init__(self) -> None:
        self.started = 0.0
        # generation -> [seconds, collections], cumulative since tracking started.
        self.totals: list[list[float]] = [[0.0, 0.0] for _ in _GC_GENERATIONS]
        self.flushed: list[list[float]] = [[0.0, 0.0] for _ in _GC_GENERATIONS]
        self.flush_lock = threading.Lock()  # the flusher's, never taken by the callback

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self.started = now
            return
        generation = info.get("generation", 0)
        entry = self.totals[generation if 0 <= generation <= 2 else 2]
        entry[0] += now - self.started
        entry[1] += 1

    def flush(self) -> None:
        """Writes what the callback added since the last flush. Ordinary code only (the flusher
        thread, a scrape, a test), never the gc callback."""
        with self.flush_lock:
            role, slot = _identity.role, _identity.slot
            for generation in _GC_GENERATIONS:
                seconds, count = self.totals[generation]
                done = self.flushed[generation]
                if count > done[1]:
                    GC_PAUSE_SECONDS.labels(role, slot, str(generation)).inc(seconds - done[0])
                    GC_COLLECTIONS.labels(role, slot, str(generation)).inc(count - done[1])
                    done[0], done[1] = seconds, count


_gc_pauses: _GcPauses | None = None


def gc_pause_tracking_start() -> None:
    global _gc_pauses
    if _gc_pauses is None:
        _gc_pauses = _GcPauses()
        gc.callbacks.append(_gc_pauses)
    _flusher_ensure()


def gc_pauses_flush() -> None:
    """Writes the gc pauses counted so far now (a scrape of this process, tests)."""
    if _gc_pauses is not None:
        _gc_pauses.flush()


# --- Deferred series: counted in memory, written once a second ---------------------------------------
# A hot path (every request, every cache read, every stream window) adds to an in-memory figure
# under a plain lock (tens of nanoseconds, no file), and the process's flusher thread writes the
# sums once per FLUSH_INTERVAL_S, so the cost of a series no longer grows with the traffic. The
# in-memory lock is never held while a metric is written, and the gc callback takes neither.
# What a scrape of this process, an exiting process (atexit) and the flusher write is the same.
FLUSH_INTERVAL_S = GC_FLUSH_INTERVAL_S
_deferred_lock = threading.Lock()
_deferred: list[DeferredCounterChild | DeferredHistogramChild] = []
_flusher_running = False


class DeferredCounterChild:
    __slots__ = ("child", "pending")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with _deferred_lock:
            self.pending += amount
            if not _flusher_running:
                _flusher_ensure_locked()

    def _take(self) -> float:
        taken, self.pending = self.pending, 0.0
        return taken

    def _write(self, taken: float) -> None:
        if taken:
            self.child.inc(taken)


class DeferredHistogramChild:
    """A histogram child's observations counted per bucket in memory; the flush adds each
    bucket's count and the sum as ``Histogram.observe`` would have, one write per bucket used."""

    __slots__ = ("bounds", "child", "counts", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds: list[float] = list(child._upper_bounds)
        self.counts = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, amount: float) -> None:
        index = bisect.bisect_left(self.bounds, amount)  # the first bound >= amount: Prometheus' le
        with _deferred_lock:
            self.counts[index] += 1
            self.total += amount
            if not _flusher_running:
                _flusher_ensure_locked()

    def _take(self) -> tuple[list[int], float] | None:
        if not any(self.counts):
            return None
        taken = (self.counts, self.total)
        self.counts, self.total = [0] * len(self.bounds), 0.0
        return taken

    def _write(self, taken: tuple[list[int], float] | None) -> None:
        if taken is None:
            return
        counts, total = taken
        # prometheus-client's Histogram child: one value per bucket (non-cumulative) and the sum.
        self.child._sum.inc(total)
        for index, count in enumerate(counts):
            if count:
                self.child._buckets[index].inc(count)


class Deferred:
    """A metric's deferred children by label values (as ``LabelledChildren``, but counted in
    memory and written by the flusher): ``Deferred(COUNTER)(*labels).inc()``,
    ``Deferred(HISTOGRAM)(*labels).observe(seconds)``."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self.metric = metric
        self._histogram = isinstance(metric, Histogram)
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            # An unlabelled metric is its own (only) child.
            made = self.metric.labels(*values) if values else self.metric
            with _deferred_lock:
                child = self._children.get(values)
                if child is None:
                    child = DeferredHistogramChild(made) if self._histogram else DeferredCounterChild(made)
                    self._children[values] = child
                    _deferred.append(child)
        return child


# Per-process figures a process writes itself once a second (its Redis pools' use): what the
# process that answers /metrics cannot read of another process.
_flush_hooks: dict[str, Callable[[], None]] = {}


def metrics_flush_hook_register(name: str, function: Callable[[], None]) -> None:
    """Registers (or replaces) ``function``, called at every flush of this process (the flusher
    thread, once a second): for gauges of this process's own state, written with its role and
    slot. It runs on the flusher thread, so it reads what it measures without awaiting anything."""
    _flush_hooks[name] = function


def metrics_flush() -> None:
    """Writes every deferred figure, the gc pauses and the flush hooks' gauges of this process now
    (the flusher does it once a second; a scrape, an exiting process and tests call it)."""
    with _deferred_lock:
        taken = [(child, child._take()) for child in _deferred]
    for child, figures in taken:
        child._write(figures)  # type: ignore[arg-type]
    gc_pauses_flush()
    for name, function in list(_flush_hooks.items()):
        try:
            function()
        except Exception:
            logger.warning("metrics: flush hook %s failed", name, exc_info=True)


def _flusher_run(interval: float) -> None:
    while True:
        time.sleep(interval)
        try:
            metrics_flush()
        except Exception:  # a full disk or a removed directory must not end the flusher
            logger.warning("metrics: writing the deferred figures failed", exc_info=True)


def _flusher_ensure_locked() -> None:
    global _flusher_running
    _flusher_running = True
    threading.Thread(
        target=_flusher_run, args=(FLUSH_INTERVAL_S,), name="metrics-flusher", daemon=True
    ).start()


def _flusher_ensure() -> None:
    """One daemon flusher per process, started at the first deferred figure or gc tracking."""
    with _deferred_lock:
        if not _flusher_running:
            _flusher_ensure_locked()


def _values_lock() -> Any:
    """prometheus-client's process-wide lock, which every multiprocess value write holds (the
    closure of its value class; None if a later client keeps it elsewhere)."""
    write = values.ValueClass.inc
    cells = dict(zip(write.__code__.co_freevars, write.__closure__ or (), strict=False))
    cell = cells.get("lock")
    return None if cell is None else cell.cell_contents


# A fork while the flusher thread is inside a write would hand the child a lock held by a thread
# that does not exist there, and the child's first metric write would wait forever (a Celery
# worker's parent runs a flusher and forks its pool's children). So the locks a write takes are
# held across the fork by the forking thread, and released on both sides.
_FORK_LOCKS: list[Any] = []


def _before_fork() -> None:
    gc_lock = _gc_pauses.flush_lock if _gc_pauses is not None else None
    _FORK_LOCKS[:] = [lock for lock in (gc_lock, _deferred_lock, _values_lock()) if lock is not None]
    for lock in _FORK_LOCKS:
        lock.acquire()


def _after_fork_in_parent() -> None:
    for lock in reversed(_FORK_LOCKS):
        lock.release()
    _FORK_LOCKS.clear()


def _after_fork_in_child() -> None:
    # Threads do not survive a fork, and what the parent had counted is the parent's to write.
    global _flusher_running
    _after_fork_in_parent()
    _flusher_running = False
    for child in _deferred:
        child._take()
    if _gc_pauses is not None:
        for generation in _GC_GENERATIONS:
            _gc_pauses.flushed[generation][:] = _gc_pauses.totals[generation]


def _flush_at_exit() -> None:
    with contextlib.suppress(Exception):  # the directory may be gone (a test's temporary one)
        metrics_flush()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
atexit.register(_flush_at_exit)


# --- Collect-time gauges ----------------------------------------------------------------------------
# Figures read when /metrics (or a snapshot) is collected rather than written as they change:
# broker queue length, outbox size, job runs by status, the Redis pool. Each returns its families;
# one that fails (the database or Redis down) is logged and skipped, never fails the scrape.
CollectTimeGauge = Callable[[], Iterable[Metric]]
_collect_time_gauges: dict[str, CollectTimeGauge] = {}


def collect_time_gauge_register(name: str, function: CollectTimeGauge) -> None:
    """Registers (or replaces) a collect-time source under ``name``; apps call it from ready()."""
    _collect_time_gauges[name] = function


COLLECT_ERRORS = Counter(
    "metrics_collect_errors_total",
    "Collect-time sources that failed during a scrape.",
    ["source"],
    registry=None,
)


# The sources whose last read failed. During an outage the monitor collects every few seconds: the
# first failure is logged with its traceback, the next ones as one line each until the source
# reads again (logged once too), so the log shows the outage without burying everything else.
_failing_sources: set[str] = set()
_failing_lock = threading.Lock()


def _collect_time_families() -> list[Metric]:
    families: list[Metric] = []
    for name, function in list(_collect_time_gauges.items()):
        try:
            families.extend(function())
        except Exception as error:
            with _failing_lock:
                first = name not in _failing_sources
                _failing_sources.add(name)
            if first:
                logger.warning("metrics: collect-time source %s failed", name, exc_info=True)
            else:
                logger.warning(
                    "metrics: collect-time source %s still failing: %s: %s",
                    name,
                    type(error).__name__,
                    str(error).strip().splitlines()[0] if str(error).strip() else "",
                )
            if metrics_enabled():
                COLLECT_ERRORS.labels(name).inc()
        else:
            with _failing_lock:
                recovered = name in _failing_sources
                _failing_sources.discard(name)
            if recovered:
                logger.info("metrics: collect-time source %s reads again", name)
    return families


_LIVE_GAUGE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")


def _dead_processes_forget(directory: Path) -> None:
    """Drops the live gauges of processes that are gone without a supervisor saying so (killed,
    or a process whose supervisor calls nothing: daphne, the market)."""
    for path in directory.glob("gauge_live*.db"):
        match = _LIVE_GAUGE_FILE.match(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            mark_process_dead(int(match.group(1)), str(directory))


class _HostCollector:
    """Everything ``/metrics`` shows: the merged files plus the per-process and collect-time
    families."""

    def collect(self) -> Iterable[Metric]:
        directory = metrics_directory()
        metrics_flush()
        _dead_processes_forget(directory)
        yield from MultiProcessCollector(None, path=str(directory)).collect()
        yield from _process_families()
        yield from _collect_time_families()


def _host_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_HostCollector())
    return registry


def metrics_exposition() -> bytes:
    """The Prometheus text format of every process on this host."""
    return generate_latest(_host_registry())


# --- The reader -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSample:
    name: str
    labels: dict[str, str] = field(hash=False)
    value: float


def metrics_snapshot() -> list[MetricSample]:
    """Every sample on this host right now (see the module's docstring)."""
    samples: list[MetricSample] = []
    for family in _HostCollector().collect():
        for sample in family.samples:
            samples.append(
                MetricSample(name=sample.name, labels=dict(sample.labels), value=float(sample.value))
            )
    return samples


_AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "sum": lambda values: float(sum(values)),
    "max": lambda values: float(max(values)),
    "min": lambda values: float(min(values)),
    "avg": lambda values: float(sum(values)) / len(values),
    "count": lambda values: float(len(values)),
}


def snapshot_value(
    samples: Iterable[MetricSample],
    name: str,
    labels_filter: dict[str, str] | None = None,
    agg: str = "sum",
) -> float | None:
    """The samples named ``name`` whose labels include every item of ``labels_filter``,
    aggregated by ``agg`` (sum, max, min, avg, count); None when no sample matches."""
    if agg not in _AGGREGATES:
        raise ValueError(f"agg must be one of {sorted(_AGGREGATES)}, not {agg!r}")
    wanted = (labels_filter or {}).items()
    values = [
        sample.value
        for sample in samples
        if sample.name == name and all(sample.labels.get(key) == value for key, value in wanted)
    ]
    return _AGGREGATES[agg](values) if values else None


def histogram_quantile(
    samples: Iterable[MetricSample], name: str, quantile: float, labels_filter: dict[str, str] | None = None
) -> float | None:
    """Prometheus's histogram_quantile over the ``<name>_bucket`` samples matching
    ``labels_filter`` (summed over every other label); None without observations."""
    wanted = (labels_filter or {}).items()
    buckets: dict[float, float] = {}
    for sample in samples:
        if sample.name == f"{name}_bucket" and all(sample.labels.get(k) == v for k, v in wanted):
            bound = float(sample.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + sample.value
    if not buckets:
        return None
    bounds = sorted(buckets)
    counts = [buckets[bound] for bound in bounds]
    total = counts[-1]
    if total <= 0:
        return None
    rank = quantile * total
    index = bisect.bisect_left(counts, rank)
    if index >= len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else bounds[-1]
    lower_bound = bounds[index - 1] if index > 0 else 0.0
    lower_count = counts[index - 1] if index > 0 else 0.0
    upper_bound, upper_count = bounds[index], counts[index]
    if upper_count == lower_count:
        return upper_bound
    return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (upper_count - lower_count)


# --- Helpers for call sites ------------------------------------------------------------------------
class LabelledChildren:
    """A metric's children by label values, cached: ``labels()`` validates and locks on every
    call, which a hot path (every request, every batch window) should not pay each time."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.get(values)
                if child is None:
                    child = self.metric.labels(*values)
                    self._children[values] = child
        return child
