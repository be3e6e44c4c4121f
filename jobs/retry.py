"""Retry timing (capped exponential backoff with full jitter) and the line between transient and
permanent failures.

Full jitter (a uniform delay under the capped exponential bound) spreads the retries of many
jobs that failed together, e.g. when the database restarted, instead of retrying them in waves.
"""

from __future__ import annotations

import random
from typing import Protocol

import redis
from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError


class UniformSource(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


# Worth retrying: the database or Redis was briefly unavailable, locked or restarting.
# Anything else (bad data, a bug) fails the same way every time, so it fails at once.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    BrokerOperationalError,
    ConnectionError,
    TimeoutError,
)


def is_transient(error: BaseException) -> bool:
    return isinstance(error, TRANSIENT_ERRORS)


def retry_cap(*, attempt: int, base: float, cap: float) -> float:
    """The largest delay before retry number ``attempt`` (0-based): min(cap, base * 2^attempt)."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    # 2.0 ** attempt overflows past ~1023; any attempt that large is at the cap anyway.
    return cap if attempt >= 64 else min(cap, base * 2.0**attempt)


def retry_delay(*, attempt: int, base: float, cap: float, rng: UniformSource | None = None) -> float:
    """Seconds to wait before retry number ``attempt``: uniform in [0, retry_cap(...)]."""
    bound = retry_cap(attempt=attempt, base=base, cap=cap)
    delay = (rng or random).uniform(0.0, bound)
    # uniform(a, b) may return b + epsilon through rounding; the bound is a promise.
    return min(max(delay, 0.0), bound)


def should_retry(*, attempt: int, max_retries: int, error: BaseException) -> bool:
    """Retry only transient errors, and only while retries remain (``attempt`` is 0-based)."""
    return is_transient(error) and attempt < max_retries
