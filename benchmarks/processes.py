"""Stopping the server processes a benchmark or a test started, and clearing the Redis keys a run
left behind: shared by the benchmarks and the test suite's live servers."""

from __future__ import annotations

import subprocess

from config.redis_pools import redis_client


def process_stop(process: subprocess.Popen[bytes], *, grace_seconds: float = 10.0) -> None:
    """SIGTERM first so servers close their sockets and connections; SIGKILL if that hangs."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def redis_keys_delete(*patterns: str) -> None:
    client = redis_client()
    for pattern in patterns:
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)
