"""``manage.py benchmark games`` runs end to end at tiny sizes against real gunicorn, the market
and the leaderboard job, and prints its table (README, Running a game).

Timings are not asserted (the goals are the benchmark's business); the rows, no errors, a board
read within its bound, the SQL statement counts and the clean-up are.

On PostgreSQL here; on SQLite the same table comes from ``benchmark all``
(tests/benchmarks/test_all.py checks it with ``games_table_check``), so CI runs the benchmark
once per backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.served import benchmark_output


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_games_prints_its_table(tmp_path: Path) -> None:
    games_table_check(benchmark_output("games", tmp_path, keys="benchgames", quiet_wait=0))


def games_table_check(text: str) -> None:
    """Every row of ``benchmark games``' table, no request failed, and the verdicts that are counts,
    not speeds."""
    for scenario in (
        "order placement p50 / p99 (",
        "account read p50 / p99 (",
        "game leaderboard age when read, max (",
        "game board refresh (one game, median of 3)",
        "leaderboard job run, every board (median / max of",
        "SQL statements per order: game account vs default account",
        "errors by kind: none",
        "CPU during the load, cores in use",
        "web workers (",
    ):
        assert scenario in text, text
    for line in text.splitlines():
        if line.startswith(("errors (non-2xx", "game leaderboard age", "SQL statements per order")):
            assert line.split()[-1] == "yes", line
