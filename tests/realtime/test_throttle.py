"""ThrottleController with a fake clock: writes never exceed the configured rate (Property 7)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from realtime.throttle import ThrottleController


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.slept += seconds


@given(
    rows_rate=st.integers(1, 5_000),
    txn_rate=st.integers(1, 100),
    calls=st.lists(st.tuples(st.integers(0, 12_000), st.floats(0, 2.0)), min_size=1, max_size=40),
)
def test_writes_never_exceed_the_configured_rate(
    rows_rate: int, txn_rate: int, calls: list[tuple[int, float]]
) -> None:
    """Property 7: over any interval, rows and transactions stay within rate x time + one burst."""
    clock = FakeClock()
    throttle = ThrottleController(
        max_rows_per_s=rows_rate, max_txn_per_s=txn_rate, clock=clock, sleep=clock.sleep
    )
    start = clock.now
    done: list[tuple[float, int]] = []
    for rows, gap in calls:
        clock.now += gap
        throttle.acquire(rows=rows)
        done.append((clock.now, rows))
    row_burst = max(rows_rate, max(rows for rows, _ in calls))
    txn_burst = max(1, txn_rate)
    tolerance = 1e-3
    # From the start: nothing beyond the initial (full) bucket plus what refilled.
    total = 0
    for at, rows in done:
        total += rows
        assert total <= row_burst + rows_rate * (at - start) + tolerance
    # Any window between two writes.
    for i in range(len(done)):
        rows_in = 0
        for j in range(i, len(done)):
            rows_in += done[j][1]
            elapsed = done[j][0] - done[i][0]
            assert rows_in <= row_burst + rows_rate * elapsed + tolerance
            assert (j - i + 1) <= txn_burst + txn_rate * elapsed + tolerance


def test_steady_load_runs_at_the_configured_rate() -> None:
    """Property 7: 100 windows of 500 rows under 1,000 rows/s take ~49 s of (fake) time."""
    clock = FakeClock()
    throttle = ThrottleController(max_rows_per_s=1_000, max_txn_per_s=1_000, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        throttle.acquire(rows=500)
    # 50,000 rows, 1,000 of them covered by the initial burst.
    assert abs(clock.slept - 49.0) < 0.01


def test_transaction_rate_is_bounded() -> None:
    clock = FakeClock()
    throttle = ThrottleController(max_rows_per_s=0, max_txn_per_s=10, clock=clock, sleep=clock.sleep)
    for _ in range(110):
        throttle.acquire(rows=1)
    assert abs(clock.slept - 10.0) < 0.01


def test_zero_means_unlimited() -> None:
    clock = FakeClock()
    throttle = ThrottleController(max_rows_per_s=0, max_txn_per_s=0, clock=clock, sleep=clock.sleep)
    for _ in range(1_000):
        assert throttle.acquire(rows=100_000) == 0.0
    assert clock.slept == 0.0


def test_a_window_larger_than_the_bucket_waits_until_it_fits() -> None:
    clock = FakeClock()
    throttle = ThrottleController(max_rows_per_s=100, max_txn_per_s=100, clock=clock, sleep=clock.sleep)
    throttle.acquire(rows=100)  # the initial burst
    waited = throttle.acquire(rows=300)  # one transaction of 300 rows: 3 s of refill
    assert abs(waited - 3.0) < 0.01


@given(
    rows_rate=st.integers(1, 2_000),
    txn_rate=st.floats(0.5, 50),
    calls=st.lists(st.tuples(st.integers(0, 3_000), st.floats(0, 3.0)), min_size=1, max_size=40),
)
def test_no_one_second_interval_exceeds_the_rates(
    rows_rate: int, txn_rate: float, calls: list[tuple[int, float]]
) -> None:
    """Property 7: any one-second interval holds at most the configured rows and transactions,
    including the first second and the second after a quiet spell (a full bucket); a single write
    larger than a second's rows is written alone."""
    clock = FakeClock()
    throttle = ThrottleController(
        max_rows_per_s=rows_rate, max_txn_per_s=txn_rate, clock=clock, sleep=clock.sleep
    )
    done: list[tuple[float, int]] = []
    for rows, gap in calls:
        clock.now += gap
        throttle.acquire(rows=rows)
        done.append((clock.now, rows))
    txns_per_second = max(1, int(txn_rate + 1e-6))
    for i, (start, _) in enumerate(done):
        # Writes in [start, start + 1 s), less the limiter's 1 us rounding allowance.
        inside = [rows for at, rows in done[i:] if at < start + 1.0 - 2e-6]
        assert len(inside) <= txns_per_second
        if any(rows > rows_rate for rows in inside):
            assert len(inside) == 1
        else:
            assert sum(inside) <= rows_rate


def test_a_start_or_a_quiet_spell_does_not_double_the_rate() -> None:
    """Property 7: a full bucket plus a second of refill would allow twice the rate in one second."""
    clock = FakeClock()
    throttle = ThrottleController(max_rows_per_s=100, max_txn_per_s=5, clock=clock, sleep=clock.sleep)
    for _ in range(2):
        starts = []
        for _ in range(10):
            throttle.acquire(rows=10)
            starts.append(clock.now)
        # Five at once (the transaction limit), the next five one second later, not 0.2 s apart.
        assert [round(at - starts[0], 6) for at in starts] == [0.0] * 5 + [1.0] * 5
        clock.now += 10  # quiet: both buckets fill up again
