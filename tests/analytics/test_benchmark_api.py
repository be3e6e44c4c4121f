"""``manage.py benchmark api`` runs end to end against real gunicorn processes and prints its table.

Timings are not asserted (the goals are the benchmark's business); the rows, the query counts the
server reports and the clean-up are.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from trading.models import Account


@pytest.mark.live
@pytest.mark.db_backend
@pytest.mark.django_db(transaction=True)
def test_benchmark_api_prints_its_table(tmp_path: Path) -> None:
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark",
        "api",
        requests=30,
        warmup=5,
        concurrency=4,
        accounts=20,
        symbols=5,
        db_name=throwaway,
        stdout=out,
    )
    text = out.getvalue()
    for scenario in (
        "floor: trivial Django view",
        "leaderboard p99: cached vs uncached (P14)",
        "account analytics p99: cached vs uncached (P14)",
        "symbol stats p99: cached vs uncached (P14)",
        "DB queries/request (P41)",
        "p99/p50 cached (P15)",
        "all cached reads p99 (P14)",
        "bars (not cached)",
    ):
        assert scenario in text, text
    assert "non-2xx answers: 0" in text, text
    for line in text.splitlines():
        if "DB queries/request (P41)" in line:
            assert line.split()[-1] == "yes", line  # caching took fewer queries for every endpoint
    assert not Account.objects.exists()  # the real (test) database was not touched
    if throwaway:
        assert not Path(throwaway).exists()
