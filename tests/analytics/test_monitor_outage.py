"""A database outage under the real ``run_monitor``: the test's own PostgreSQL server is stopped,
and the monitor, which keeps its rules in memory and probes the database itself, raises "Database
unreachable" (one webhook message) while the database cannot take the alert's row; once the server
is back the alert resolves (one more message) and its row is written with both instants.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from benchmarks.processes import process_stop
from tests.analytics.webhook import WebhookReceiver
from tests.processes import ROOT, VENV_BIN, postgres_server, process_env


def wait_for(condition: Callable[[], object], what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.2)


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.db_backend("postgresql")
def test_a_dead_database_raises_its_alert_and_the_row_is_written_when_it_is_back(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    with postgres_server() as server:
        overrides = {
            "MONITOR_INTERVAL_SECONDS": 0.25,
            "MONITOR_RULES_RELOAD_SECONDS": 1,
            "MONITOR_RULES_FILE": str(tmp_path / "monitor-rules.json"),
            "ALERT_WEBHOOK_URL": receiver.url,
        }
        env = process_env(overrides=overrides, DATABASE_URL=server.url())
        migrate = subprocess.run(
            [str(VENV_BIN / "python"), "manage.py", "migrate", "--noinput", "-v0"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        with psycopg.connect(server.url(), autocommit=True) as db:
            db.execute("UPDATE analytics_alertrule SET for_seconds = 2 WHERE name = 'Database unreachable'")
        log_path = tmp_path / "monitor.log"
        with open(log_path, "wb") as log:
            monitor = subprocess.Popen(
                [str(VENV_BIN / "python"), "manage.py", "run_monitor"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            # The rules were read (and saved beside the process) before the outage.
            wait_for((tmp_path / "monitor-rules.json").exists, "the monitor to read its rules", log_path)
            server.stop()
            wait_for(lambda: receiver.messages, "the database alert", log_path)
            assert [(m["status"], m["rule"]) for m in receiver.messages] == [
                ("firing", "Database unreachable")
            ]
            server.start()
            wait_for(lambda: len(receiver.messages) >= 2, "the alert to resolve", log_path)

            def stored() -> list[tuple[str, bool, bool]]:
                with psycopg.connect(server.url(), autocommit=True) as db:
                    rows = db.execute(
                        "SELECT rule_name, opened_at IS NOT NULL, resolved_at IS NOT NULL FROM analytics_alert"
                    ).fetchall()
                return [(str(name), bool(opened), bool(resolved)) for name, opened, resolved in rows]

            wait_for(lambda: stored() == [("Database unreachable", True, True)], "the alert's row", log_path)
            time.sleep(1.0)  # room for a duplicate, were there one
            assert [(m["status"], m["rule"]) for m in receiver.messages] == [
                ("firing", "Database unreachable"),
                ("resolved", "Database unreachable"),
            ]
            assert monitor.poll() is None, log_path.read_text()
        finally:
            process_stop(monitor)
