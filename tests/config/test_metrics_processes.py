"""The processes' own series in config/metrics.py: gc pauses (Property 31, docs/properties.md#p31).

The gc callback runs inside whatever allocation triggered a collection, which can be a metric
write holding prometheus-client's process-wide, non-reentrant values lock: the callback must only
count in memory, and the counts reach the metrics from ordinary code (the flusher thread, a scrape).
"""

from __future__ import annotations

import contextlib
import gc
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import values

from config import metrics
from config.metrics import (
    _GcPauses,
    gc_pause_tracking_start,
    metrics_snapshot,
    process_identity,
    snapshot_value,
)

# How long a collection may take before the test calls the process hung (a hang detector, not a
# timing assertion: a collection takes milliseconds).
HANG_S = 20.0


def _values_lock() -> threading.Lock:
    """prometheus-client's process-wide lock, which every multiprocess value write holds."""
    write = values.ValueClass.inc
    cells = dict(zip(write.__code__.co_freevars, write.__closure__ or (), strict=True))
    lock = cells["lock"].cell_contents
    assert isinstance(lock, type(threading.Lock()))
    return lock


@pytest.fixture
def pauses() -> Iterator[_GcPauses]:
    tracker = _GcPauses()
    gc.callbacks.append(tracker)
    yield tracker
    gc.callbacks.remove(tracker)


def _collections(generation: str) -> float:
    identity = process_identity()
    labels = {"role": identity.role, "slot": identity.slot, "generation": generation}
    return snapshot_value(metrics_snapshot(), "python_gc_collections_total", labels) or 0.0


def test_a_collection_during_a_metric_write_does_not_hang_the_process(pauses: _GcPauses) -> None:
    lock = _values_lock()
    done = threading.Event()

    def write_then_collect() -> None:
        lock.acquire()  # as inside Counter.inc(), where an allocation can start a collection
        try:
            gc.collect()
            done.set()
        finally:
            with contextlib.suppress(RuntimeError):  # released below to free a hung callback
                lock.release()

    writer = threading.Thread(target=write_then_collect, daemon=True)
    writer.start()
    writer.join(HANG_S)
    hung = writer.is_alive()
    if hung:
        lock.release()  # lets the stuck callback finish, so the rest of the session can write
        writer.join(HANG_S)
    assert not hung, "the gc callback waited for the metrics lock its own thread held"
    assert done.is_set()


def test_the_counted_pauses_reach_the_metrics_on_the_next_flush(pauses: _GcPauses) -> None:
    # The series is the process's (the process's own tracker may flush into it meanwhile): the
    # checks that nothing was written look at this tracker's own bookkeeping.
    before = _collections("2")
    gc.collect()
    gc.collect()
    assert pauses.totals[2][1] >= 2  # counted in memory...
    assert pauses.flushed[2][1] == 0  # ...not written by the callback
    pauses.flush()
    assert pauses.flushed[2] == pauses.totals[2]
    assert _collections("2") >= before + 2


def test_the_flusher_thread_writes_the_pauses_without_anyone_asking() -> None:
    gc_pause_tracking_start()
    assert any(thread.name == "metrics-flusher" for thread in threading.enumerate())
    tracker = metrics._gc_pauses
    assert tracker is not None
    before = tracker.flushed[2][1]
    gc.collect()
    deadline = time.monotonic() + HANG_S
    while tracker.flushed[2][1] <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert tracker.flushed[2][1] > before
