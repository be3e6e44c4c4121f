"""The Celery app (config/celery.py): loaded with the config package, it is every thread's current
app in any process that loads the settings, so jobs send tasks through it without importing the
wiring."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT

# What a web process does before its first request enqueues a job: load Django, nothing of Celery.
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


def test_every_thread_of_a_django_process_sends_through_the_project_app() -> None:
    # gunicorn serves requests, and so enqueues jobs, from threads other than the one that
    # loaded the app; Celery's current app is per thread unless the app is also the default.
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    done = subprocess.run(
        [sys.executable, "-c", CURRENT_APP_IN_A_THREAD],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.split() == ["simulator", "simulator"], done.stderr
