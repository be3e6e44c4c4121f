"""Real ``celery worker`` processes against the test database and the run's private broker.

The broker is the one the settings name: the embedded Redis under VAR_DIR, or the REDIS_URL
database, both private to a test run. Workers run in their own process group so a test can
SIGKILL the main process and its pool children together, as a crashed host would lose them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import ROOT, VENV_BIN, process_env

# Shortened for tests: an unacknowledged message comes back after 3 s (swept every second), and
# a claimed run whose worker died may be claimed again after 2 s.
FAST_RECOVERY: dict[str, Any] = {
    "CELERY_BROKER_TRANSPORT_OPTIONS": {
        "visibility_timeout": 3,
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    "JOB_LEASE_SECONDS": 2,
    "JOB_RETRY_BASE_SECONDS": 0.2,
    "JOB_RETRY_CAP_SECONDS": 2,
}


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in changes.items():
        current = merged.get(name)
        merged[name] = (
            {**current, **value} if isinstance(current, dict) and isinstance(value, dict) else value
        )
    return merged


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker and its pool children: no shutdown, nothing acknowledged."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


def purge_broker() -> None:
    """Drop messages an earlier run left in the queue, so a new worker sees only this test's."""
    from config.celery import app

    app.control.purge()


@contextmanager
def celery_worker(
    tmp_path: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    concurrency: int = 2,
) -> Iterator[WorkerProcess]:
    """``celery -A config worker`` on the test settings, recovering fast (``FAST_RECOVERY``), with
    ``overrides`` of settings on top and ``extra_env`` in its environment."""
    name = f"jobs-test-{uuid.uuid4().hex[:8]}"
    env = {**process_env(overrides=_merged(FAST_RECOVERY, overrides or {})), **(extra_env or {})}
    log_path = tmp_path / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "celery"), "-A", "config", "worker",
                "--loglevel=INFO", f"--hostname={name}@%h",
                "--pool=prefork", f"--concurrency={concurrency}",
                "--without-mingle", "--without-gossip", "--without-heartbeat",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = WorkerProcess(process=process, log_path=log_path)
    try:
        wait_for(lambda: " ready." in worker.log(), timeout=30, what="worker start", worker=worker)
        yield worker
    finally:
        worker.stop()


def wait_for(
    condition: Callable[[], object], *, timeout: float, what: str, worker: WorkerProcess | None = None
) -> None:
    """Poll until ``condition`` holds; the deadline is a bound, not a speed assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker is not None and worker.process.poll() is not None:
            raise AssertionError(f"worker exited with {worker.process.returncode}:\n{worker.log()}")
        time.sleep(0.1)
    log = worker.log()[-6000:] if worker is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{log}")
