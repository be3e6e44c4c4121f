"""``manage.py benchmark ticks`` runs end to end on a small throwaway database and prints its table.

Rates are not asserted (a speed goal is the benchmark's business, not a test's); the rows, the
path the writer took on this backend, that every contender stored every tick, and the clean-up are.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from trading.models import StockPriceHistory


@pytest.mark.django_db(transaction=True)
@pytest.mark.db_backend
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_ticks_prints_its_table(tmp_path: Path) -> None:
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark",
        "ticks",
        rows=3_000,
        window_ticks=250,
        symbols=20,
        rounds=2,
        storage_rows=4_000,
        db_name=throwaway,
        stdout=out,
    )
    text = out.getvalue()

    header = next(line for line in text.splitlines() if line.startswith("scenario"))
    assert header.split() == ["scenario", "optimised", "baseline", "ratio", "goal", "met?"]
    path = "copy" if connection.vendor == "postgresql" else "executemany"
    assert f"ticks persisted: market writer ({path}) vs plain bulk_create" in text, text
    # Every contender ran every round (a contender that lost a tick stops the run with an error).
    for contender in ("writer", "bulk_create"):
        assert f"round 2/2: {contender}:" in text, text
    if connection.vendor == "postgresql":
        assert "ticks persisted: market writer (copy) vs psycopg COPY (ceiling)" in text, text
        assert "round 2/2: copy:" in text, text
    else:
        assert "psycopg COPY" not in text

    # Storage: bytes per row of both layouts and the steady state at defaults, from one run.
    for scenario in (
        "tick row with its indexes: compact vs plain layout",
        "minute bar row with its indexes: compact vs plain layout",
        "steady state at default retentions: compact vs plain layout",
    ):
        assert scenario in text, text
    row = next(line for line in text.splitlines() if line.startswith("tick row with its indexes"))
    compact, plain = (float(value) for value in re.findall(r"([0-9.]+) B\b", row)[:2])
    assert 0 < compact < plain, row
    assert "steady state at defaults: " in text and "before the rework" in text, text
    for layout in ("plain", "compact"):
        assert f"storage: {layout} ticks: " in text and f"storage: {layout} minute bars: " in text, text

    # The real database was never touched, and the throwaway one is gone.
    assert not StockPriceHistory.objects.exists()
    if throwaway:
        assert not Path(throwaway).exists()
