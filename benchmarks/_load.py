"""A quiet machine before measuring: every benchmark waits (up to ``BENCHMARK_QUIET_WAIT_S``) for
the 1-minute load average to fall below one per core, and a run that starts above it is marked
noisy: its timed rows print "noisy" instead of "yes", since a speed goal met on a loaded machine
proves nothing either way (sizes and counts, ``Row.load_free``, keep their verdict) (docs/properties.md, the benchmark rows)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL_S = 2.0


@dataclass(frozen=True)
class MachineLoad:
    """The 1-minute load average when measuring started, after waiting ``waited_s`` for it."""

    before: float
    cores: int
    waited_s: float

    @property
    def noisy(self) -> bool:
        return self.before >= self.cores

    def describe(self, after: float) -> str:
        state = "NOISY run (started loaded)" if self.noisy else "quiet start"
        return (
            f"load average (1 min) {self.before:.2f} before, {after:.2f} after, on {self.cores} cores: "
            f"{state}, after waiting {self.waited_s:.0f} s"
        )


def machine_quiet_wait(
    *,
    max_wait_s: float,
    log: Callable[[str], None],
    load: Callable[[], float] = lambda: os.getloadavg()[0],
    cores: int | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> MachineLoad:
    """Poll the load average until it is below one per core or ``max_wait_s`` has passed."""
    cores = cores or os.cpu_count() or 1
    started = clock()
    current = load()
    if current >= cores and max_wait_s > 0:
        log(
            f"load average {current:.2f} on {cores} cores: waiting up to {max_wait_s:.0f} s for a quiet machine"
        )
    while current >= cores and clock() - started < max_wait_s:
        sleep(min(POLL_S, max(0.0, max_wait_s - (clock() - started))))
        current = load()
    return MachineLoad(before=current, cores=cores, waited_s=clock() - started)
