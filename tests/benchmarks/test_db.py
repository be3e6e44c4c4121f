"""``manage.py benchmark db`` runs end to end on a small throwaway database and prints its table.

Timings are not asserted (a speed goal is the benchmark's business, not a test's); the rows,
the goals and the clean-up are.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from trading.models import StockPriceHistory


@pytest.mark.django_db(transaction=True)
@pytest.mark.db_backend
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_db_prints_every_row_of_its_table(tmp_path: Path) -> None:
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark", "db", ticks=20_000, symbols=40, holdings=30, repeat=2, db_name=throwaway, stdout=out
    )
    text = out.getvalue()

    assert "ticks: 20,000 / 20,000 (100%)" in text  # progress while seeding
    header = next(line for line in text.splitlines() if line.startswith("scenario"))
    assert header.split() == ["scenario", "optimised", "baseline", "ratio", "goal", "met?"]
    for scenario in (
        "history page 1: keyset vs OFFSET",
        "history page 1,000: keyset vs OFFSET",
        "keyset page 1,000 vs page 1 (Property 4)",
        "portfolio of 30: queries",
        "portfolio of 30: time",
        # Property 4 across growth: 1,000 ticks (1/20 of them), then all 20,000, at 1 row/page.
        # Each shape compared with itself: page 1,000 one read at both sizes, a page whose
        # look-ahead crosses into the following symbols two.
        "P4 keyset page 1,000 at 20,000 vs 1,000 ticks (20x), 1 rows/page, 1 read vs 1 read",
        "P4 deep page crossing into the following symbols at 20,000 vs 1,000 ticks, 2 reads vs 2 reads",
        "  keyset page 1 at 20,000 vs 1,000 ticks",
    ):
        assert scenario in text, text
    assert "ticks: 1,000 / 20,000 (5%)" in text, text  # the first, smaller table
    assert "20 rows/page" in text  # lowered from 1,000 so that page 1,000 exists
    assert "31" in next(line for line in text.splitlines() if "portfolio of 30: queries" in line)  # N+1

    # The real database was never touched, and the throwaway one is gone.
    assert not StockPriceHistory.objects.exists()
    if throwaway:
        assert not Path(throwaway).exists()
    else:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s",
                [f"{connection.settings_dict['NAME']}_benchmark"],
            )
            assert cursor.fetchone() is None


def test_unknown_benchmark_names_list_the_available_ones() -> None:
    with pytest.raises(CommandError, match=r"invalid choice: 'nope'.*'db'"):
        call_command("benchmark", "nope")


@pytest.mark.django_db
def test_benchmarks_refuse_to_run_inside_a_transaction() -> None:
    with pytest.raises(CommandError, match="inside a transaction"):
        call_command("benchmark", "db", ticks=1000, stdout=io.StringIO())
