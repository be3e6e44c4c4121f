"""A quiet machine before measuring: every benchmark waits (up to ``BENCHMARK_QUIET_WAIT_S``) for
the 1-minute load average to fall below one per core and for the cores to be idle now, and a run
that starts above either is marked noisy: its timed rows print "noisy" instead of "yes", since a
speed goal met on a loaded machine proves nothing either way (sizes and counts, ``Row.load_free``,
keep their verdict) (docs/properties.md, the benchmark rows).

Why both: the load average decays with a one-minute time constant, so it says what the machine did
over the last minute, not what it does now. Right after ``benchmark all`` finished, a 2-core
machine read 1.38 (under the old threshold of 2) while still carrying the previous run's tail, and
a ``benchmark api`` started then ran visibly slower than one started at 0.87. The share of CPU
time the cores spent busy over the last second (/proc/stat's aggregate ``cpu`` line, read twice)
is the machine now; the load average still catches a queue the busy share cannot see past 100 %.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL_S = 2.0
# The window of the first CPU sample (each later one spans the poll before it): 100 ticks at the
# kernel's USER_HZ of 100, a 1 % resolution, and short enough to add little to every benchmark.
SAMPLE_S = 1.0
# At most a quarter of all cores busy (half a core on 2): what the shared PostgreSQL, Redis and
# other idle daemons spend stays at a few per cent, while a neighbour's test run, a benchmark's
# servers still exiting or a PostgreSQL checkpoint after the run show at 50-100 %. Half a core of
# 2 taken from the servers and load generator a benchmark measures is more than the 10-30 %
# margins its speed goals are read with.
BUSY_LIMIT = 0.25
PROC_STAT = "/proc/stat"

# Cumulative CPU ticks of all cores since boot: (busy, total), or None where unreadable.
CpuTicks = tuple[int, int] | None


def cpu_ticks_read(path: str = PROC_STAT) -> CpuTicks:
    """All cores' (busy, total) ticks from /proc/stat's first line: user, nice, system, idle,
    iowait, irq, softirq, steal (guest time is already inside user and nice). Idle and iowait are
    idle (a core waiting on a disk is free to run a benchmark); steal is busy (another guest had
    the core). None without /proc/stat (macOS) or with a line it cannot parse: the load average
    alone decides then."""
    try:
        with open(path, encoding="ascii") as stat:
            fields = stat.readline().split()
        ticks = [int(value) for value in fields[1:9]]
    except (OSError, ValueError):
        return None
    if not fields or fields[0] != "cpu" or len(ticks) < 5:
        return None
    total = sum(ticks)
    return total - ticks[3] - ticks[4], total


def busy_share(earlier: CpuTicks, later: CpuTicks) -> float | None:
    """The share of all cores' time spent busy between two readings (0 to 1), or None."""
    if earlier is None or later is None or later[1] <= earlier[1]:
        return None
    return max(0.0, min(1.0, (later[0] - earlier[0]) / (later[1] - earlier[1])))


@dataclass(frozen=True)
class MachineLoad:
    """The 1-minute load average and the share of all cores busy (None: not sampled) when
    measuring started, after waiting ``waited_s`` for them."""

    before: float
    cores: int
    waited_s: float
    busy: float | None = None

    @property
    def loaded(self) -> bool:
        return self.before >= self.cores

    @property
    def busy_now(self) -> bool:
        return self.busy is not None and self.busy >= BUSY_LIMIT

    @property
    def noisy(self) -> bool:
        return self.loaded or self.busy_now

    def busy_text(self) -> str:
        if self.busy is None:
            return "CPU busy not sampled (no /proc/stat)"
        return f"CPU {self.busy:.0%} busy just before"

    def describe(self, after: float) -> str:
        reasons = [
            *(["load average"] if self.loaded else []),
            *([f"CPU busy >= {BUSY_LIMIT:.0%}"] if self.busy_now else []),
        ]
        state = f"NOISY run (started loaded: {', '.join(reasons)})" if self.noisy else "quiet start"
        return (
            f"load average (1 min) {self.before:.2f} before, {after:.2f} after, on {self.cores} cores, "
            f"{self.busy_text()}: {state}, after waiting {self.waited_s:.0f} s"
        )


def machine_quiet_wait(
    *,
    max_wait_s: float,
    log: Callable[[str], None],
    load: Callable[[], float] = lambda: os.getloadavg()[0],
    cpu_ticks: Callable[[], CpuTicks] = cpu_ticks_read,
    cores: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> MachineLoad:
    """Sample the cores' busy share over ``SAMPLE_S``, then poll until the load average is below
    one per core and the busy share (over the poll before) below ``BUSY_LIMIT``, or ``max_wait_s``
    has passed. The first sample is taken even with no wait, since a run's noisy mark needs it;
    ``waited_s`` counts the time after it."""
    cores = cores or os.cpu_count() or 1
    earlier = cpu_ticks()
    if earlier is not None:
        sleep(SAMPLE_S)
    started = clock()

    def sample(earlier: CpuTicks, busy: float | None) -> tuple[MachineLoad, CpuTicks]:
        later = cpu_ticks()
        share = busy_share(earlier, later)
        if share is None and later is not None and earlier is not None:
            # No tick elapsed (a last poll cut short by the bound): the previous share stands,
            # and the next one spans this window too.
            share, later = busy, earlier
        measured = MachineLoad(before=load(), cores=cores, waited_s=clock() - started, busy=share)
        return measured, later

    current, earlier = sample(earlier, None)
    if current.noisy and max_wait_s > 0:
        log(
            f"load average {current.before:.2f} on {cores} cores, {current.busy_text()}: "
            f"waiting up to {max_wait_s:.0f} s for a quiet machine"
        )
    while current.noisy and clock() - started < max_wait_s:
        sleep(min(POLL_S, max(0.0, max_wait_s - (clock() - started))))
        current, earlier = sample(earlier, current.busy)
    return current
