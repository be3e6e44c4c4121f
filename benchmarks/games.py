"""``benchmark games``: one game of ``--players`` players (10,000) with ``--bots`` of them (1,000)
trading through the API for ``--seconds`` (120) against real servers (README, Running a game; docs/properties.md, Property 11).

Seeds a throwaway database (``seed_demo``'s symbols and history for ``--symbols`` symbols; the
players' users, default and game accounts, opening deposits and game players with bulk inserts and
one password hash shared by every user, not 10,000 hash computations), then starts what production
runs: gunicorn as ``benchmark api`` starts it (``--workers`` sync workers, as the Procfile),
``manage.py run_market`` (so quotes come from Redis) and the leaderboard job on the beat's schedule
(benchmarks/_games_job.py). Each bot places an order every ``--order-interval`` s (a market buy of
one share, then its sell: the game forbids shorts) and reads its account every ``--read-interval``
s, at a phase of its own, so the server sees ``bots / order-interval`` orders and ``bots /
read-interval`` reads a second; a leaderboard reader reads the game's board every
``--board-interval`` s. The client is open-loop (benchmarks/_games_load.py): each request is due at
its time whatever the others are doing, and its latency runs from that time, so a server falling
behind shows in the figures rather than slowing the client; one the client cannot send within
``--max-lag`` seconds of its time is dropped and counted as an error, so a server that cannot keep
up fails the run in bounded time.

Rows: order and read p50/p99, errors (goal 0), the game board's age when read against
LEADERBOARD_MAX_STALENESS_S (goal: never older), the job's run time (goal: a median under a
quarter of its period, since a board's age when read is the period plus a run) and one game's
board refresh time (``game_boards_refresh(game_ids=[...])``, what a reader finding it stale pays), and the SQL
statements of one order placement from a game account (every rule on) against a default account
(the ``X-DB-Queries`` header, as ``benchmark api`` reads it): every rule is read with the account
under its lock in one query (docs/architecture.md, Games), so the goal allows the game account at
most as many extra statements as the size rule's equity pricing takes (``selectors.account_summary``,
counted here with CaptureQueriesContext), not one per rule.
Two notes say where the cores went during the load (benchmarks/_cpu.py): CPU seconds per second for
gunicorn, the market, the job, the client (this process), the PostgreSQL and Redis servers and the
machine, and how the web workers spent their time (on a core, waiting for one, blocked on
the database, Redis or an empty queue), so a run short of its rates says whether the cores or the
workers were the limit. What the harness itself takes is in them: the client's threads a few per
cent of the run's CPU, and the market ticks only the ``--symbols`` the bots trade, at the
production tick rate (fewer ticks than ``make run``'s 500 symbols, so no more load than production).
The throwaway database and the run's Redis keys are deleted afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import services as analytics_services
from benchmarks import _cpu, _database
from benchmarks._api_server import server_arguments_add, server_layout
from benchmarks._games_load import Due, LoadResult, drive, percentile
from benchmarks._report import Report, Row
from benchmarks.processes import (
    processes_alive_check,
    processes_start,
    redis_keys_delete,
    redis_names,
)
from jobs.schedule import BEAT_SCHEDULE
from trading import selectors, services
from trading.models import Account, ApiKey, Asset, CashEntry, Game, GamePlayer, UsernameSkeleton
from trading.usernames import username_skeleton

HELP = (
    "a game of 10,000 players, 1,000 bots trading through gunicorn: p50/p99, errors, board age, SQL per order"
)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STARTING_CASH_CENTS = 10_000_000
MAX_POSITION_SHARE_BP = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--players", type=int, default=10_000, help="players in the game (default 10,000)")
    parser.add_argument(
        "--bots", type=int, default=1_000, help="players trading through the API (default 1,000)"
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of load (default 120)")
    parser.add_argument(
        "--order-interval", type=float, default=10.0, help="seconds between a bot's orders (default 10)"
    )
    parser.add_argument(
        "--read-interval", type=float, default=5.0, help="seconds between a bot's account reads (default 5)"
    )
    parser.add_argument(
        "--board-interval", type=float, default=1.0, help="seconds between leaderboard reads (default 1)"
    )
    parser.add_argument("--symbols", type=int, default=50, help="symbols the market ticks (default 50)")
    parser.add_argument(
        "--max-lag",
        type=float,
        default=10.0,
        help="a request not sent within this many seconds of its due time is dropped as an error (default 10)",
    )
    parser.add_argument(
        "--client-threads", type=int, default=64, help="the load client's connections (default 64)"
    )
    parser.add_argument(
        "--query-sample",
        type=int,
        default=10,
        help="orders per account kind sampled for SQL statements (default 10)",
    )
    server_arguments_add(parser)


@dataclass(frozen=True)
class Seeded:
    game: Game
    bot_keys: list[dict[str, str]]
    default_key: dict[str, str]
    symbols: list[str]


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    players, bots = int(options["players"]), int(options["bots"])
    seconds = float(options["seconds"])
    intervals = [float(options[name]) for name in ("order_interval", "read_interval", "board_interval")]
    if players < 1 or not 1 <= bots <= players or seconds <= 0 or min(intervals) <= 0:
        raise CommandError("--players, --seconds and the intervals must be positive, --bots 1 to --players")
    if float(options["max_lag"]) <= 0:
        raise CommandError("--max-lag must be positive")
    if min(int(options[name]) for name in ("symbols", "workers", "threads", "client_threads")) < 1:
        raise CommandError("--symbols, --workers, --threads and --client-threads must be positive")
    run_id = f"benchgames{os.getpid()}{uuid.uuid4().hex[:6]}"  # a concurrent run never shares it
    with (
        _database.throwaway_database(
            name=options.get("db_name"), keep=bool(options.get("keep")), log=log
        ) as name,
        tempfile.TemporaryDirectory(prefix="benchmark-games-") as workdir,
    ):
        seeded = _seed(
            players=players, bots=bots, symbols=int(options["symbols"]), workdir=Path(workdir), log=log
        )
        started = time.perf_counter()
        analytics_services.leaderboards_refresh_all()
        log(
            f"first leaderboard refresh (every board, in this process): {time.perf_counter() - started:.2f} s"
        )
        with _stack(
            Path(workdir),
            run_id=run_id,
            symbols=int(options["symbols"]),
            workers=int(options["workers"]),
            threads=int(options["threads"]),
            log=log,
        ) as (port, job_log, pids):
            schedule = _schedule(
                seeded, seconds=seconds, order_s=intervals[0], read_s=intervals[1], board_s=intervals[2]
            )
            log(
                f"load: {bots} bots, {bots / intervals[0]:.0f} orders/s and {bots / intervals[1]:.0f} reads/s "
                f"for {seconds:.0f} s, the board every {intervals[2]:g} s"
            )
            postgres_pid = _cpu.postgres_server_pid()
            before = _cpu.read(started=pids, postgres_pid=postgres_pid)
            result = drive(
                port, schedule, threads=int(options["client_threads"]), max_lag_s=float(options["max_lag"])
            )
            cpu = _cpu.usage(before, _cpu.read(started=pids, postgres_pid=postgres_pid))
            sample = int(options["query_sample"])
            game_queries = _order_queries(port, seeded.bot_keys[0], seeded.symbols[0], count=sample)
            default_queries = _order_queries(port, seeded.default_key, seeded.symbols[0], count=sample)
            job_runs = _job_runs(job_log)
        board_seconds = _board_refresh_seconds(seeded.game)
        size_rule_queries = _size_rule_queries(seeded.game)
        report = Report(
            title=(
                f"benchmark games: {connection.vendor} ({name}), {players:,} players, {bots:,} bots, "
                f"{seconds:g} s, gunicorn {server_layout(options)} on 127.0.0.1"
            )
        )
        _rows(
            report,
            result,
            game_queries=game_queries,
            default_queries=default_queries,
            size_rule_queries=size_rule_queries,
            job_runs=job_runs,
            board_seconds=board_seconds,
        )
        _cpu_notes(report, cpu, result, workers=int(options["workers"]))
    return report


# --- Seeding ----------------------------------------------------------------------------------


def _seed(*, players: int, bots: int, symbols: int, workdir: Path, log: Callable[[str], None]) -> Seeded:
    started = time.perf_counter()
    with open(workdir / "seed_demo.log", "w") as out:
        call_command(
            "seed_demo", symbols=symbols, days=2, minutes=30, users=0, seed=16,
            credentials_file=str(workdir / "credentials.txt"), stdout=out,
        )  # fmt: skip
    names = list(Asset.objects.filter(active=True).order_by("symbol").values_list("symbol", flat=True))
    now = timezone.now()
    user_model = get_user_model()
    organiser = user_model.objects.create(username="game-organiser", is_staff=True)
    organiser_account = services.account_open(user=organiser, now=now)
    game = services.game_create(
        organiser=organiser,
        rules=services.GameRules(
            name="benchmark games",
            starts_at=now - dt.timedelta(minutes=1),
            ends_at=now + dt.timedelta(days=1),
            starting_cash_cents=STARTING_CASH_CENTS,
            allowed_order_types=("market", "limit"),
            max_position_share_bp=MAX_POSITION_SHARE_BP,
        ),
        now=now,
    )
    # One hash for every player: each logs in with the same password, and 10,000 hash computations
    # would be most of the seeding time.
    password = make_password(secrets.token_urlsafe(16))
    usernames = [f"player{index:05d}" for index in range(players)]
    users = user_model.objects.bulk_create(
        (user_model(username=username, password=password) for username in usernames), batch_size=2000
    )
    UsernameSkeleton.objects.bulk_create(
        (UsernameSkeleton(user=user, skeleton=username_skeleton(user.username)) for user in users),
        batch_size=2000,
    )

    def accounts(is_default: bool, cash_cents: int, prefix: str) -> list[Account]:
        return Account.objects.bulk_create(
            (
                Account(
                    user=user,
                    is_default=is_default,
                    account_number=f"{prefix}{index:08d}",
                    cash_cents=cash_cents,
                    reset_at=now,
                )
                for index, user in enumerate(users)
            ),
            batch_size=2000,
        )

    defaults = accounts(True, services.starting_cash_cents(), "PD")
    games = accounts(False, STARTING_CASH_CENTS, "PG")
    CashEntry.objects.bulk_create(
        (
            CashEntry(
                account=account,
                kind=CashEntry.Kind.DEPOSIT,
                amount_cents=account.cash_cents,
                memo="Opening deposit",
                created_at=now,
            )
            for account in (*defaults, *games)
        ),
        batch_size=2000,
    )
    GamePlayer.objects.bulk_create(
        (GamePlayer(game=game, account=account, user=account.user, joined_at=now) for account in games),
        batch_size=2000,
    )
    bot_keys = []
    keys = []
    for index, account in enumerate(games[:bots]):
        secret = secrets.token_urlsafe(32)
        key_id = f"PKGAME{index:014d}"
        keys.append(ApiKey(key_id=key_id, account=account, secret_hmac=services.api_key_secret_hmac(secret)))
        bot_keys.append({"APCA-API-KEY-ID": key_id, "APCA-API-SECRET-KEY": secret})
    ApiKey.objects.bulk_create(keys, batch_size=2000)
    key, secret = services.api_key_create(account_id=organiser_account.pk)
    log(
        f"seeded {len(names)} symbols, {players:,} players ({2 * players:,} accounts), {bots:,} bot keys "
        f"in {time.perf_counter() - started:.1f} s"
    )
    return Seeded(
        game=game,
        bot_keys=bot_keys,
        default_key={"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": secret},
        symbols=names,
    )


# --- Processes ----------------------------------------------------------------------------------


@contextmanager
def _stack(
    workdir: Path, *, run_id: str, symbols: int, workers: int, threads: int, log: Callable[[str], None]
) -> Iterator[tuple[int, Path, dict[str, int]]]:
    """gunicorn, the market and the leaderboard job on the throwaway database, every Redis key of
    theirs under ``run_id``; yields gunicorn's port, the job's log and each process's pid."""
    port = _database.free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database.database_url(),
        "BENCHMARK_ENDPOINTS": "true",
        "REDIS_KEY_PREFIX": run_id,
        "MARKET_HOURS": "always",
        # The bots trade at the rates the issue sets: the per-key limits must not refuse them.
        "RATE_LIMITS": "orders=100000000/min,write=100000000/min,read=100000000/min,anon=100000000/min",
        "LOG_LEVEL": "WARNING",
    }
    commands = {
        "gunicorn": [
            str(BIN / "gunicorn"), "-c", "python:config.gunicorn_conf", "config.wsgi:application",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
            "--no-control-socket",
        ],
        "market": [str(BIN / "python"), "manage.py", "run_market", "--symbols", str(symbols), "--seed", "16"],
        "job": [str(BIN / "python"), "-m", "benchmarks._games_job"],
    }  # fmt: skip
    with ExitStack() as cleanup:
        cleanup.callback(redis_keys_delete, f"{run_id}*")
        started = processes_start(commands=commands, cwd=ROOT, env=env, workdir=workdir, cleanup=cleanup)
        log(f"starting gunicorn :{port}, the market and the leaderboard job")
        _wait_ready(started, port=port, quotes_key=redis_names(run_id)["LATEST_QUOTES_KEY"], symbols=symbols)
        labels = {"gunicorn": "web (gunicorn)", "market": "market", "job": "leaderboard job"}
        yield (
            port,
            started["job"][1],
            {labels[name]: process.pid for name, (process, _log) in started.items()},
        )
        processes_alive_check(started)


