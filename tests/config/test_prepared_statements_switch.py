"""``DB_PREPARED_STATEMENTS``: the operator's switch for statements prepared on the server
(config/postgresql/base.py). On by default; off (behind a transaction-pooling proxy, which cannot
keep a session's prepared statements) the connection prepares nothing and the polled reads take
Django's client-bound cursor.

The settings are read from the environment when the settings module loads, so each case runs in a
fresh process, as a deployment would start, against this run's PostgreSQL server.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.postgresql.base import PREPARE_ON_REQUEST_ONLY
from tests.processes import ROOT, VENV_BIN

pytestmark = pytest.mark.db_backend("postgresql")

PRINT_CONNECTION = """
import json, django
django.setup()
from django.db import connection
from config.postgresql.base import PreparingCursor
with connection.prepared_cursor() as cursor:
    cursor.execute("SELECT %s::int + 1", [41])
    answer = cursor.fetchone()[0]
    preparing = isinstance(cursor.cursor, PreparingCursor)
print(json.dumps({
    "threshold": connection.connection.prepare_threshold,
    "preparing": preparing,
    "answer": answer,
}))
"""


def connection_with(tmp_path: Path, **variables: str) -> Any:
    env = {name: value for name, value in os.environ.items() if name != "DB_PREPARED_STATEMENTS"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", VAR_DIR=str(tmp_path), **variables)
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", PRINT_CONNECTION],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_statements_are_prepared_by_default(tmp_path: Path) -> None:
    assert connection_with(tmp_path) == {
        "threshold": PREPARE_ON_REQUEST_ONLY,
        "preparing": True,
        "answer": 42,
    }


def test_the_switch_off_leaves_djangos_client_bound_cursor(tmp_path: Path) -> None:
    assert connection_with(tmp_path, DB_PREPARED_STATEMENTS="false") == {
        "threshold": None,
        "preparing": False,
        "answer": 42,
    }
