"""The connections kept checked out of the shared pool (config/redis_pools.py, PinnedConnection;
the limiter's in trading/api/throttling.py): an unreachable Redis raises and leaves them free, and
a lock a parent thread held at a fork is free in the child."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from config.redis_pools import PinnedConnection, redis_client, redis_retry, resp_pack
from trading.api.throttling import Rate, SlidingWindowLimiter


def test_an_unreachable_redis_raises_and_leaves_the_pinned_connection_free(tmp_path: Path) -> None:
    """A real connection failure (a unix socket nobody listens on), not a mock: the caller gets
    a RedisError for its degraded path, and the next call may use the connection again."""
    # The shared pool's retry policy: redis-py's default for a client built without a pool backs
    # off for seconds before each failure (config/settings.py, REDIS_RETRIES).
    dead = redis.Redis(
        unix_socket_path=str(tmp_path / "nobody.sock"), socket_connect_timeout=0.5, retry=redis_retry()
    )
    pinned = PinnedConnection()
    for _ in range(2):
        with pytest.raises(redis.RedisError):
            pinned.exchange(dead, resp_pack("PING"))
        assert pinned._connection is None
        assert pinned._lock.acquire(blocking=False)
        pinned._lock.release()
    assert pinned.exchange(redis_client(), resp_pack("PING")) == b"PONG"


@contextmanager
def _held_by_another_thread(lock: Callable[[], threading.Lock]) -> Iterator[None]:
    """The lock ``lock()`` names, held by a thread other than the test's for the block."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock():
            taken.set()
            done.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait()
    try:
        yield
    finally:
        done.set()
        holder.join()


def _in_forked_child(check: Callable[[], bool]) -> int:
    """``check()`` run in a real forked child: its exit code (0: it answered True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit code is the result
        code = 1
        try:
            code = 0 if check() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_pinned_connection_busy_at_a_fork_is_free_in_the_child() -> None:
    pinned = PinnedConnection()
    assert pinned.exchange(redis_client(), resp_pack("PING")) == b"PONG"
    with _held_by_another_thread(lambda: pinned._lock):
        assert pinned.exchange(redis_client(), resp_pack("PING")) is None  # busy in the parent
        # In the child the holder does not exist: the pinned path must still be taken.
        assert _in_forked_child(lambda: pinned.exchange(redis_client(), resp_pack("PING")) == b"PONG") == 0


def test_the_limiters_connection_busy_at_a_fork_is_free_in_the_child() -> None:
    limiter = SlidingWindowLimiter()
    rate = Rate(100, 60)

    def pinned_hit() -> bool:
        pending = limiter.hit_begin("fork-test", rate)
        return pending is not None and pending.result().allowed

    assert pinned_hit()
    with _held_by_another_thread(lambda: limiter._pinned_lock):
        assert limiter.hit_begin("fork-test", rate) is None  # busy in the parent
        assert _in_forked_child(pinned_hit) == 0
    redis_client().delete("fork-test")
