"""Pausing Python's cyclic garbage collector around a batch job's run (docs/architecture.md, Game
leaderboards: the leaderboard job).

A run that builds tens of thousands of objects at once (the leaderboard job's book of every
account) makes the collector's allocation thresholds fire over and over, and each full collection
walks every object the process holds: measured at 10,000 players, about 40 % of the job's CPU
time for almost nothing collected (its objects are freed by reference counting, not found in
cycles). Paused, the run's cyclic garbage, if any, waits for the next collection after it.

Nested and threaded uses count: the collector comes back when the last pause ends, and not at
all if it was off before the first.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    with _lock:
        if _depth == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _was_enabled:
                gc.enable()
