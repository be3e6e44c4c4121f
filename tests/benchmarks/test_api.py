"""``manage.py benchmark api`` runs end to end against real gunicorn processes and prints its table,
with wrk driving the load (CI installs it beside chromium) and with the Python client it falls
back to. With wrk on PostgreSQL here; on SQLite the same table comes from ``benchmark all``
(tests/benchmarks/test_all.py checks it with ``api_table_check``), so CI runs each once per backend.

Timings are not asserted (the goals are the benchmark's business); the rows, the query counts the
server reports, the note naming the load generator and the clean-up are.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from benchmarks._api_server import port_free_check
from benchmarks.api import SERVER_PORTS, LoadClient
from tests.benchmarks.served import LOAD_CLIENTS, benchmark_output


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.django_db(transaction=True)
@LOAD_CLIENTS
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_api_prints_its_table(tmp_path: Path, client: str) -> None:
    """With ``--port`` pinned (the default, ports the OS picks, is ``benchmark all``'s run in
    tests/benchmarks/test_all.py): the cached and uncached servers on it, and with wrk the metrics'
    cost round's two servers side by side on it and the next."""
    base = free_ports_first(SERVER_PORTS)
    text = benchmark_output("api", tmp_path, client=client, port=base)
    api_table_check(text, client=client)
    assert text.count(f"starting gunicorn :{base} and the market") == 2, text
    if client == "wrk":  # round 1 starts metrics on first
        assert f"metrics on (:{base}), round 1: " in text and f"metrics off (:{base + 1}), round 1: " in text
    for port in range(base, base + SERVER_PORTS):
        port_free_check(port)  # every server stopped


def free_ports_first(count: int) -> int:
    """The first of ``count`` consecutive ports free on 127.0.0.1 now, below the kernel's ephemeral
    range: a port the OS just handed out (``free_port``) lies inside it, where any process's next
    outgoing connection (the other live tests' clients, Redis, PostgreSQL) may take it as its
    local port before the benchmark listens on it."""
    first_ephemeral = _first_ephemeral_port()
    chooser = random.Random()
    for _ in range(100):
        base = chooser.randrange(PINNED_PORTS_FROM, first_ephemeral - count)
        try:
            for port in range(base, base + count):
                port_free_check(port)
        except CommandError:
            continue
        return base
    raise AssertionError(f"no {count} consecutive free ports found below {first_ephemeral}")


# Below the kernel's ephemeral range (Linux: from 32768) and above the ports services listen on.
PINNED_PORTS_FROM = 20_000


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default; elsewhere (macOS: 49152) still below it


def test_a_pinned_port_out_of_range_or_in_use_is_refused_before_anything_starts() -> None:
    """``--port``: out of range (the servers need it and the next) or a port already listened on
    is a clear error, raised before a database is made or a server started."""
    for port in (80, 65535):
        with pytest.raises(CommandError, match=rf"--port {port}: out of range; .* from 1024 to 65534"):
            call_command("benchmark", "api", port=port, client="python", quiet_wait=0)
    base = free_ports_first(SERVER_PORTS)
    for taken in range(base, base + SERVER_PORTS):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", taken))
            listener.listen()
            with pytest.raises(CommandError, match=rf"--port: 127\.0\.0\.1:{taken} is in use; "):
                call_command("benchmark", "api", port=base, client="python", quiet_wait=0)


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
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_api_cpu_prints_cpu_per_request_and_the_profile_asked_for(tmp_path: Path) -> None:
    """``--cpu``: no server; every endpoint answers 200 in the measuring process (it exits
    otherwise), the compiled querysets are measured against the ORM's own path, ``--cpu-orders``
    adds order placement against the INSERT floor, and ``--profile`` adds that endpoint's cProfile."""
    text = benchmark_output(
        "api",
        tmp_path,
        keys="benchcpu",
        smallest=False,
        cpu=3,
        cpu_rounds=1,
        profile="account",
        accounts=5,
        symbols=3,
        cpu_orders=True,
    )
    for name in ("API floor", "account", "positions", "open orders", "latest quote", "snapshot", "bars"):
        assert f"{name}: CPU per request vs the API floor's" in text
    for name in ("account", "positions", "open orders"):
        assert f"{name}: CPU per request, compiled querysets vs the ORM's (PREPARED_QUERIES=false)" in text
    # --cpu-orders: placement against the INSERT floor, every order (warm-up's 50 and the round's
    # 3) filled whole, from five accounts in turn alternating buy and sell.
    assert "order placement (POST /v2/orders): CPU per filled order vs the INSERT floor's" in text
    assert "order placement: 53 orders placed (warm-up included), 53 filled whole\n" in text + "\n"
    assert "cProfile of account over 3 requests (CPU clock)" in text
    assert "account_summary" in text  # the profile is the account read's (_account_summary_of)


def test_the_metrics_cost_interleaves_the_two_servers_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round starts a server of each setting side by side and measures them in turn, one
    second of wrk at a time (on, off, off, on, ... with the order flipped every other round), so
    the machine's load at any moment falls on both; each setting's figure is its servers' CPU over
    its requests, summed over its seconds."""
    from contextlib import contextmanager

    from benchmarks import api
    from benchmarks._api_server import Measurement

    started: list[bool] = []
    runs: list[tuple[str, int]] = []
    cpu = {7001: 0.0, 7002: 0.0}
    # The "on" server spends 2 ms of CPU and answers 10 requests per run, the "off" one 1 ms and 10.
    spend = {7001: 0.002, 7002: 0.001}

    @contextmanager
    def fake_gunicorn(database_url: str, *, metrics: bool, **kwargs: object) -> Iterator[tuple[int, int]]:
        started.append(metrics)
        yield (8001, 7001) if metrics else (8002, 7002)

    def fake_wrk(wrk: str, port: int, path: str, headers: dict[str, str], **kwargs: object) -> Measurement:
        assert kwargs["duration"] == 1
        pid = 7001 if port == 8001 else 7002
        runs.append(("on" if pid == 7001 else "off", len(started)))
        cpu[pid] += spend[pid]
        return Measurement(p50=0.001, p99=0.002, rate=10.0, errors=0)

    monkeypatch.setattr(api, "gunicorn_started", fake_gunicorn)
    monkeypatch.setattr(api, "_drive_wrk", fake_wrk)
    monkeypatch.setattr(api, "_tree_cpu_seconds", lambda pid: cpu[pid])
    endpoint = api.Endpoint("leaderboard", "/v2/leaderboard?limit=20", cacheable=True)
    options = {"workers": 2, "threads": 1, "duration": 3, "concurrency": 4, "wrk_threads": 1}
    logged: list[str] = []
    cost = api._metrics_cost("wrk", "sqlite://", endpoint, {}, options=options, rounds=2, log=logged.append)
    assert started == [True, False, False, True]
    order = [setting for setting, _ in runs]
    # Per round: the warm-ups (one each), then three seconds of each, interleaved.
    assert order == [
        *["on", "off", "on", "off", "off", "on", "on", "off"],
        *["off", "on", "off", "on", "on", "off", "off", "on"],
    ]
    assert all(servers == 2 for _, servers in runs[:8]) and all(servers == 4 for _, servers in runs[8:])
    # The warm-ups' CPU is not counted: 3 runs x 2 ms over 3 x 10 requests, and 3 x 1 ms.
    assert cost[True] == pytest.approx([200e-6, 200e-6])
    assert cost[False] == pytest.approx([100e-6, 100e-6])
    assert len(logged) == 4 and "10 req/s" in logged[0]
