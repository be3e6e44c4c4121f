"""``benchmark api``: the main read endpoints through gunicorn on loopback, cached against uncached,
and what a bot polls against the API floor.

Seeds a throwaway database (``--accounts`` accounts holding positions in ``--symbols`` symbols,
bars, ticks, precomputed leaderboards, analytics and symbol stats, and a few open orders of the
polled account), then starts gunicorn twice on 127.0.0.1 (the Procfile's command: ``--workers``
sync workers, or gthread ones with ``--threads`` above 1): once as configured and once with
``CACHE_ENABLED=false``, each with ``manage.py run_market`` beside it on the same Redis names, so
the latest trades, quotes and snapshots come from Redis as under ``make run``. Load comes from
``wrk`` (``--concurrency`` connections, default 16, for ``--duration`` seconds per endpoint after
``--warmup-seconds``; a small Lua script reports wrk's own p50/p99), a compiled load generator
whose cost hardly shows beside the server's.
Without wrk (or with ``--client python``) a threaded Python client sends ``--requests`` requests
instead; its threads then compete with the server for the same cores and inflate every figure,
the floor included, which the report says. Per endpoint it prints p50, p99 and requests/s, and the
database queries a response took (the ``X-DB-Queries`` header the benchmark-only middleware adds,
sampled by ``--query-sample`` sequential requests after the load):

- two floors: a trivial Django view (``/v2/_bench/ping``), and the API floor
  (``/v2/_bench/api-ping``, benchmarks/views.py): a DRF view behind the same key authentication
  and rate limiter as every endpoint, answering a constant body;
- the cached reads (leaderboard, account analytics, symbol stats; docs/properties.md): Property 14,
  p99 under 10 ms and within 1.3x of the API floor's; Property 41, fewer queries per request than
  uncached; Property 15, p99/p50 bounded;
- what a bot polls (account, positions, open orders, latest trade, latest quote, snapshot), not
  cached: at least 0.5x the API floor's requests/s and at most 2x its p99, from the same run;
- the other reads (assets, bars); Property 15, p99/p50 bounded, for every endpoint (the uncached
  reads included);
- the cache's hit rate per layer (L1 in-process, L2 Redis) over the cached run, from the cache's
  own counters as the server's ``/metrics`` reports them (read with a token the run passes to
  gunicorn in its environment).

With ``--cpu N`` it serves nothing and measures CPU per request instead, in one process
(benchmarks/_cpu_probe.py), the polled reads also through the ORM's own path
(``PREPARED_QUERIES=false``); ``--profile <endpoint>`` adds that endpoint's cProfile, and
``--cpu-orders`` order placement (filled market orders, as ``benchmark trading`` sends them)
against ``benchmark trading``'s INSERT floor.

Rate limits stay on with limits too high to trip, so their cost is in every figure. The
leaderboard's staleness bound is lifted for the run: recomputing it is a write, not a read. The
machine's load average before and after is printed with the table: on a shared machine compare
ratios within one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import F
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from analytics import services as analytics_services
from benchmarks import _database
from benchmarks._api_server import (
    METRICS_TOKEN,
    PORT_MAX,
    PORT_MIN,
    READ_RATE_LIMITS,
    ROOT,
    LoadClient,
    Measurement,
    gunicorn_started,
    percentile,
    ports_check,
    server_arguments_add,
    server_layout,
    wrk_result,
)
from benchmarks._report import METRICS_COST_GOAL, Report, Row, speedup
from benchmarks.processes import redis_keys_delete
from benchmarks.trading import FLOOR_PATH, ORDER_RATE_LIMITS, ORDERS_PATH, traders_seed
from config.metrics import FLUSH_INTERVAL_S
from trading import services
from trading.models import (
    Account,
    Asset,
    CashEntry,
    DailyBar,
    MinuteBar,
    Order,
    OrderSide,
    OrderStatus,
    OrderType,
    Position,
    PositionIntent,
    StockPriceHistory,
    TimeInForce,
)
from trading.units import UNITS_PER_CENT, shares_to_units

HELP = "cached vs uncached reads through gunicorn on loopback: p50/p99, req/s, queries per request"

P99_GOAL_MS = 10.0
SPREAD_GOAL = 3.0  # Property 15: p99/p50 for every endpoint
# Against the API floor (key authentication, the rate limiter and DRF, nothing else), one run:
# what a bot polls keeps half its throughput and at most twice its p99; a cached read stays
# within 1.3x of its p99 (and under P99_GOAL_MS).
BOT_READ_RATE_GOAL = 0.5
BOT_READ_P99_GOAL = 2.0
CACHED_P99_GOAL = 1.3
# Open orders the polled account holds (GET /v2/orders?status=open), each a one-share limit buy
# at $1.00, far below the seeded prices (~$100).
OPEN_ORDERS = 5
OPEN_ORDER_LIMIT_UNITS = 10_000
# ``--port``: the most servers running at once (a metrics' cost round's two, side by side).
SERVER_PORTS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk when installed (auto, the default), or the threaded Python client",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="keep-alive connections (wrk) or client threads (default 16)",
    )
    parser.add_argument(
        "--duration", type=int, default=5, help="wrk: timed whole seconds per endpoint (default 5)"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=int,
        default=1,
        help="wrk: untimed whole seconds per endpoint first (default 1; 0 for none)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk: threads (default 1)")
    parser.add_argument(
        "--requests", type=int, default=2000, help="Python client: timed requests per endpoint (default 2000)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=200,
        help="Python client: untimed requests per endpoint first (default 200)",
    )
    parser.add_argument(
        "--query-sample",
        type=int,
        default=50,
        help="sequential requests sampled for queries/request (default 50)",
    )
    parser.add_argument("--accounts", type=int, default=200, help="accounts to seed (default 200)")
    parser.add_argument("--symbols", type=int, default=50, help="assets to seed (default 50)")
    server_arguments_add(parser)
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=(
            "pin the servers' ports on 127.0.0.1: PORT for the cached and uncached runs (one after "
            "the other) and for each metrics' cost round's first server, PORT+1 for its second "
            "(side by side), so runs on one machine can keep to ranges of their own "
            f"({PORT_MIN}-{PORT_MAX - SERVER_PORTS + 1}; default: free ports the OS picks; "
            "--cpu starts no server)"
        ),
    )
    parser.add_argument(
        "--metrics-rounds",
        type=int,
        default=3,
        help=(
            "rounds of gunicorn with metrics on and off (METRICS_ENABLED=false) under wrk on a cached "
            "read, order alternating, for the CPU per cached request (default 3; 0: none; needs wrk)"
        ),
    )
    parser.add_argument(
        "--metrics-cost-only",
        action="store_true",
        help="measure only the metrics' cost (skip the endpoint table)",
    )
    parser.add_argument(
        "--cpu",
        type=int,
        default=0,
        metavar="REQUESTS",
        help=(
            "instead of serving: CPU per request of each endpoint in one process (no gunicorn, no "
            "wrk, no market; quotes published to Redis from the seeded ticks), time.process_time "
            "over REQUESTS requests through the WSGI application, the best of --cpu-rounds, and "
            "each against the API floor's (benchmarks/_cpu_probe.py)"
        ),
    )
    parser.add_argument("--cpu-rounds", type=int, default=3, help="--cpu: rounds per endpoint (default 3)")
    parser.add_argument(
        "--cpu-orders",
        action="store_true",
        help=(
            "--cpu: also order placement (POST /v2/orders, filled one-share market orders from "
            "--accounts accounts in turn, alternating buy and sell) against the INSERT floor "
            "(POST /v2/_bench/insert), benchmark trading's floor, with rate limits lifted"
        ),
    )
    parser.add_argument(
        "--profile",
        default="",
        metavar="ENDPOINT",
        help="--cpu: also print the cProfile (CPU clock) of this endpoint, by its table name (e.g. account)",
    )


@dataclass(frozen=True)
class Endpoint:
    name: str
    path: str
    cacheable: bool
    authenticated: bool = True
    # What a bot polls (account, positions, open orders, latest trade/quote, snapshot): held to
    # the API floor's throughput and tail (README, Benchmarks).
    bot_read: bool = False


FLOOR = "trivial Django view (floor)"
API_FLOOR = "API floor"


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    if int(options.get("cpu") or 0):
        return _cpu_run(options, log)
    concurrency = int(options["concurrency"])
    if int(options["requests"]) < 1 or concurrency < 1 or int(options["duration"]) < 1:
        raise CommandError("--requests, --concurrency and --duration must be positive")
    client = LoadClient.choose(str(options.get("client") or "auto"))
    port_base = options.get("port")
    if port_base is not None:
        ports_check(int(port_base), SERVER_PORTS)  # before seeding: a taken port fails at once
    load_before = os.getloadavg()
    with _database.throwaway_database(
        name=options.get("db_name"), keep=bool(options.get("keep")), log=log
    ) as name:
        symbols = int(options["symbols"])
        headers, symbol = _seed(accounts=int(options["accounts"]), symbols=symbols, log=log)
        endpoints = _endpoints(symbol)
        database_url = _database.database_url()
        results: dict[tuple[str, bool], Measurement] = {}
        hit_rates: CacheCounts | None = None
        cost_only = bool(options.get("metrics_cost_only"))
        for cached in () if cost_only else (True, False):
            chosen = endpoints if cached else [endpoint for endpoint in endpoints if endpoint.cacheable]
            label = "cache on" if cached else "cache off (CACHE_ENABLED=false)"
            # The market runs beside gunicorn as under `make run`, so the quotes the trading
            # reads serve come from Redis and its writes load the database as they would there.
            with gunicorn_started(
                database_url,
                cached=cached,
                workers=int(options["workers"]),
                threads=int(options["threads"]),
                market_symbols=symbols,
                log=log,
                port=None if port_base is None else int(port_base),
            ) as port:
                for endpoint in chosen:
                    sent = headers if endpoint.authenticated else {}
                    if client.wrk is not None:
                        log(
                            f"{label}: {endpoint.name}: wrk, {options['duration']} s at concurrency {concurrency}"
                        )
                        measured = _drive_wrk(
                            client.wrk,
                            port,
                            endpoint.path,
                            sent,
                            duration=int(options["duration"]),
                            warmup=int(options["warmup_seconds"]),
                            concurrency=concurrency,
                            threads=int(options["wrk_threads"]),
                        )
                    else:
                        log(
                            f"{label}: {endpoint.name}: {options['requests']} requests at concurrency {concurrency}"
                        )
                        measured = _drive(
                            port,
                            endpoint.path,
                            sent,
                            requests=int(options["requests"]),
                            warmup=int(options["warmup"]),
                            concurrency=concurrency,
                        )
                    measured.queries = _queries_per_request(
                        port, endpoint.path, sent, count=int(options["query_sample"])
                    )
                    results[endpoint.name, cached] = measured
                if cached:
                    hit_rates = _cache_counts(port)
        load = (
            f"wrk, {options['duration']} s per endpoint"
            if client.wrk
            else f"Python client, {options['requests']} requests per endpoint"
        )
        layout = server_layout(options)
        report = Report(
            title=(
                f"benchmark api: {connection.vendor} ({name}), gunicorn {layout} on 127.0.0.1, "
                f"concurrency {concurrency}, {load}"
            )
        )
        if not cost_only:
            _rows(report, endpoints, results)
            _cache_rows(report, hit_rates)
        rounds = int(options.get("metrics_rounds") or 0)
        if rounds and client.wrk is not None:
            leaderboard = next(endpoint for endpoint in endpoints if endpoint.name == "leaderboard")
            cost = _metrics_cost(
                client.wrk, database_url, leaderboard, headers, options=options, rounds=rounds, log=log
            )
            _metrics_cost_rows(report, cost, leaderboard)
        elif rounds:
            report.notes.append(
                "metrics cost not measured: it needs wrk (the Python client's own CPU would swamp it)"
            )
    report.notes.append(client.note)
    load_after = os.getloadavg()
    report.notes.append(
        "load average (1/5/15 min) before: {} after: {} on {} cores".format(
            " ".join(f"{value:.2f}" for value in load_before),
            " ".join(f"{value:.2f}" for value in load_after),
            os.cpu_count(),
        )
    )
    return report


def _endpoints(symbol: str) -> list[Endpoint]:
    start = (timezone.now() - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        Endpoint(FLOOR, "/v2/_bench/ping", cacheable=False, authenticated=False),
        Endpoint(API_FLOOR, "/v2/_bench/api-ping", cacheable=False),
        Endpoint("leaderboard", "/v2/leaderboard?limit=20", cacheable=True),
        Endpoint("account analytics", "/v2/analytics/account", cacheable=True),
        Endpoint("symbol stats", f"/v2/analytics/symbols/{symbol}", cacheable=True),
        Endpoint("account", "/v2/account", cacheable=False, bot_read=True),
        Endpoint("positions", "/v2/positions", cacheable=False, bot_read=True),
        Endpoint("open orders", "/v2/orders?status=open", cacheable=False, bot_read=True),
        Endpoint("latest trade", f"/v2/stocks/{symbol}/trades/latest", cacheable=False, bot_read=True),
        Endpoint("latest quote", f"/v2/stocks/{symbol}/quotes/latest", cacheable=False, bot_read=True),
        Endpoint("snapshot", f"/v2/stocks/{symbol}/snapshot", cacheable=False, bot_read=True),
        Endpoint("assets", "/v2/assets", cacheable=False),
        Endpoint("bars", f"/v2/stocks/{symbol}/bars?timeframe=1Min&limit=100&start={start}", cacheable=False),
    ]


# The polled reads whose querysets trading/prepared.py compiles once (the account row with its
# game, the order poll): measured again with PREPARED_QUERIES=false, the ORM's own path.
PREPARED_READS = ("account", "positions", "open orders")


def _cpu_run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    """``--cpu``: CPU per request of every endpoint, in one process (benchmarks/_cpu_probe.py),
    and of the polled reads again without the compiled querysets (trading/prepared.py)."""
    requests, rounds = int(options["cpu"]), int(options["cpu_rounds"])
    if requests < 1 or rounds < 1:
        raise CommandError("--cpu and --cpu-rounds must be positive")
    with _database.throwaway_database(
        name=options.get("db_name"), keep=bool(options.get("keep")), log=log
    ) as name:
        headers, symbol = _seed(accounts=int(options["accounts"]), symbols=int(options["symbols"]), log=log)
        endpoints = _endpoints(symbol)
        profile = str(options.get("profile") or "")
        if profile and profile not in {endpoint.name for endpoint in endpoints}:
            raise CommandError(f"--profile: no endpoint named {profile!r}")
        spec = {"headers": headers, "requests": requests, "rounds": rounds}
        log(f"CPU per request: {len(endpoints)} endpoints, {rounds} rounds of {requests} requests each")
        measured = _cpu_probe({**spec, "endpoints": endpoints, "profile": profile}, {})
        log(
            f"CPU per request through the ORM's own path (PREPARED_QUERIES=false): {', '.join(PREPARED_READS)}"
        )
        orm = _cpu_probe(
            {**spec, "endpoints": [e for e in endpoints if e.name in PREPARED_READS], "profile": ""},
            {"PREPARED_QUERIES": "false"},
        )
        orders = (
            _cpu_orders(spec, accounts=int(options["accounts"]), log=log)
            if options.get("cpu_orders")
            else None
        )
        report = Report(
            title=(
                f"benchmark api --cpu: {connection.vendor} ({name}), CPU per request in one process "
                f"(time.process_time, best of {rounds} x {requests} requests)"
            )
        )
    cpu: dict[str, float] = measured["cpu_us"]
    floor = cpu[API_FLOOR]
    for endpoint in endpoints:
        figure = cpu[endpoint.name]
        report.add(
            Row(
                f"{endpoint.name}: CPU per request vs the API floor's",
                f"{figure:,.0f} us",
                "-" if endpoint.name == API_FLOOR else f"{floor:,.0f} us",
                "-" if endpoint.name == API_FLOOR else f"{figure / floor:.2f}x",
                "-",
                None,
            )
        )
    for read in PREPARED_READS:
        compiled, plain = cpu[read], orm["cpu_us"][read]
        report.add(
            Row(
                f"{read}: CPU per request, compiled querysets vs the ORM's (PREPARED_QUERIES=false)",
                f"{compiled:,.0f} us",
                f"{plain:,.0f} us",
                speedup(plain, compiled),
                "-",
                None,
            )
        )
    if orders is not None:
        placement, insert_floor = orders.cpu_us[ORDER_PLACEMENT], orders.cpu_us[INSERT_FLOOR]
        report.add(
            Row(
                f"{ORDER_PLACEMENT}: CPU per filled order vs the INSERT floor's",
                f"{placement:,.0f} us",
                f"{insert_floor:,.0f} us",
                f"{placement / insert_floor:.2f}x",
                "-",
                None,
            )
        )
        report.notes.append(
            f"order placement: {orders.placed:,} orders placed (warm-up included), "
            f"{orders.filled_whole:,} filled whole"
            + (
                ""
                if orders.placed == orders.filled_whole
                else " (NOT ALL: the figure is not a filled order's)"
            )
        )
    report.notes.append(
        "CPU, not latency: no server, no load generator and no market beside it; the seeded ticks' "
        "quotes are in Redis. Compare rows within one run."
    )
    if measured["profile"]:
        report.notes.append(
            f"cProfile of {profile} over {requests} requests (CPU clock):\n{measured['profile']}"
        )
    return report


INSERT_FLOOR = "INSERT floor (POST /v2/_bench/insert)"
ORDER_PLACEMENT = "order placement (POST /v2/orders)"


@dataclass(frozen=True)
class OrdersCpu:
    cpu_us: dict[str, float]
    placed: int
    filled_whole: int


def _cpu_orders(spec: dict[str, Any], *, accounts: int, log: Callable[[str], None]) -> OrdersCpu:
    """``--cpu-orders``: accounts of their own (benchmark trading's, ``traders_seed``), then the
    INSERT floor and order placement in one measuring process, each request from the next account,
    alternating buy and sell per account; afterwards, how many of their orders filled whole."""
    traders = traders_seed(accounts=max(1, accounts), symbols=1, log=log)
    log(f"CPU per request: the INSERT floor and order placement from {len(traders)} accounts in turn")
    measured = _cpu_probe(
        {
            **spec,
            "endpoints": [],
            "posts": [[INSERT_FLOOR, FLOOR_PATH], [ORDER_PLACEMENT, ORDERS_PATH]],
            "traders": [[trader.headers, trader.symbol] for trader in traders],
            "profile": "",
        },
        {"RATE_LIMITS": ORDER_RATE_LIMITS},
    )
    placed = Order.objects.filter(asset__symbol__in={trader.symbol for trader in traders})  # theirs alone
    return OrdersCpu(
        cpu_us=measured["cpu_us"],
        placed=placed.count(),
        filled_whole=placed.filter(status=OrderStatus.FILLED, filled_qty=F("qty")).count(),
    )


def _cpu_probe(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One run of the measuring process on the throwaway database, with Redis keys of its own."""
    redis_prefix = f"benchcpu{os.getpid()}"
    endpoints: list[Endpoint] = spec["endpoints"]
    spec = {**spec, "endpoints": [[e.name, e.path, e.authenticated] for e in endpoints]}
    environment: dict[str, str] = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database.database_url(),
        "BENCHMARK_ENDPOINTS": "true",
        "REDIS_KEY_PREFIX": redis_prefix,
        "RATE_LIMITS": READ_RATE_LIMITS,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    try:
        probe = subprocess.run(
            [sys.executable, "-m", "benchmarks._cpu_probe"],
            cwd=ROOT, env=environment, input=json.dumps(spec), capture_output=True, text=True, check=False,
        )  # fmt: skip
    finally:
        redis_keys_delete(f"{redis_prefix}:*")
    if probe.returncode != 0:
        raise CommandError(f"the measuring process failed:\n{probe.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(probe.stdout)
    return result


def _tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU of gunicorn's arbiter and its live workers so far."""
    total = 0.0
    try:
        arbiter = psutil.Process(pid)
        for process in [arbiter, *arbiter.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system
    except psutil.Error:
        pass
    return total


def _metrics_cost(
    wrk: str,
    database_url: str,
    endpoint: Endpoint,
    headers: dict[str, str],
    *,
    options: dict[str, Any],
    rounds: int,
    log: Callable[[str], None],
) -> dict[bool, list[float]]:
    """Server CPU seconds per cached request with metrics on (True) and off (False,
    METRICS_ENABLED=false), per round: a fresh gunicorn of each setting, both started side by side
    and warmed up, then ``--duration`` one-second wrk runs against each, interleaved (on, off, off,
    on, ...), the CPU of each server's processes read around each of its runs and summed.

    Interleaved because a round's figure moves with the machine's load: on 2 shared cores the CPU
    per request of one server moves by up to 15 % from one second to the next, more than the
    metrics cost, so measuring one setting for ``--duration`` seconds and then the other compared
    the load of two moments as much as the settings. Seconds of the two taken in turn put the same
    load on both; the order of the starts and of each pair alternates too."""
    cost: dict[bool, list[float]] = {True: [], False: []}
    port_base = options.get("port")
    for round_number in range(1, rounds + 1):
        settings_order = (True, False) if round_number % 2 else (False, True)
        with contextlib.ExitStack() as servers:
            started: dict[bool, tuple[int, int]] = {}
            for index, enabled in enumerate(settings_order):
                started[enabled] = servers.enter_context(
                    gunicorn_started(
                        database_url,
                        cached=True,
                        workers=int(options["workers"]),
                        threads=int(options["threads"]),
                        metrics=enabled,
                        port=None if port_base is None else int(port_base) + index,
                    )
                )
            command_options = {
                "duration": 1,
                "concurrency": int(options["concurrency"]),
                "threads": int(options["wrk_threads"]),
            }
            # Warm-up, untimed: the caches, the connection pools and the metrics' children.
            for enabled in settings_order:
                _drive_wrk(wrk, started[enabled][0], endpoint.path, headers, warmup=0, **command_options)
            spent = dict.fromkeys(settings_order, 0.0)
            requests = dict.fromkeys(settings_order, 0.0)
            for second in range(int(options["duration"])):
                for enabled in settings_order if second % 2 == 0 else settings_order[::-1]:
                    port, pid = started[enabled]
                    before = _tree_cpu_seconds(pid)
                    measured = _drive_wrk(wrk, port, endpoint.path, headers, warmup=0, **command_options)
                    spent[enabled] += _tree_cpu_seconds(pid) - before
                    requests[enabled] += measured.rate
        for enabled in (True, False):
            per_request = spent[enabled] / requests[enabled] if requests[enabled] else float("nan")
            cost[enabled].append(per_request)
            log(
                f"metrics {'on' if enabled else 'off'} (:{started[enabled][0]}), round {round_number}: "
                f"{endpoint.name} "
                f"{requests[enabled] / int(options['duration']):,.0f} req/s, "
                f"{per_request * 1e6:.1f} us server CPU per request"
            )
    return cost


def _metrics_cost_rows(report: Report, cost: dict[bool, list[float]], endpoint: Endpoint) -> None:
    on, off = statistics.median(cost[True]), statistics.median(cost[False])
    ratio = on / off if off else float("inf")
    report.add(
        Row(
            f"server CPU per cached request ({endpoint.name}): metrics on vs off "
            f"(median of {len(cost[True])} rounds)",
            f"{on * 1e6:.1f} us",
            f"{off * 1e6:.1f} us",
            f"{ratio:.3f}x ({(ratio - 1) * 100:+.1f} %)",
            f"<= {METRICS_COST_GOAL:.2f}x",
            ratio <= METRICS_COST_GOAL,
        )
    )
    report.notes.append(
        "metrics cost rounds (us per request, on / off): "
        + "; ".join(f"{a * 1e6:.1f} / {b * 1e6:.1f}" for a, b in zip(cost[True], cost[False], strict=True))
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _rows(report: Report, endpoints: list[Endpoint], results: dict[tuple[str, bool], Measurement]) -> None:
    floor = results[FLOOR, True]
    api_floor = results[API_FLOOR, True]
    report.add(
        Row(
            "floor: trivial Django view p50 / p99",
            f"{_ms(floor.p50)} / {_ms(floor.p99)}",
            "-",
            f"{floor.rate:,.0f} req/s",
            "-",
            None,
        )
    )
    report.add(
        Row(
            "API floor: key auth + rate limiter + DRF, constant body, p50 / p99",
            f"{_ms(api_floor.p50)} / {_ms(api_floor.p99)}",
            "-",
            f"{api_floor.rate:,.0f} req/s",
            f"{api_floor.queries:.1f} queries/request",
            None,
        )
    )
    worst: Measurement | None = None
    for endpoint in endpoints:
        if not endpoint.cacheable:
            continue
        hot, cold = results[endpoint.name, True], results[endpoint.name, False]
        if worst is None or hot.p99 > worst.p99:
            worst = hot
        report.add(
            Row(
                f"{endpoint.name} p99: cached vs uncached (P14)",
                _ms(hot.p99),
                _ms(cold.p99),
                f"{cold.p99 / hot.p99:.2f}x" if hot.p99 else "-",
                f"< {P99_GOAL_MS:.0f} ms",
                hot.p99 * 1000 < P99_GOAL_MS and not hot.errors,
            )
        )
        report.add(
            Row(
                "  p99 cached vs the API floor's (P14)",
                _ms(hot.p99),
                _ms(api_floor.p99),
                _ratio(hot.p99, api_floor.p99),
                f"<= {CACHED_P99_GOAL}x and < {P99_GOAL_MS:.0f} ms",
                bool(api_floor.p99)
                and hot.p99 <= CACHED_P99_GOAL * api_floor.p99
                and hot.p99 * 1000 < P99_GOAL_MS
                and not hot.errors,
            )
        )
        report.add(
            Row(
                "  p50",
                _ms(hot.p50),
                _ms(cold.p50),
                f"{cold.p50 / hot.p50:.2f}x" if hot.p50 else "-",
                "-",
                None,
            )
        )
        report.add(
            Row(
                "  req/s",
                f"{hot.rate:,.0f}",
                f"{cold.rate:,.0f}",
                f"{hot.rate / cold.rate:.2f}x" if cold.rate else "-",
                "-",
                None,
            )
        )
        report.add(
            Row(
                "  DB queries/request (P41)",
                f"{hot.queries:.2f}",
                f"{cold.queries:.2f}",
                "-",
                "fewer cached",
                hot.queries < cold.queries,
                load_free=True,
            )
        )
        spread = _spread(hot)
        report.add(
            Row(
                "  p99/p50 cached (P15)",
                f"{spread:.2f}",
                f"{_spread(cold):.2f}",
                "-",
                f"<= {SPREAD_GOAL:.0f}",
                spread <= SPREAD_GOAL,
            )
        )
        # Property 15 holds for every endpoint, the uncached path included.
        report.add(
            Row(
                "  p99/p50 uncached (P15)",
                f"{_spread(cold):.2f}",
                "-",
                "-",
                f"<= {SPREAD_GOAL:.0f}",
                _spread(cold) <= SPREAD_GOAL,
            )
        )
    if worst is not None:
        report.add(
            Row(
                "cached reads, worst p99 (P14)",
                _ms(worst.p99),
                _ms(floor.p99),
                f"{worst.p99 / floor.p99:.2f}x of the floor" if floor.p99 else "-",
                f"< {P99_GOAL_MS:.0f} ms",
                worst.p99 * 1000 < P99_GOAL_MS,
            )
        )
    for endpoint in endpoints:
        if endpoint.cacheable or not endpoint.authenticated or endpoint.name == API_FLOOR:
            continue
        measured = results[endpoint.name, True]
        report.add(
            Row(
                f"{endpoint.name} (not cached) p50 / p99",
                f"{_ms(measured.p50)} / {_ms(measured.p99)}",
                "-",
                f"{measured.rate:,.0f} req/s",
                f"{measured.queries:.1f} queries/request",
                None,
            )
        )
        if endpoint.bot_read:
            report.add(
                Row(
                    "  req/s vs the API floor's",
                    f"{measured.rate:,.0f}",
                    f"{api_floor.rate:,.0f}",
                    _ratio(measured.rate, api_floor.rate),
                    f">= {BOT_READ_RATE_GOAL}x",
                    bool(api_floor.rate) and measured.rate >= BOT_READ_RATE_GOAL * api_floor.rate,
                )
            )
            report.add(
                Row(
                    "  p99 vs the API floor's",
                    _ms(measured.p99),
                    _ms(api_floor.p99),
                    _ratio(measured.p99, api_floor.p99),
                    f"<= {BOT_READ_P99_GOAL:.0f}x",
                    bool(api_floor.p99)
                    and measured.p99 <= BOT_READ_P99_GOAL * api_floor.p99
                    and not measured.errors,
                )
            )
        report.add(
            Row(
                "  p99/p50 (P15)",
                f"{_spread(measured):.2f}",
                "-",
                "-",
                f"<= {SPREAD_GOAL:.0f}",
                _spread(measured) <= SPREAD_GOAL and not measured.errors,
            )
        )
    errors = sum(measured.errors for measured in results.values())
    report.notes.append(
        f"non-2xx answers: {errors}"
        + ("" if not errors else " (see the rows above; a failing endpoint's figures are not comparable)")
    )


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor else "-"


# --- Cache hit rates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CacheCounts:
    """The cache's own counters (config/cache.py: ``cache_hits_total`` and ``cache_misses_total``
    by layer and data type) as the cached run's gunicorn served them on ``/metrics``; None when
    the server did not answer (metrics disabled, say)."""

    hits: dict[tuple[str, str], float]
    misses: dict[tuple[str, str], float]

    def layer(self, layer: str) -> tuple[float, float]:
        """(hits, reads) of ``layer`` over every data type."""
        hits = sum(value for (name, _), value in self.hits.items() if name == layer)
        misses = sum(value for (name, _), value in self.misses.items() if name == layer)
        return hits, hits + misses


def _cache_counts(port: int) -> CacheCounts | None:
    """The server's cache counters after the run. Each process writes its counts once a second
    (config/metrics.py, Deferred), so the scrape waits for one flush first."""
    time.sleep(FLUSH_INTERVAL_S * 1.5)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read().decode()
    except (OSError, urllib.error.URLError):
        return None
    counts: dict[str, dict[tuple[str, str], float]] = {"cache_hits_total": {}, "cache_misses_total": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found = counts.get(sample.name)
            if found is not None:
                key = (sample.labels.get("layer", ""), sample.labels.get("data_type", ""))
                found[key] = found.get(key, 0.0) + sample.value
    return CacheCounts(hits=counts["cache_hits_total"], misses=counts["cache_misses_total"])


CACHE_LAYERS = (
    ("L1", "L1 (in-process LRU)"),
    ("L2", "L2 (Redis, on L1 misses)"),
)


def _cache_rows(report: Report, counts: CacheCounts | None) -> None:
    """Each layer's hit rate over the cached run (every endpoint, warm-ups and samples included)."""
    if counts is None:
        report.notes.append("cache hit rates not read: the server's /metrics did not answer")
        return
    for layer, label in CACHE_LAYERS:
        hits, reads = counts.layer(layer)
        report.add(
            Row(
                f"cache hit rate, {label}",
                f"{hits / reads * 100:.1f} %" if reads else "-",
                f"{hits:,.0f} of {reads:,.0f} reads",
                "-",
                "-",
                None,
            )
        )
    by_type = sorted({data_type for _, data_type in (*counts.hits, *counts.misses)})
    parts = []
    for data_type in by_type:
        layers = []
        for layer, _ in CACHE_LAYERS:
            hits = counts.hits.get((layer, data_type), 0.0)
            reads = hits + counts.misses.get((layer, data_type), 0.0)
            if reads:
                layers.append(f"{layer} {hits / reads * 100:.1f} % of {reads:,.0f}")
        if layers:
            parts.append(f"{data_type}: {', '.join(layers)}")
    report.notes.append(
        "cache hit rates by data type (the server's cache_hits_total / cache_misses_total): "
        + ("; ".join(parts) or "no cache reads counted")
    )


def _spread(measured: Measurement) -> float:
    """p99/p50: how far the slow tail sits from the typical answer (Property 15)."""
    return measured.p99 / measured.p50 if measured.p50 else float("inf")


# --- Seeding ----------------------------------------------------------------------------------


def _seed(*, accounts: int, symbols: int, log: Callable[[str], None]) -> tuple[dict[str, str], str]:
    started = time.perf_counter()
    now = timezone.now()
    names = [f"BM{index:04d}" for index in range(max(1, symbols))]
    Asset.objects.bulk_create(
        Asset(symbol=name, name=f"{name} Corp.", sector=f"Sector {index % 11}")
        for index, name in enumerate(names)
    )
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=name,
            seq=1,
            price_units=1_000_000 + index * 1000,
            size=100,
            bid_units=999_900 + index * 1000,
            bid_size=300,
            ask_units=1_000_100 + index * 1000,
            ask_size=400,
            recorded_at=now,
        )
        for index, name in enumerate(names)
    )
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol=name,
            start=day - dt.timedelta(days=back),
            open_units=1_000_000,
            high_units=1_010_000,
            low_units=990_000,
            close_units=1_000_000 + back * 100,
            volume=10_000,
            trade_count=100,
            vwap_units=1_000_000,
        )
        for name in names
        for back in range(1, 6)
    )
    minute = now.replace(second=0, microsecond=0)
    MinuteBar.objects.bulk_create(
        MinuteBar(
            symbol=names[0],
            start=minute - dt.timedelta(minutes=back),
            open_units=1_000_000,
            high_units=1_001_000,
            low_units=999_000,
            close_units=1_000_000 + back,
            volume=100,
            trade_count=10,
            vwap_units=1_000_000,
        )
        for back in range(1, 121)
    )
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        user_model(username=f"bench{index}") for index in range(max(1, accounts))
    )
    opened = Account.objects.bulk_create(
        Account(user=user, is_default=True, account_number=f"BM{index:010d}", cash_cents=5_000_000)
        for index, user in enumerate(users)
    )
    CashEntry.objects.bulk_create(
        CashEntry(
            account=account,
            kind=CashEntry.Kind.DEPOSIT,
            amount_cents=10_000_000,
            created_at=now - dt.timedelta(days=1),
        )
        for account in opened
    )
    assets = list(Asset.objects.order_by("symbol"))
    Position.objects.bulk_create(
        Position(
            account=account,
            asset=assets[(index + offset) % len(assets)],
            qty=shares_to_units(10 + offset),
            cost_basis_cents=1_000_000,
        )
        for index, account in enumerate(opened)
        for offset in range(min(5, len(assets)))
    )
    # The polled account's open orders: limit buys far below the market, so the market's resting
    # order engine never fills them, with their cash reserved as placing them would have.
    resting = [
        Order(
            account=opened[0],
            client_order_id=f"bench-open-{index}",
            asset=assets[index % len(assets)],
            side=OrderSide.BUY,
            position_intent=PositionIntent.BUY_TO_OPEN,
            type=OrderType.LIMIT,
            time_in_force=TimeInForce.GTC,
            qty=shares_to_units(1),
            limit_price_units=OPEN_ORDER_LIMIT_UNITS,
            status=OrderStatus.NEW,
            reserved_cents=OPEN_ORDER_LIMIT_UNITS // UNITS_PER_CENT,
            submitted_at=now,
        )
        for index in range(OPEN_ORDERS)
    ]
    Order.objects.bulk_create(resting)
    Account.objects.filter(pk=opened[0].pk).update(
        reserved_cents=sum(order.reserved_cents for order in resting)
    )
    analytics_services.analytics_refresh_all()
    analytics_services.symbol_stats_refresh()
    key, secret = services.api_key_create(account_id=opened[0].pk)
    log(f"seeded {len(opened)} accounts, {len(names)} symbols in {time.perf_counter() - started:.1f} s")
    return {"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": secret}, names[0]


