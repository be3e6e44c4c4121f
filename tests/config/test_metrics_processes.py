"""The processes' own series in config/metrics.py: gc pauses (Property 31, docs/properties.md#p31).

The gc callback runs inside whatever allocation triggered a collection, which can be a metric
write holding prometheus-client's process-wide, non-reentrant values lock: the callback must only
count in memory, and the counts reach the metrics from ordinary code (the flusher thread, a scrape).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client import Counter, values

from config import metrics
from config.metrics import (
    _GcPauses,
    gc_pause_tracking_start,
    metrics_snapshot,
    process_identity,
    snapshot_value,
)

FORK_COUNTER = Counter("test_forked_writes_total", "Writes of a forked test child.", registry=None)

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


def test_a_fork_during_a_metric_write_leaves_the_child_able_to_write() -> None:
    """A Celery worker's parent runs a flusher and forks its pool: a fork while another thread
    holds the write lock must not hand the child a lock nobody will release."""
    lock = _values_lock()
    holding = threading.Event()

    def writer_mid_write() -> None:
        with lock:
            holding.set()
            time.sleep(0.3)

    thread = threading.Thread(target=writer_mid_write, daemon=True)
    thread.start()
    assert holding.wait(HANG_S)
    pid = os.fork()
    if pid == 0:  # the child: one write, then out without running the parent's cleanup
        try:
            FORK_COUNTER.inc()
        finally:
            os._exit(0)
    thread.join(HANG_S)
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child waited forever for the metrics lock")