def _wait_ready(
    started: dict[str, tuple[subprocess.Popen[bytes], Path]], *, port: int, quotes_key: str, symbols: int
) -> None:
    """gunicorn answering, every symbol quoted in Redis by the market, the job's first run done."""
    from config.redis_pools import redis_client

    client = redis_client()
    deadline = time.monotonic() + 90
    while True:
        for name, (process, log_path) in started.items():
            if process.poll() is not None:
                raise CommandError(f"{name} exited:\n{log_path.read_text(errors='replace')[-3000:]}")
        if _answers(port) and client.hlen(quotes_key) >= symbols and _job_runs(started["job"][1]):
            return
        if time.monotonic() > deadline:
            raise CommandError("gunicorn, the market or the leaderboard job did not start within 90 s")
        time.sleep(0.2)


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/v2/_bench/ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _job_runs(log_path: Path) -> list[float]:
    return [
        float(json.loads(line.removeprefix("JOB_RUN "))["seconds"])
        for line in log_path.read_text(errors="replace").splitlines()
        if line.startswith("JOB_RUN ")
    ]


# --- Load ---------------------------------------------------------------------------------------


def _schedule(seeded: Seeded, *, seconds: float, order_s: float, read_s: float, board_s: float) -> list[Due]:
    """Every request of the run, in time order: each bot's orders and reads at a phase of its own
    (spread evenly, so the rates are steady), alternating buy and sell of one share of its symbol."""
    due: list[Due] = []
    bots = len(seeded.bot_keys)
    for index, headers in enumerate(seeded.bot_keys):
        symbol = seeded.symbols[index % len(seeded.symbols)]
        phase = index / bots
        at, side = phase * order_s, "buy"
        while at < seconds:
            body = {"symbol": symbol, "qty": "1", "side": side, "type": "market", "time_in_force": "day"}
            due.append(Due(at=at, kind="order", method="POST", path="/v2/orders", headers=headers, body=body))
            at, side = at + order_s, "sell" if side == "buy" else "buy"
        at = phase * read_s
        while at < seconds:
            due.append(Due(at=at, kind="read", method="GET", path="/v2/account", headers=headers))
            at += read_s
    at, board = 0.0, f"/v2/games/{seeded.game.pk}/leaderboard?limit=20"
    while at < seconds:
        headers = seeded.bot_keys[int(at / board_s) % bots]
        due.append(Due(at=at, kind="board", method="GET", path=board, headers=headers))
        at += board_s
    return sorted(due, key=lambda item: item.at)


