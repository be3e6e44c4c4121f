"""The Celery app (config/celery.py): loaded with the config package, it is every thread's current
app in any process that loads the settings, so jobs send tasks through it without importing the
wiring; it takes jobs' beat schedule itself, so the settings import no app code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.processes import process_stop
from tests.processes import ROOT, VENV_BIN, free_port

# What a web process does before its first request enqueues a job: load Django, nothing of Celery;
# what `celery -A config ...` loads; and what a process that only reads the settings imports.
CURRENT_APP_IN_A_THREAD = """
import threading
import django
django.setup()
from celery import current_app
seen = []
thread = threading.Thread(target=lambda: seen.append(current_app.main))
thread.start()
thread.join()
print(seen[0], current_app.main)
"""
LOADED_APP = """
import json
from celery.app.utils import find_app
app = find_app("config")
schedule = {name: {**entry, "schedule": repr(entry["schedule"])} for name, entry in app.conf.beat_schedule.items()}
print(json.dumps({"main": app.main, "schedule": schedule}))
"""
SETTINGS_ONLY = """
import sys
from django.conf import settings
settings.INSTALLED_APPS
print(" ".join(sorted(name for name in sys.modules if name.split(".")[0] in {APPS})))
"""
APPS = ("trading", "analytics", "realtime", "jobs", "benchmarks")


def _python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return done.stdout


def test_every_thread_of_a_django_process_sends_through_the_project_app() -> None:
    # gunicorn serves requests, and so enqueues jobs, from threads other than the one that
    # loaded the app; Celery's current app is per thread unless the app is also the default.
    assert _python(CURRENT_APP_IN_A_THREAD).split() == ["simulator", "simulator"]


def test_the_loaded_app_schedules_jobs_beat_entries() -> None:
    from jobs.schedule import BEAT_SCHEDULE

    loaded = json.loads(_python(LOADED_APP))
    assert loaded["main"] == "simulator"
    assert loaded["schedule"] == {
        name: {**entry, "schedule": repr(entry["schedule"])} for name, entry in BEAT_SCHEDULE.items()
    }


def test_the_settings_import_no_app_code() -> None:
    assert _python(SETTINGS_ONLY.replace("{APPS}", repr(set(APPS)))).split() == []


@pytest.mark.live
def test_celery_beat_starts_with_every_entry_of_the_schedule(tmp_path: Path) -> None:
    """``celery -A config beat`` as the Procfile runs it; its broker is a port nobody listens on,
    so nothing it might send reaches a worker."""
    from jobs.schedule import BEAT_SCHEDULE

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
    }
    log_path = tmp_path / "beat.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                str(VENV_BIN / "celery"), "-A", "config", "beat", "--loglevel=DEBUG",
                "--schedule", str(tmp_path / "beat-schedule"), "--max-interval", "1",
            ],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "beat: Ticking" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.1)
    finally:
        process_stop(process)
    text = log_path.read_text()
    scheduled = dict(re.findall(r"<ScheduleEntry: (\S+) (\S+)\(\)", text))
    assert scheduled == {
        **{name: entry["task"] for name, entry in BEAT_SCHEDULE.items()},
        "celery.backend_cleanup": "celery.backend_cleanup",  # Celery's own
    }, text