# --- Server and client --------------------------------------------------------------------------


WRK_SCRIPT = Path(__file__).with_name("wrk_latency.lua")


def _drive_wrk(
    wrk: str,
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    duration: int,
    warmup: int,
    concurrency: int,
    threads: int,
) -> Measurement:
    """wrk against ``path`` for ``warmup`` seconds (untimed: fills the caches and the connection
    pools), then for ``duration`` seconds (wrk takes whole seconds); figures from the Lua script's
    report line."""
    url = f"http://127.0.0.1:{port}{path}"
    command = [wrk, f"-t{max(1, min(threads, concurrency))}", f"-c{concurrency}", "--timeout", "10s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command += ["-s", str(WRK_SCRIPT)]
    if warmup > 0:
        wrk_result([*command, f"-d{warmup}s", url])
    result = wrk_result([*command, f"-d{duration}s", url])
    seconds = result["duration_us"] / 1_000_000
    return Measurement(
        p50=result["p50_us"] / 1_000_000,
        p99=result["p99_us"] / 1_000_000,
        rate=result["requests"] / seconds if seconds else 0.0,
        errors=int(result["non_2xx"]) + int(result["socket_errors"]),
    )


def _queries_per_request(port: int, path: str, headers: dict[str, str], *, count: int) -> float:
    """Mean ``X-DB-Queries`` over ``count`` sequential requests on one connection (after the load,
    so the caches are as warm as they were under it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    counts = []
    try:
        for _ in range(max(1, count)):
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            counts.append(int(response.getheader("X-DB-Queries") or 0))
    finally:
        conn.close()
    return statistics.fmean(counts)


def _drive(
    port: int, path: str, headers: dict[str, str], *, requests: int, warmup: int, concurrency: int
) -> Measurement:
    """The fallback client: ``requests`` timed GETs spread over ``concurrency`` threads, each on its
    own keep-alive connection, after ``warmup`` untimed ones (which also fill the caches)."""
    lock = threading.Lock()
    remaining = [warmup]
    latencies: list[float] = []
    errors = [0]
    timing = [False]
    start_gate = threading.Barrier(concurrency + 1)

    def take() -> bool:
        with lock:
            if remaining[0] <= 0:
                return False
            remaining[0] -= 1
            return True

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for phase in range(2):
                while take():
                    started = time.perf_counter()
                    try:
                        conn.request("GET", path, headers=headers)
                        response = conn.getresponse()
                        response.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        with lock:
                            errors[0] += 1
                        continue
                    spent = time.perf_counter() - started
                    if timing[0]:
                        with lock:
                            latencies.append(spent)
                            if response.status >= 300:
                                errors[0] += 1
                if phase == 0:
                    start_gate.wait()  # all threads finish the warm-up before timing starts
                    start_gate.wait()
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    with lock:
        remaining[0] = requests
        timing[0] = True
        errors[0] = 0
    started = time.perf_counter()
    start_gate.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return Measurement(
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        rate=len(latencies) / elapsed if elapsed else 0.0,
        errors=errors[0],
    )
