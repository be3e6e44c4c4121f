"""``manage.py benchmark api`` runs end to end against real gunicorn processes and prints its table,
with wrk driving the load (CI installs it beside chromium) and with the Python client it falls
back to. With wrk on PostgreSQL here; on SQLite the same table comes from ``benchmark all``
(tests/benchmarks/test_all.py checks it with ``api_table_check``), so CI runs each once per backend.

Timings are not asserted (the goals are the benchmark's business); the rows, the query counts the
server reports, the note naming the load generator and the clean-up are.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from benchmarks.api import LoadClient
from config.redis_pools import redis_client
from tests.tools import require_tool
from trading.models import Account


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "client",
    [
        # On SQLite, benchmark all runs it with wrk (test_all.py checks the table with api_table_check).
        pytest.param("wrk", marks=pytest.mark.db_backend("postgresql")),
        # The fallback client is the same on either backend: CI runs it once.
        pytest.param("python", marks=pytest.mark.backend_neutral),
    ],
)
def test_benchmark_api_prints_its_table(tmp_path: Path, client: str) -> None:
    if client == "wrk":
        require_tool("wrk")
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark",
        "api",
        client=client,
        duration=1,
        warmup_seconds=0,
        requests=30,
        warmup=5,
        query_sample=5,
        concurrency=4,
        accounts=20,
        symbols=5,
        metrics_rounds=1,
        db_name=throwaway,
        stdout=out,
    )
    api_table_check(out.getvalue(), client=client)
    assert not Account.objects.exists()  # the real (test) database was not touched
    if throwaway:
        assert not Path(throwaway).exists()
    assert not list(redis_client().scan_iter(match=f"bench{os.getpid()}*"))  # its keys are gone


def api_table_check(text: str, *, client: str) -> None:
    """What ``benchmark api`` printed (alone, or among ``benchmark all``'s reports) with ``client``
    driving the load."""
    for scenario in (
        "floor: trivial Django view",
        "API floor: key auth + rate limiter + DRF, constant body, p50 / p99",
        "leaderboard p99: cached vs uncached (P14)",
        "p99 cached vs the API floor's (P14)",
        "account analytics p99: cached vs uncached (P14)",
        "symbol stats p99: cached vs uncached (P14)",
        "DB queries/request (P41)",
        "p99/p50 cached (P15)",
        "p99/p50 uncached (P15)",
        "p99/p50 (P15)",
        "cached reads, worst p99 (P14)",
        "bars (not cached)",
        # What a bot polls, against the API floor, with the market running.
        "open orders (not cached)",
        "latest trade (not cached)",
        "latest quote (not cached)",
        "snapshot (not cached)",
        "req/s vs the API floor's",
        "p99 vs the API floor's",
        "cache hit rate, L1 (in-process LRU)",
        "cache hit rate, L2 (Redis, on L1 misses)",
        "cache hit rates by data type (the server's cache_hits_total / cache_misses_total): ",
        "load average (1/5/15 min) before:",
    ):
        assert scenario in text, text
    assert "cache hit rates not read" not in text, text
    # Six polled reads, each with its two rows against the API floor.
    lines = text.splitlines()
    assert sum(line.startswith("  req/s vs the API floor's") for line in lines) == 6, text
    assert sum(line.startswith("  p99 vs the API floor's") for line in lines) == 6, text
    assert "non-2xx answers: 0" in text, text
    assert ("load: wrk" in text) == (client == "wrk"), text
    # The metrics' cost needs wrk: the Python client's own CPU would swamp it.
    cost_row = "server CPU per cached request (leaderboard): metrics on vs off (median of 1 rounds)"
    assert (cost_row in text) == (client == "wrk"), text
    assert ("metrics cost not measured" in text) == (client != "wrk"), text
    for line in text.splitlines():
        if "DB queries/request (P41)" in line:
            cached, uncached = (float(value) for value in line.split()[3:5])
            assert cached < 0.5 <= uncached, line  # a cached answer takes (almost always) no query
            assert line.split()[-1] in ("yes", "noisy"), line  # noisy: the machine was loaded
        if line.startswith("cache hit rate, L1"):
            # The cached reads were read again and again: some answers came from L1 (how many
            # depends on the speed: an L1 entry lives at most a second).
            _, _, hits, of, reads = line.split()[6:11]
            assert of == "of" and 0 < float(hits.replace(",", "")) <= float(reads.replace(",", "")), line


def test_without_wrk_the_python_client_is_used_and_said(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    chosen = LoadClient.choose("auto")
    assert chosen.wrk is None and "wrk is not installed" in chosen.note and "floor" in chosen.note
    with pytest.raises(Exception, match="wrk is not installed"):
        LoadClient.choose("wrk")


@pytest.mark.django_db(transaction=True)
@pytest.mark.backend_neutral
def test_benchmark_api_cpu_prints_cpu_per_request_and_the_profile_asked_for(tmp_path: Path) -> None:
    """``--cpu``: no server; every endpoint answers 200 in the measuring process (it exits
    otherwise), the compiled querysets are measured against the ORM's own path, and ``--profile``
    adds that endpoint's cProfile."""
    throwaway = str(tmp_path / "benchmark.sqlite3") if connection.vendor == "sqlite" else None
    out = io.StringIO()
    call_command(
        "benchmark",
        "api",
        cpu=3,
        cpu_rounds=1,
        profile="account",
        accounts=5,
        symbols=3,
        db_name=throwaway,
        stdout=out,
    )
    text = out.getvalue()
    for name in ("API floor", "account", "positions", "open orders", "latest quote", "snapshot", "bars"):
        assert f"{name}: CPU per request vs the API floor's" in text
    for name in ("account", "positions", "open orders"):
        assert f"{name}: CPU per request, compiled querysets vs the ORM's (PREPARED_QUERIES=false)" in text
    assert "cProfile of account over 3 requests (CPU clock)" in text
    assert "account_summary" in text  # the profile is the account read's
    assert not Account.objects.exists()
    if throwaway:
        assert not Path(throwaway).exists()
    assert not list(redis_client().scan_iter(match=f"benchcpu{os.getpid()}*"))