def _order_queries(port: int, headers: dict[str, str], symbol: str, *, count: int) -> float:
    """Mean ``X-DB-Queries`` of ``count`` sequential order placements (buy, sell, ...) of one account."""
    counts = []
    for index in range(max(1, count)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            body = {
                "symbol": symbol,
                "qty": "1",
                "side": "buy" if index % 2 == 0 else "sell",
                "type": "market",
                "time_in_force": "day",
            }
            conn.request(
                "POST",
                "/v2/orders",
                body=json.dumps(body),
                headers={**headers, "Content-Type": "application/json"},
            )
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                raise CommandError(f"sampled order answered {response.status}: {text[:300]!r}")
            counts.append(int(response.getheader("X-DB-Queries") or 0))
        finally:
            conn.close()
    return statistics.fmean(counts)


def _size_rule_queries(game: Game) -> int:
    """Statements the size rule's equity pricing takes (``selectors.account_summary``): the one
    game-rule check allowed its own (constant) queries."""
    account = Account.objects.filter(game_player__game=game).order_by("account_number").first()
    assert account is not None
    with CaptureQueriesContext(connection) as captured:
        selectors.account_summary(account=account)
    return len(captured.captured_queries)


def _board_refresh_seconds(game: Game, repeat: int = 3) -> float:
    """Median time of one game's board refresh after the load (its players holding what they
    bought): what the job spends on it, and what a reader finding the board stale pays."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        analytics_services.game_boards_refresh(game_ids=[game.pk])
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# --- Report -------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _rows(
    report: Report,
    result: LoadResult,
    *,
    game_queries: float,
    default_queries: float,
    size_rule_queries: int,
    job_runs: list[float],
    board_seconds: float,
) -> None:
    for kind, label in (("order", "order placement"), ("read", "account read")):
        latencies = result.latencies[kind]
        report.add(
            Row(
                f"{label} p50 / p99 ({len(latencies):,} requests, {result.rate(kind):.0f}/s)",
                f"{_ms(percentile(latencies, 0.5))} / {_ms(percentile(latencies, 0.99))}",
                "-",
                "-",
                "-",
                None,
            )
        )
    errors = sum(result.errors.values())
    report.add(
        Row(
            "errors (non-2xx or no answer)",
            str(errors),
            "-",
            "-",
            "0",
            errors == 0,
            load_free=True,
        )
    )
    bound = float(settings.LEADERBOARD_MAX_STALENESS_S)
    ages = result.board_ages
    oldest = max(ages) if ages else float("nan")
    report.add(
        Row(
            f"game leaderboard age when read, max ({len(ages)} reads)",
            f"{oldest:.2f} s",
            f"{bound:g} s bound",
            f"p50 {percentile(ages, 0.5):.2f} s" if ages else "-",
            "never older",
            # Unproven unless every reader was answered: a board read that failed saw no age.
            bool(ages) and not result.errors.get("board", 0) and oldest <= bound,
            load_free=True,
        )
    )
    report.add(
        Row(
            "game board refresh (one game, median of 3)",
            _ms(board_seconds),
            "-",
            "-",
            f"< {bound:g} s bound",
            board_seconds < bound,
        )
    )
    if job_runs:
        period = float(BEAT_SCHEDULE["leaderboard-refresh"]["schedule"])
        median = statistics.median(job_runs)
        report.add(
            Row(
                f"leaderboard job run, every board (median / max of {len(job_runs)})",
                f"{_ms(median)} / {_ms(max(job_runs))}",
                f"{period:g} s period",
                "-",
                # Well inside the period: the board's age when read is the period plus a run.
                f"median < {period / 4:g} s",
                median < period / 4,
            )
        )
    extra = game_queries - default_queries
    report.add(
        Row(
            "SQL statements per order: game account vs default account",
            f"{game_queries:.1f}",
            f"{default_queries:.1f}",
            f"{extra:+.1f}",
            f"<= +{size_rule_queries} (size rule's pricing)",
            extra <= size_rule_queries,
            load_free=True,
        )
    )
    report.notes.append(
        "errors by kind: "
        + (", ".join(f"{kind} {count}" for kind, count in sorted(result.errors.items())) or "none")
        + (f"; {result.behind:,} not sent (the client fell behind)" if result.behind else "")
        + (f"; first: {result.first_error}" if result.first_error else "")
    )
    report.notes.append(
        f"client lag (send after its due time) p99 {_ms(percentile(result.lags, 0.99))}, max "
        f"{_ms(max(result.lags) if result.lags else 0.0)}: latencies run from the due time, so a lag is in them"
    )
    report.notes.append(
        "board age: the board's as_of to the moment its answer arrived (a reader that finds the board stale "
        "refreshes it first, so the age includes that wait); "
        f"the game's rules: market and limit orders, no shorts, position at most {MAX_POSITION_SHARE_BP / 100:g} % "
        "of equity (the size rule prices equity; no other rule costs a statement)"
    )


def _cpu_notes(report: Report, cpu: _cpu.CpuSeconds, result: LoadResult, *, workers: int) -> None:
    """Where the cores went (benchmarks/_cpu.py), and how the web workers spent their time: a
    worker is on a core, waiting for one, or blocked (on the database, Redis, or an empty accept
    queue). Blocked time while requests queue is a core the workers leave to others or idle."""
    report.notes.append(cpu.describe())
    answered = sum(len(values) for values in result.latencies.values())
    web_cpu, web_wait = cpu.cpu.get("web (gunicorn)", 0.0), cpu.wait.get("web (gunicorn)", 0.0)
    blocked = max(0.0, workers - web_cpu - web_wait)
    per_request = f"{web_cpu / answered * cpu.seconds * 1000:.1f} ms" if answered else "-"
    report.notes.append(
        f"web workers ({workers}): CPU {per_request} per answered request ({answered / cpu.seconds:.0f}/s); "
        f"of their time on a core {web_cpu / workers:.0%}, waiting for one {web_wait / workers:.0%}, "
        f"blocked (the database, Redis, or no request) {blocked / workers:.0%}"
    )
