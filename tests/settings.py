"""Settings of the test suite and of every process a test starts: the production settings, plus
the test database's file name, the test hooks, and per-process overrides.

pytest loads this module (pyproject's DJANGO_SETTINGS_MODULE), and the servers, workers and market
processes the tests start load it too (tests/processes.py's ``process_env``). It lives with the
tests, not in config/, because nothing here belongs in a deployment.

- Redis keys and channels: one prefix, ``REDIS_KEY_PREFIX``, which tests/conftest.py sets per
  pytest process (each xdist worker its own) and the process helpers pass on to the processes a
  test starts; everything else a started process needs comes from this module.
- ``TEST_SETTINGS_OVERRIDES``: a JSON object of settings for one started process, e.g.
  ``{"STREAM_AUTH_TIMEOUT_S": 1}``, as a test's ``settings`` fixture overrides them in its own
  process. A dict value is merged into the setting's dict, key by key; a name that is not a
  setting is refused, so an override cannot silently miss a renamed setting.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from config.settings import *  # noqa: F403
from config.settings import (
    CELERY_BROKER_TRANSPORT_OPTIONS,
    DATABASES,
    INSTALLED_APPS,
    REDIS_KEY_PREFIX,
    VAR_DIR,
)

# Test hooks (tests/apps.py): wrappers around app code that a test switches on through a setting.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.apps.TestHooksConfig"]
# The statement job sleeps this long after claiming its run, so a test can kill its worker then.
JOB_TEST_STATEMENT_HOLD_SECONDS = 0.0
# Benchmark tests check what a run prints, not its speed: no wait for a quiet machine.
BENCHMARK_QUIET_WAIT_S = 0.0

# The broker's keys (queues, unacknowledged messages) under the run's prefix too: xdist workers
# share one Redis, and a Celery worker one test starts must never take another worker's tasks.
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, Any] = {  # type: ignore[no-redef]
    **CELERY_BROKER_TRANSPORT_OPTIONS,
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:broker:",
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests run real processes against the test database, so it must be a file, not :memory:;
    # one per test process, so two test runs on one checkout cannot drop each other's database
    # (pytest-django adds each xdist worker's name to it).
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_db_{os.getpid()}.sqlite3")}


def _merged(current: Any, override: Any) -> Any:
    if isinstance(current, dict) and isinstance(override, dict):
        return {**current, **{key: _merged(current.get(key), value) for key, value in override.items()}}
    return override


def _overridden(overrides: dict[str, Any]) -> None:
    for name, value in overrides.items():
        if not name.isupper() or name not in globals():
            raise ImproperlyConfigured(f"TEST_SETTINGS_OVERRIDES names no setting: {name!r}")
        globals()[name] = _merged(globals()[name], value)


_overridden(json.loads(os.environ.get("TEST_SETTINGS_OVERRIDES") or "{}"))
