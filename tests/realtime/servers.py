"""Real daphne and market processes for stream tests.

Modelled on tests/processes.py's gunicorn_server: the same commands production runs
(``daphne config.asgi:application``, ``manage.py run_market``), against the test database and the
test's Redis keys and channels (``stream_settings`` in tests/conftest.py gives a test its own).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.processes import process_stop
from config.redis_pools import redis_client
from realtime.wire import Window
from tests.processes import ROOT, VENV_BIN, free_port, process_env


@dataclass
class DaphneProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_until_listening(server: DaphneProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"daphne exited with {server.process.returncode}:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"daphne did not listen within {timeout}s:\n{server.log()}")


@contextmanager
def daphne_server(
    tmp_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    application: str = "config.asgi:application",
) -> Iterator[DaphneProcess]:
    """daphne serving ``application`` (config.asgi's by default) on a free loopback port, against
    the test database."""
    port = free_port()
    # daphne's own port, as under `make run`: pages it serves may open its sockets.
    env = {**process_env(overrides=overrides, WS_PORT=str(port)), **(extra_env or {})}
    log_path = tmp_path / f"daphne-{port}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), application],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = DaphneProcess(process=process, port=port, log_path=log_path)
    try:
        _wait_until_listening(server, timeout=30)
        yield server
    finally:
        process_stop(process)


def market_env(*, overrides: Mapping[str, Any] | None = None, **variables: str) -> dict[str, str]:
    """Environment for ``run_market`` against the test database and the test's Redis keys; it
    logs its throughput every second."""
    return process_env(overrides={"MARKET_LOG_INTERVAL_S": 1, **(overrides or {})}, **variables)


@contextmanager
def market_process(
    tmp_path: Path,
    env: Mapping[str, str],
    name: str,
    *,
    symbols: int,
    window_ms: int = 50,
    tick_interval_s: float = 0.2,
    seed: int = 7,
) -> Iterator[subprocess.Popen[bytes]]:
    """``manage.py run_market`` as ``make run`` starts it; killed if the test leaves it running.
    Its log is printed afterwards (pytest shows it for a failing test)."""
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(VENV_BIN / "python"), "manage.py", "run_market",
             "--symbols", str(symbols), "--window-ms", str(window_ms),
             "--tick-interval", str(tick_interval_s), "--seed", str(seed)],
            cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        print(log_path.read_text(errors="replace"))


class WindowCollector:
    """A real Redis subscriber to the market's windows: what any web process would receive, with
    the monotonic time each window arrived."""

    def __init__(self, channel: str) -> None:
        self.windows: list[Window] = []
        self.arrivals: list[float] = []
        self._pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(timeout=0.2)
            if message and message["type"] == "message":
                arrived = time.monotonic()
                self.windows.append(Window.decode(message["data"]))
                self.arrivals.append(arrived)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"not reached within {timeout}s: {what or 'the market published nothing'}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
