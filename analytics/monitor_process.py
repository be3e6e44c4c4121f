"""The ``run_monitor`` process: one evaluator per host under a Redis lock, the dependency probes,
and the ops page's samples in tiers (docs/architecture.md, Monitoring).

Not a Celery task: a dead worker, a full broker or an unreachable database must still raise their
alerts, so the monitor is its own supervised process (the Procfile's ``monitor``; ``make run``
restarts it). Each cycle it takes one snapshot of the host's metrics plus the probes, evaluates
the rules on it (``analytics.monitor.Monitor``) and hands it to the sampler.

The lock (``<REDIS_KEY_PREFIX>:monitor:lock:<host>``) is renewed every cycle; a second monitor on
the host waits as a standby and takes over once the holder's lock expires. While Redis is
unreachable the holder keeps evaluating (that outage is one of its alerts) and a standby waits.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psutil
import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone
from redis.exceptions import LockError

from analytics.alert_delivery import AlertDelivery
from analytics.monitor import Clock, Monitor, database_connection_reset, monitor_samples_store, rules_file
from analytics.ops_series import ops_values, ops_values_average
from config.metrics import MetricSample, metrics_snapshot
from config.redis_pools import redis_client

logger = logging.getLogger(__name__)


def database_probe() -> bool:
    """Whether a query runs now (a broken connection is dropped, so the next probe reconnects)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except DatabaseError:
        database_connection_reset()
        return False


def redis_probe() -> bool:
    try:
        return bool(redis_client().ping())
    except (redis.RedisError, OSError):
        return False


def monitor_lock_key() -> str:
    return f"{settings.REDIS_KEY_PREFIX}:monitor:lock:{socket.gethostname()}"


class TierSampler:
    """Writes the ops page's samples: the finest tier from snapshots ``tiers[0][0]`` seconds
    apart, each coarser one as the average of the finer tier's rows over its interval. Rows are
    dated at the start of their interval; a write the database refuses is logged and dropped
    (samples are for trends; the alerts do not depend on them)."""

    def __init__(self, *, tiers: tuple[tuple[int, int], ...] | None = None) -> None:
        self.tiers = [tier for tier, _ in (tiers or settings.MONITOR_SAMPLE_TIERS)]
        self.previous: tuple[dt.datetime, list[MetricSample]] | None = None
        self.slot: dt.datetime | None = None
        # Per coarser tier: the interval being filled and the finer rows in it.
        self.pending: dict[int, tuple[dt.datetime, list[dict[str, Any]]]] = {}

    @staticmethod
    def _floor(at: dt.datetime, seconds: int) -> dt.datetime:
        epoch = int(at.timestamp())
        return dt.datetime.fromtimestamp(epoch - epoch % seconds, tz=dt.UTC)

    def observe(self, samples: list[MetricSample], now: dt.datetime) -> list[tuple[int, dt.datetime]]:
        """Takes this cycle's snapshot; returns the (tier, instant) rows it wrote."""
        finest = self.tiers[0]
        slot = self._floor(now, finest)
        if self.previous is None:
            self.previous, self.slot = (now, samples), slot
            return []
        if slot == self.slot:
            return []
        # The row covers the interval from the previous snapshot to this one and is dated at the
        # start of the finest slot it began in.
        then, previous = self.previous
        start = self.slot
        assert start is not None
        values = ops_values(previous, samples, (now - then).total_seconds())
        self.previous, self.slot = (now, samples), slot
        written = [(finest, start)]
        self._store(finest, start, values)
        finer_values, finer_at = values, start
        for tier in self.tiers[1:]:
            interval = self._floor(finer_at, tier)
            current = self.pending.get(tier)
            if current is None:
                self.pending[tier] = (interval, [finer_values])
                break
            began, rows = current
            if interval == began:
                rows.append(finer_values)
                break
            # The interval is over: its average is one row of this tier, and one of the next's.
            averaged = ops_values_average(rows)
            self._store(tier, began, averaged)
            written.append((tier, began))
            self.pending[tier] = (interval, [finer_values])
            finer_values, finer_at = averaged, began
        return written

    @staticmethod
    def _store(tier: int, at: dt.datetime, values: dict[str, Any]) -> None:
        try:
            monitor_samples_store(tier_seconds=tier, at=at, values=values)
        except DatabaseError:
            logger.warning("monitor: the %d s sample at %s was not stored (database unavailable)", tier, at)
            database_connection_reset()


