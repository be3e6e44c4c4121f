"""Server processes a benchmark or a test started: the Redis names they use, stopping them, and
clearing the Redis keys a run left behind. Shared by the benchmarks and the test suite's live servers."""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from config.redis_pools import redis_client

# The settings that name a Redis key, key prefix or channel: config/settings.py derives each from
# REDIS_KEY_PREFIX (so do the cache's KEY_PREFIX and the channel layer's prefix).
REDIS_NAME_SETTINGS = (
    "LATEST_QUOTES_KEY",
    "ORDER_EVENTS_CHANNEL",
    "MARKET_WINDOWS_CHANNEL",
    "CACHE_INVALIDATION_CHANNEL",
    "LEADERBOARD_EVENTS_CHANNEL",
    "STREAM_REVOCATIONS_CHANNEL",
    "RATE_LIMIT_KEY_PREFIX",
    "STREAM_REDIS_PREFIX",
    "STREAM_REDIS_CLIENT_NAME",
)


def redis_names(prefix: str, *, base: Any = None) -> dict[str, Any]:
    """The settings of a process started with ``REDIS_KEY_PREFIX=prefix``: every Redis key and
    channel name of ``base`` (this process's settings by default) with its prefix swapped, and the
    CACHES and CHANNEL_LAYERS that go with them. Setting them all here makes this process use the
    same keys and channels as that one."""
    base = settings if base is None else base
    current = str(base.REDIS_KEY_PREFIX)

    def swapped(name: str) -> str:
        if not name.startswith(current):
            raise ValueError(f"{name!r} does not start with REDIS_KEY_PREFIX {current!r}")
        return prefix + name.removeprefix(current)

    caches = copy.deepcopy(base.CACHES)
    caches["default"]["KEY_PREFIX"] = swapped(caches["default"]["KEY_PREFIX"])
    layers = copy.deepcopy(base.CHANNEL_LAYERS)
    layers["default"]["CONFIG"]["prefix"] = swapped(layers["default"]["CONFIG"]["prefix"])
    return {
        "REDIS_KEY_PREFIX": prefix,
        **{name: swapped(getattr(base, name)) for name in REDIS_NAME_SETTINGS},
        "CACHES": caches,
        "CHANNEL_LAYERS": layers,
    }


# Each started process by name, with the log file its output goes to.
Started = dict[str, tuple[subprocess.Popen[bytes], Path]]


def processes_start(
    *, commands: Mapping[str, list[str]], cwd: Path, env: Mapping[str, str], workdir: Path, cleanup: ExitStack
) -> Started:
    """Each command as a process writing to ``workdir/<name>.log``, stopped when ``cleanup`` closes."""
    started: Started = {}
    for name, command in commands.items():
        log_path = workdir / f"{name}.log"
        output = cleanup.enter_context(log_path.open("wb"))
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT)
        cleanup.callback(process_stop, process)
        started[name] = (process, log_path)
    return started


def processes_alive_check(started: Started) -> None:
    """A run's figures are void if a server died under it: say which one, with its log's tail."""
    for name, (process, log_path) in started.items():
        if process.poll() is not None:
            raise CommandError(
                f"{name} exited during the run:\n{log_path.read_text(errors='replace')[-3000:]}"
            )


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
