"""Capped exponential backoff: how long to wait after a run of consecutive failures.

Shared by the tick writer (retrying a window while the database is down) and the process manager
under ``make run`` (restarting a crashed process). Plain Python, no Django: the process manager
imports it before any settings exist.
"""

from __future__ import annotations


def backoff_delay(*, failures: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures (1 or more): base, 2 x base,
    4 x base, ... never more than ``cap_s``."""
    if failures < 1:
        raise ValueError("failures must be >= 1")
    # 2.0 ** n overflows past ~1023; any run that long is at the cap anyway.
    return cap_s if failures > 64 else min(cap_s, base_s * 2.0 ** (failures - 1))
