"""What the tests of the benchmarks served by gunicorn (``api``, ``trading``, ``games``) share:
the load clients each runs with, and one run at the sizes ``benchmark all --smallest`` uses
(benchmarks/_suite.py ``SMALLEST``, or sizes of the test's own) on a throwaway database of its
own, checked for its clean-up.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from benchmarks._suite import SMALLEST
from config.redis_pools import redis_client
from tests.tools import require_tool
from trading.models import Account, Game

# wrk on PostgreSQL only: on SQLite, `benchmark all` runs these benchmarks with wrk
# (tests/benchmarks/test_all.py checks their tables), so CI runs each once per backend. The Python
# client it falls back to is the same on either backend: CI runs it once.
LOAD_CLIENTS = pytest.mark.parametrize(
    "client",
    [
        pytest.param("wrk", marks=pytest.mark.db_backend("postgresql")),
        pytest.param("python", marks=pytest.mark.backend_neutral),
    ],
)


def benchmark_output(
    name: str, tmp_path: Path, *, keys: str = "bench", smallest: bool = True, **options: Any
) -> str:
    """What ``benchmark <name>`` printed with ``options`` (on top of its smallest sizes unless not
    ``smallest``), once the run is checked to have left nothing behind: the real (test) database
    untouched, its throwaway database gone and no Redis key under ``keys`` (the run's prefix
    before the process id)."""
    if options.get("client") == "wrk":
        require_tool("wrk")
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    sizes = SMALLEST[name] if smallest else {}
    call_command("benchmark", name, **{**sizes, **options}, db_name=throwaway, stdout=out)
    assert not Account.objects.exists() and not Game.objects.exists()
    if throwaway:
        assert not Path(throwaway).exists()
    assert not list(redis_client().scan_iter(match=f"{keys}{os.getpid()}*"))
    return out.getvalue()
