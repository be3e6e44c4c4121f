"""Property 31 (docs/properties.md#p31) for the cache and the Redis pools, and the deferred series
they use (config/metrics.py): a cache read moves the hits or misses of its layer and data type, a
waiting reader moves the stampede waits, a Redis failure the errors, and each process reports
its pools' use. Against the real Redis."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import Counter, Histogram

from config.cache import CacheConfig, CacheManager
from config.metrics import (
    LATENCY_BUCKETS,
    Deferred,
    metrics_flush,
    metrics_snapshot,
    process_identity,
    snapshot_value,
)
from config.redis_pools import redis_client
from tests.clock import ManualClock
from tests.processes import free_port

TYPE = "slow"


def value(name: str, labels: dict[str, str] | None = None) -> float:
    return snapshot_value(metrics_snapshot(), name, labels) or 0.0


@pytest.fixture
def manager() -> Iterator[CacheManager]:
    config = dataclasses.replace(CacheConfig.from_settings(), lock_wait_seconds=2.0, ttls={TYPE: 30.0})
    # A clock that stands still: the L1 copy must not expire between the reads of a loaded machine.
    made = CacheManager(config=config, clock=ManualClock(time.time()), listen=False)
    yield made
    made.close()


def test_a_cache_read_moves_the_hits_and_misses_of_its_layer(manager: CacheManager) -> None:
    series = {
        (name, layer): value(name, {"layer": layer, "data_type": TYPE})
        for name in ("cache_hits_total", "cache_misses_total")
        for layer in ("L1", "L2")
    }

    def moved() -> dict[tuple[str, str], float]:
        return {key: value(key[0], {"layer": key[1], "data_type": TYPE}) - was for key, was in series.items()}

    assert manager.cached("metrics-key", TYPE, lambda: 1) == 1  # L1 and L2 miss: loaded
    assert moved() == {
        ("cache_hits_total", "L1"): 0,
        ("cache_hits_total", "L2"): 0,
        ("cache_misses_total", "L1"): 1,
        ("cache_misses_total", "L2"): 1,
    }
    assert manager.cached("metrics-key", TYPE, lambda: 2) == 1  # L1 hit
    manager.l1.clear()
    assert manager.cached("metrics-key", TYPE, lambda: 3) == 1  # L1 miss, L2 hit
    assert moved() == {
        ("cache_hits_total", "L1"): 1,
        ("cache_hits_total", "L2"): 1,
        ("cache_misses_total", "L1"): 2,
        ("cache_misses_total", "L2"): 1,
    }


def test_a_reader_that_waits_for_another_load_moves_the_stampede_waits(manager: CacheManager) -> None:
    before = value("cache_stampede_waits_total", {"data_type": TYPE})
    started = threading.Event()

    def slow() -> int:
        started.set()
        time.sleep(0.3)
        return 7

    loader = threading.Thread(target=lambda: manager.cached("hot-key", TYPE, slow))
    loader.start()
    assert started.wait(10)
    assert manager.cached("hot-key", TYPE, lambda: 8) == 7  # waited for the first load's answer
    loader.join(10)
    assert value("cache_stampede_waits_total", {"data_type": TYPE}) - before == 1


def test_redis_failures_of_the_cache_are_counted() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    manager = CacheManager(
        config=dataclasses.replace(CacheConfig.from_settings(), ttls={TYPE: 30.0}),
        redis_factory=lambda: redis.Redis.from_url(dead, socket_connect_timeout=0.5),
        listen=False,
    )
    before = value("cache_redis_errors_total", {"operation": "reading"})
    assert manager.cached("k", TYPE, lambda: 1) == 1
    assert value("cache_redis_errors_total", {"operation": "reading"}) - before == 1


def test_each_process_reports_its_redis_pool() -> None:
    client = redis_client()
    identity = process_identity()
    labels = {"role": identity.role, "slot": identity.slot, "pool": "sync"}
    held = client.connection_pool.get_connection()
    try:
        metrics_flush()
        in_use = value("redis_pool_connections_in_use", labels)
        assert in_use >= 1
        assert value("redis_pool_connections_max", labels) == client.connection_pool.max_connections
    finally:
        client.connection_pool.release(held)
    metrics_flush()
    assert value("redis_pool_connections_in_use", labels) == in_use - 1


# --- The deferred series ---------------------------------------------------------------------------------

DEFERRED_COUNTER = Counter("test_deferred_total", "A test's counter.", ["case"], registry=None)
DIRECT_HISTOGRAM = Histogram(
    "test_direct_seconds", "Observed directly.", ["case"], buckets=LATENCY_BUCKETS, registry=None
)
DEFERRED_HISTOGRAM = Histogram(
    "test_deferred_seconds", "Observed through Deferred.", ["case"], buckets=LATENCY_BUCKETS, registry=None
)


def test_deferred_figures_are_written_at_the_flush_as_direct_writes_would_have_been() -> None:
    counter, histogram = Deferred(DEFERRED_COUNTER), Deferred(DEFERRED_HISTOGRAM)
    observed = [0.0004, 0.002, 0.002, 0.0021, 0.008, 0.0095, 3.0, 42.0]
    case = f"c{time.monotonic_ns()}"
    for amount in observed:
        histogram(case).observe(amount)
        DIRECT_HISTOGRAM.labels(case).observe(amount)
        counter(case).inc(2)
    metrics_flush()
    samples = metrics_snapshot()
    assert snapshot_value(samples, "test_deferred_total", {"case": case}) == 2 * len(observed)
    direct = {
        (s.name.replace("direct", "x"), s.labels.get("le")): s.value
        for s in samples
        if s.name.startswith("test_direct_seconds") and s.labels.get("case") == case
    }
    deferred = {
        (s.name.replace("deferred", "x"), s.labels.get("le")): s.value
        for s in samples
        if s.name.startswith("test_deferred_seconds") and s.labels.get("case") == case
    }
    assert deferred == pytest.approx(direct)
    assert len(deferred) == len(LATENCY_BUCKETS) + 3  # every bucket, +Inf, _count and _sum


UNLABELLED = Counter("test_unlabelled_deferred_total", "A counter without labels.", registry=None)


def test_an_unlabelled_metric_is_its_own_deferred_child() -> None:
    before = value("test_unlabelled_deferred_total")
    Deferred(UNLABELLED)().inc(3)
    metrics_flush()
    assert value("test_unlabelled_deferred_total") - before == 3
