"""``manage.py benchmark stream`` runs end to end against real servers and prints its table.

Speeds are not asserted (the goals are the benchmark's business): the rows, that every client
connection of every server received data, and the clean-up are.

Backend-neutral: the fan-out runs through Redis and WebSockets, and the database only holds the
run's one account and key, read when each client authenticates (a burst of stream
authentications on each backend is tests/realtime/test_auth_burst.py's business). So CI runs this
benchmark once, on SQLite, inside ``benchmark all`` (tests/benchmarks/test_all.py checks the same
table with ``stream_table_check``); this test runs it alone against PostgreSQL (``make test`` with
DATABASE_URL set), and the DB_TESTS_ONLY pass deselects it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from benchmarks import _database, stream
from benchmarks._report import Report
from config.redis_pools import redis_client
from trading.models import Account


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.db_backend("postgresql")
@pytest.mark.backend_neutral  # see the module's docstring: CI runs it in `benchmark all`, on SQLite
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_stream_prints_its_table() -> None:
    out = io.StringIO()
    call_command(
        "benchmark",
        "stream",
        clients=20,
        symbols_per_client=10,
        universe=50,
        seconds=2,
        settle=1,
        rate_multipliers="1,2",
        metrics_rounds=1,
        bandwidth_clients=5,
        stdout=out,
    )
    stream_table_check(out.getvalue())
    assert not Account.objects.exists()  # the real (test) database was not touched
    # Nor is Redis left holding the run's keys (the naive baseline's groups would stay for a day).
    assert not list(redis_client().scan_iter(match=f"bench{os.getpid()}*"))


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.backend_neutral  # the database holds the one key the clients authenticate with
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_the_metrics_cost_measures_both_servers_of_a_round_side_by_side() -> None:
    """Each round starts a daphne with metrics on and one with them off, both up together, each
    with its own Redis prefix and clients, both fed the market, and measures the two over the
    same window (the start order flipping between rounds): the machine's load at any moment falls
    on both settings. Fresh servers every round, stopped after it; the run's keys are deleted."""
    symbols = [f"BS{index:04d}" for index in range(30)]
    run_id = f"bench{os.getpid()}mc"
    with (
        _database.throwaway_database(log=lambda _: None),
        tempfile.TemporaryDirectory(prefix="bench-stream-", dir=settings.VAR_DIR) as workdir,
    ):
        (key, secret), (attacker_key, attacker_secret) = stream._seed(symbols)
        plan = stream.Plan(
            clients=8,
            universe=symbols,
            subscriptions=[symbols[index : index + 10] for index in range(8)],
            key=key,
            secret=secret,
            attacker_key=attacker_key,
            attacker_secret=attacker_secret,
            attack_rounds=0,
            window_s=0.1,
            seconds=1.5,
            settle=0.5,
            multipliers=[4.0],
            redis_prefix=run_id,
            workdir=Path(workdir),
        )
        logged: list[str] = []
        try:
            rounds = stream._metrics_cost(plan, _database.database_url(), 2, logged.append)
        finally:
            stream._forget(run_id)
    assert [measured.order for measured in rounds] == [(True, False), (False, True)]
    pids = set()
    for measured in rounds:
        on, off = measured.measured[True], measured.measured[False]
        assert on.pid != off.pid and on.redis_prefix != off.redis_prefix
        assert {on.redis_prefix, off.redis_prefix} == {
            f"{run_id}m{measured.number}1",
            f"{run_id}m{measured.number}0",
        }
        pids |= {on.pid, off.pid}
        for window in (on, off):
            # Both servers were up over each window, and every client of each got the market.
            assert measured.both_up[0] <= window.started < window.ended <= measured.both_up[1]
            assert window.connected == window.clients_with_data == 8
            assert window.updates > 0 and window.cpu_s >= 0
        # The two windows are one: each opened before either closed.
        assert max(on.started, off.started) < min(on.ended, off.ended)
    assert len(pids) == 4  # a fresh pair of servers per round
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)  # stopped after their round
    assert len([line for line in logged if "us server CPU per delivered update" in line]) == 4
    assert not list(redis_client().scan_iter(match=f"{run_id}*"))
    report = Report(title="t")
    stream._metrics_cost_rows(
        report,
        {
            enabled: [measured.measured[enabled].per_update for measured in rounds]
            for enabled in (True, False)
        },
    )
    assert report.rows[0].scenario.startswith(
        "server CPU per delivered update: metrics on vs off (median of 2 rounds)"
    )


def stream_table_check(text: str) -> None:
    """What ``benchmark stream`` printed (alone, or among ``benchmark all``'s reports)."""
    for scenario in (
        "delivered updates/s @ 1x",
        "design vs raw websockets @ 1x",
        "design vs raw websockets @ 2x",
        "highest delivered updates/s with p99 < 100 ms: design vs raw ceiling",
        "P39 bytes sent per update incl. TCP/IP headers, 5 clients x 10 of 50 symbols: batched vs unbatched",
        "P39 bytes sent per update incl. TCP/IP headers, 5 clients x 50 of 50 symbols (dashboard): "
        "batched vs unbatched",
        "payload only: bytes per update (WebSocket framing, no TCP/IP headers)",
        "JSON bytes per update (no framing)",
        "TCP data segments / frames per update",
        "updates read; kernel: bytes received, data segments, client ACK segments (totals)",
        "measured (P39):",
        "server memory per idle connection",
        "raw websockets per idle connection",
        "bare daphne (no Django/Channels: the floor) per idle connection",
        "server CPU per delivered update: metrics on vs off (median of 1 rounds)",
        "metrics cost rounds (us per update, on / off):",
    ):
        assert scenario in text, text
    for server in ("design", "naive", "raw"):
        rows = [
            line for line in text.splitlines() if line.startswith(f"{server}: connections that received data")
        ]
        assert len(rows) == 1, text
        assert "20/20" in rows[0], rows[0]
        # A server we measure must reach every client; the naive baseline's drops are its figure.
        assert rows[0].split()[-1] in (("-",) if server == "naive" else ("yes", "noisy")), rows[0]
    assert "bare: connections that received data" not in text  # measured for memory only
    # The P39 goal is printed with its verdict (the figure is the benchmark's business, not the test's).
    p39 = [line for line in text.splitlines() if line.startswith("P39 bytes")]
    assert len(p39) == 2, text
    assert p39[0].split()[-2:] == ["-", "-"], p39[0]  # 10 symbols per client: as measured, no goal
    assert p39[1].split()[-3:-1] == ["<=", "0.7x"] and p39[1].split()[-1] in ("yes", "NO", "noisy"), p39[1]
    # Both variants were served and measured by the kernel's counters: the unbatched one sends one
    # frame per event, the batched one fewer frames than events on a dashboard, and segments came.
    segments = [
        line for line in text.splitlines() if line.startswith("  TCP data segments / frames per update")
    ]
    assert len(segments) == 2, text
    for line in segments:
        cells = line.split("per update", 1)[1].split()
        batched_segments, batched_frames = float(cells[0]), float(cells[2])
        unbatched_segments, unbatched_frames = float(cells[3]), float(cells[5])
        assert unbatched_frames == 1.0, line
        assert batched_frames <= 1.0 and batched_segments > 0 and unbatched_segments > 0, line
    dashboard = segments[1].split("per update", 1)[1].split()
    assert float(dashboard[2]) < 1.0, segments[1]
