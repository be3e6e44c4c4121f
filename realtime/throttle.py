"""ThrottleController: the write-rate limit of the tick writer, held in any one-second interval.

Two token buckets, one for rows and one for transactions. A bucket holds at most ``burst_s``
seconds' worth of its rate and refills continuously; a write waits until both buckets hold what
it needs and then takes it. Tokens never go negative, so the rows written between any two
instants never exceed ``rate x elapsed + capacity``. One window is one transaction and may not
be split, so a window larger than the bucket waits until the bucket has filled up to its size
(the capacity stretches to that one write), which keeps the same bound with the largest write
as the burst.

A bucket alone lets a full bucket and a second of refill land within one second (twice the rate
right after a quiet spell, and at every start). So a log of the last second's writes also holds
every one-second interval to the rate itself: at most ``rate`` rows (a single write larger than
that is written alone) and ``rate`` transactions (at least one), whatever happened before.

Clock and sleep are injectable: tests drive a fake clock instead of waiting.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

_EPSILON = 1e-6
# The interval the configured rates are per.
WINDOW_S = 1.0


@dataclass
class _Bucket:
    rate: float  # tokens per second; 0 = unlimited
    capacity: float
    tokens: float
    updated: float

    def refill(self, now: float, ceiling: float) -> None:
        if self.rate > 0:
            self.tokens = min(max(self.capacity, ceiling), self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` tokens are there (0 when they are)."""
        # The epsilon absorbs float rounding that could otherwise leave a waiter sleeping for ever
        # on a shortfall of 1e-12 tokens.
        if self.rate <= 0 or self.tokens >= amount - _EPSILON:
            return 0.0
        return (amount - self.tokens) / self.rate


class ThrottleController:
    def __init__(
        self,
        *,
        max_rows_per_s: float | None = None,
        max_txn_per_s: float | None = None,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        rows = settings.MARKET_WRITE_MAX_ROWS_PER_S if max_rows_per_s is None else max_rows_per_s
        txns = settings.MARKET_WRITE_MAX_TXN_PER_S if max_txn_per_s is None else max_txn_per_s
        if rows < 0 or txns < 0 or burst_s <= 0:
            raise ValueError("rates must not be negative and burst_s must be positive")
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        now = clock()
        # Buckets start full: a fresh writer may write one burst at once.
        row_capacity = max(1.0, rows * burst_s)
        txn_capacity = max(1.0, txns * burst_s)
        self._rows = _Bucket(rate=rows, capacity=row_capacity, tokens=row_capacity, updated=now)
        self._txns = _Bucket(rate=txns, capacity=txn_capacity, tokens=txn_capacity, updated=now)
        # Writes granted within the last WINDOW_S: (when, rows), oldest first.
        self._recent: deque[tuple[float, int]] = deque()
        self._recent_rows = 0
        self._rows_per_window = max(1, math.floor(rows * WINDOW_S + _EPSILON)) if rows > 0 else 0
        self._txns_per_window = max(1, math.floor(txns * WINDOW_S + _EPSILON)) if txns > 0 else 0
        self.waited_s = 0.0

    @property
    def max_rows_per_s(self) -> float:
        return self._rows.rate

    @property
    def max_txn_per_s(self) -> float:
        return self._txns.rate

    def acquire(self, *, rows: int) -> float:
        """Block until one transaction of ``rows`` rows may be written; returns seconds waited."""
        if rows < 0:
            raise ValueError("rows must not be negative")
        waited = 0.0
        with self._lock:
            while True:
                now = self._clock()
                self._rows.refill(now, ceiling=rows)
                self._txns.refill(now, ceiling=1)
                delay = max(self._rows.wait_for(rows), self._txns.wait_for(1), self._window_wait(now, rows))
                if delay <= 0:
                    if self._rows.rate > 0:
                        self._rows.tokens -= rows
                    if self._txns.rate > 0:
                        self._txns.tokens -= 1
                    if self._rows_per_window or self._txns_per_window:
                        self._recent.append((now, rows))
                        self._recent_rows += rows
                    self.waited_s += waited
                    return waited
                self._sleep(delay)
                waited += delay

    def _window_wait(self, now: float, rows: int) -> float:
        """Seconds until a write of ``rows`` keeps the last WINDOW_S within both rates (0: now)."""
        recent = self._recent
        # The epsilon lets a write that slept exactly until an entry's second ended go ahead,
        # rather than sleep again for a float rounding error.
        horizon = now - WINDOW_S + _EPSILON
        while recent and recent[0][0] <= horizon:
            self._recent_rows -= recent.popleft()[1]
        until = now
        if self._txns_per_window and len(recent) >= self._txns_per_window:
            until = max(until, recent[len(recent) - self._txns_per_window][0] + WINDOW_S)
        if self._rows_per_window and recent and self._recent_rows + rows > self._rows_per_window:
            # Wait for the oldest writes to leave the interval until this one fits (or, when it is
            # larger than a whole second's rows, until it is alone).
            remaining = self._recent_rows
            for when, written in recent:
                remaining -= written
                until = max(until, when + WINDOW_S)
                if remaining + rows <= self._rows_per_window:
                    break
        return until - now
