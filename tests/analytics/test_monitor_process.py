"""Property 25 through the real processes: a process whose RSS crosses a low test threshold raises
the memory alert once, through ``manage.py run_monitor``, and clears it once its memory is back
under the clear threshold; a second monitor on the host stands by (one evaluator per host); the
samples are stored in tiers.

The "hog" is a plain Python process registered in the metrics directory as role ``hog`` (as
gunicorn's workers register themselves), told over stdin to take and release 300 MiB.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from analytics.models import Alert, AlertRule, MonitorSample
from benchmarks.processes import process_stop
from tests.analytics.webhook import WebhookReceiver
from tests.processes import ROOT, process_env

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024
HOG = """
import sys
import django
django.setup()
from config.metrics import process_identity_set
process_identity_set(role="hog")
print("ready", flush=True)
held = None
for line in sys.stdin:
    if line.strip() == "grow":
        held = b"\\x01" * (300 * 1024 * 1024)
    elif line.strip() == "shrink":
        held = None
    print("done", flush=True)
"""


class Hog:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOG],
            cwd=ROOT,
            env=process_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def tell(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self._line() == "done"


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_p25_a_process_crossing_the_memory_threshold_raises_one_alert_through_run_monitor(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    AlertRule.objects.update(enabled=False)
    AlertRule.objects.create(
        name="Hog memory",
        metric="process_resident_memory_bytes",
        labels={"role": "hog"},
        group_by="role,slot",
        aggregation="max",
        threshold=250 * MIB,
        clear_threshold=200 * MIB,
        for_seconds=1,
        severity="critical",
    )
    hog = Hog()
    overrides = {
        "MONITOR_INTERVAL_SECONDS": 0.25,
        "MONITOR_RULES_RELOAD_SECONDS": 1,
        "MONITOR_SAMPLE_TIERS": [[1, 3600], [2, 3600], [600, 0]],
        "MONITOR_RULES_FILE": str(tmp_path / "monitor-rules.json"),
        "ALERT_WEBHOOK_URL": receiver.url,
    }
    logs = [tmp_path / "monitor-1.log", tmp_path / "monitor-2.log"]
    monitors = []
    try:
        for log_path in logs:
            with open(log_path, "wb") as log:
                monitors.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "run_monitor"],
                        cwd=ROOT,
                        env=process_env(overrides=overrides),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

        def log_text() -> str:
            return "".join(path.read_text(errors="replace") for path in logs)

        # One of the two evaluates; the hog's baseline RSS (an interpreter with Django) is far below.
        wait_for(lambda: "monitor: evaluating" in log_text(), "a monitor to take the lock")
        wait_for(
            lambda: MonitorSample.objects.filter(
                tier_seconds=2, values__has_key="process.rss_bytes.hog-0"
            ).exists(),
            "the hog's RSS in the samples of both fine tiers",
        )
        assert not Alert.objects.exists()

        hog.tell("grow")
        wait_for(Alert.objects.exists, "the memory alert")
        alert = Alert.objects.get()
        assert alert.rule_name == "Hog memory" and alert.resolved_at is None
        assert alert.labels == {"role": "hog", "slot": "0"}
        assert alert.opened_value > 250 * MIB

        hog.tell("shrink")
        wait_for(lambda: Alert.objects.filter(resolved_at__isnull=False).exists(), "the alert to resolve")
        alert.refresh_from_db()
        assert alert.peak_value >= 300 * MIB
        wait_for(lambda: len(receiver.messages) >= 2, "the webhook messages")
        time.sleep(1.0)  # room for a duplicate to arrive, were there one
        assert [message["status"] for message in receiver.messages] == ["firing", "resolved"]
        assert Alert.objects.count() == 1
        text = log_text()
        assert text.count("monitor: evaluating") == 1, text
        assert MonitorSample.objects.filter(tier_seconds=1).count() >= 2
    finally:
        for monitor in monitors:
            process_stop(monitor)
        hog.process.kill()
        hog.process.wait()