_RELEASE_IF = """
if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end
return 0
"""


def _lock_release_if(client: redis.Redis, key: str, value: bytes | None) -> None:
    """Deletes ``key`` only if it still holds ``value`` (atomically: another standby may have
    taken it meanwhile)."""
    if value is not None:
        client.eval(_RELEASE_IF, 1, key, value)


class MonitorProcess:
    """run_monitor's loop: lock, snapshot, evaluate, sample, sleep."""

    def __init__(
        self,
        *,
        clock: Clock = timezone.now,
        interval: float | None = None,
        snapshot: Callable[[], list[MetricSample]] = metrics_snapshot,
        delivery: AlertDelivery | None = None,
        log: Callable[[str], None] = logger.info,
    ) -> None:
        self.clock = clock
        self.interval = settings.MONITOR_INTERVAL_SECONDS if interval is None else interval
        self.snapshot = snapshot
        self.delivery = delivery or AlertDelivery()
        self.monitor = Monitor(
            notify=self.delivery,
            clock=clock,
            snapshot=snapshot,
            probes={"database": database_probe, "redis": redis_probe},
            rules_path=rules_file(),
        )
        self.sampler = TierSampler()
        self.log = log
        self.stopped = threading.Event()
        self.lock = redis.lock.Lock(
            redis_client(), monitor_lock_key(), timeout=settings.MONITOR_LOCK_SECONDS, blocking=False
        )
        self.holding = False
        self.cycles = 0

    def stop(self) -> None:
        self.stopped.set()

    def _token(self) -> str:
        process = psutil.Process()
        return f"{process.pid}:{process.create_time():.3f}:{uuid.uuid4().hex}"

    def _holder_gone(self) -> bool:
        """Whether the lock's holder is a process of this host that no longer runs (killed
        without releasing it): then its lock need not be waited out."""
        raw = self.lock.redis.get(self.lock.name)
        if raw is None:
            return False
        try:
            pid_text, created_text, _ = raw.decode().split(":", 2)
            holder = psutil.Process(int(pid_text))
            return abs(holder.create_time() - float(created_text)) > 0.01  # the pid was reused
        except psutil.NoSuchProcess:
            return True
        except (ValueError, psutil.Error):
            return False

    def _hold_lock(self) -> bool:
        """Whether this process is the host's evaluator now: takes the lock when free (or when
        its holder on this host is dead), renews it when held; keeps evaluating through a Redis
        outage once it holds it."""
        try:
            if self.holding:
                self.lock.reacquire()
                return True
            if self._holder_gone():
                self.log("monitor: the previous monitor is gone; taking its lock")
                _lock_release_if(self.lock.redis, self.lock.name, self.lock.redis.get(self.lock.name))
            if self.lock.acquire(token=self._token()):
                self.holding = True
                self.log(f"monitor: evaluating (lock {monitor_lock_key()})")
                return True
            return False
        except LockError:
            self.holding = False
            self.log("monitor: lost the lock to another monitor; standing by")
            return False
        except (redis.RedisError, OSError):
            return self.holding

    def cycle(self) -> None:
        self.monitor.rules_reload()
        samples = [*self.snapshot(), *self.monitor.probe_samples()]
        self.monitor.evaluate(samples)
        self.sampler.observe(samples, self.clock())
        self.cycles += 1

    def run(self) -> None:
        self.log(f"monitor: every {self.interval:g} s; standing by until the host's lock is free")
        try:
            while not self.stopped.is_set():
                started = time.monotonic()
                if self._hold_lock():
                    try:
                        self.cycle()
                    except Exception:  # one bad cycle (a corrupt metrics file) must not end the monitor
                        logger.exception("monitor: a cycle failed")
                self.stopped.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            if self.holding:
                with contextlib.suppress(LockError, redis.RedisError, OSError):
                    self.lock.release()
            self.delivery.stop()
