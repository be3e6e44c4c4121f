"""ThrottleController: the write-rate limit of the tick writer (Property 7).

Two token buckets, one for rows and one for transactions. A bucket holds at most ``burst_s``
seconds' worth of its rate and refills continuously; a write waits until both buckets hold what
it needs and then takes it. Tokens never go negative, so the rows written between any two
instants never exceed ``rate x elapsed + capacity``. One window is one transaction and may not
be split, so a window larger than the bucket waits until the bucket has filled up to its size
(the capacity stretches to that one write), which keeps the same bound with the largest write
as the burst.

Clock and sleep are injectable: tests drive a fake clock instead of waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

_EPSILON = 1e-6


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
                delay = max(self._rows.wait_for(rows), self._txns.wait_for(1))
                if delay <= 0:
                    if self._rows.rate > 0:
                        self._rows.tokens -= rows
                    if self._txns.rate > 0:
                        self._txns.tokens -= 1
                    self.waited_s += waited
                    return waited
                self._sleep(delay)
                waited += delay
