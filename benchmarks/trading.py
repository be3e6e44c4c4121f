"""``benchmark trading``: filled market orders through gunicorn on loopback, against a one-row INSERT
behind the same stack (README, Benchmarks).

Seeds a throwaway database: ``--symbols`` symbols with a stored quote each, and ``--accounts``
accounts, each with an API key, cash, and ``SEED_SHARES`` shares of one symbol (bought in the
ledger: a deposit and a purchase entry, so cash and positions balance from the start). Then starts
gunicorn as ``benchmark api`` does (``--workers`` sync workers, as the Procfile) with ``manage.py
run_market`` beside it, so orders fill at the simulator's quotes from Redis as under ``make run``.
Its quotes show 100 to 1,000 shares at the touch (realtime/simulator.py) and each order is for one
share, so every order fills whole at placement. Rate limits are lifted for the run (limits too
high to trip: the limiter's cost stays in every figure).

Load: wrk (``--concurrency`` connections, default 16, ``--duration`` seconds after
``--warmup-seconds``) with benchmarks/wrk_orders.lua, which sends each request from the next
account in turn, alternating buy and sell per account (the accounts' keys reach wrk in a file only
the run can read, never on a command line); without wrk (or with ``--client python``) a threaded
Python client does the same, its threads then sharing the cores with the server. Two endpoints
in one run, the same load on each:

- the floor, ``POST /v2/_bench/insert`` (benchmarks/views.py): key authentication, the rate
  limiter under the ``orders`` limit, DRF parsing the same body, and one INSERT into a small table;
- ``POST /v2/orders``: a market order, filled at placement.

Rows: orders/s against the floor's requests/s (goal >= 0.3x), both p50/p99, and the SQL statements
one filled order takes (the ``X-DB-Queries`` header the benchmark-only middleware adds, over
``--query-sample`` sequential orders after the load; goal <= 8). After the run the database is
checked: every order filled whole in one execution, and every account's ledger balanced (cash is
the sum of its entries, nothing reserved, cash plus cost basis plus commissions less realised P&L
is what was deposited, positions equal the seeded shares plus the fills). A run with a refused,
unfilled or partly filled order, or an unbalanced ledger, misses its goals whatever its speed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from benchmarks import _database
from benchmarks._api_server import (
    LoadClient,
    Measurement,
    gunicorn_started,
    percentile,
    server_arguments_add,
    server_layout,
    wrk_result,
)
from benchmarks._report import Report, Row
from benchmarks.models import InsertFloorRow
from trading import services
from trading.models import (
    Account,
    ApiKey,
    Asset,
    CashEntry,
    Fill,
    Order,
    OrderSide,
    OrderStatus,
    Position,
    StockPriceHistory,
)
from trading.units import UNITS_PER_CENT, shares_to_units

HELP = "filled market orders through gunicorn against a one-row INSERT floor: orders/s, p50/p99, SQL/order"

RATE_GOAL = 0.3  # filled orders/s, at least this share of the INSERT floor's requests/s
STATEMENTS_GOAL = 8  # SQL statements per filled market order, at most
SEED_SHARES = 100
DEPOSIT_CENTS = 100_000_000  # $1,000,000: thousands of one-share buys at ~$100 never run out
SEED_PRICE_UNITS = 1_000_000  # $100.00
ORDERS_PATH = "/v2/orders"
FLOOR_PATH = "/v2/_bench/insert"
# Every limit too high to trip: orders (and the floor, under the same limit) are never refused.
ORDER_RATE_LIMITS = ",".join(
    f"{scope}=100000000/min" for scope in ("orders", "write", "read", "market_data", "anon")
)
WRK_SCRIPT = Path(__file__).with_name("wrk_orders.lua")
PROBLEMS_SHOWN = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="load generator: wrk when installed (auto, the default), or the threaded Python client",
    )
    parser.add_argument(
        "--concurrency", type=int, default=16, help="keep-alive connections or client threads (default 16)"
    )
    parser.add_argument(
        "--duration", type=int, default=10, help="timed whole seconds per endpoint (default 10)"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=int,
        default=2,
        help="untimed whole seconds per endpoint first (default 2; 0 for none)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk: threads (default 1)")
    parser.add_argument(
        "--query-sample",
        type=int,
        default=20,
        help="sequential orders (and floor requests) sampled for SQL statements each (default 20)",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=400,
        help="accounts sending orders in turn (default 400; more than --concurrency, so one account's "
        "orders rarely overlap)",
    )
    parser.add_argument("--symbols", type=int, default=20, help="symbols the market quotes (default 20)")
    server_arguments_add(parser)


@dataclass(frozen=True)
class Trader:
    """One seeded account: its key's headers and the symbol it trades."""

    key_id: str
    secret: str
    symbol: str

    @property
    def headers(self) -> dict[str, str]:
        return {
            "APCA-API-KEY-ID": self.key_id,
            "APCA-API-SECRET-KEY": self.secret,
            "Content-Type": "application/json",
        }


def order_body(symbol: str, side: str) -> bytes:
    return json.dumps(
        {"symbol": symbol, "qty": "1", "side": side, "type": "market", "time_in_force": "day"}
    ).encode()


def run(options: dict[str, Any], log: Callable[[str], None]) -> Report:
    concurrency = int(options["concurrency"])
    duration = int(options["duration"])
    if concurrency < 1 or duration < 1 or int(options["accounts"]) < 1 or int(options["symbols"]) < 1:
        raise CommandError("--concurrency, --duration, --accounts and --symbols must be positive")
    client = LoadClient.choose(str(options.get("client") or "auto"))
    symbols = int(options["symbols"])
    with (
        _database.throwaway_database(
            name=options.get("db_name"), keep=bool(options.get("keep")), log=log
        ) as name,
        tempfile.TemporaryDirectory(prefix="benchmark-trading-", dir=settings.VAR_DIR) as workdir,
    ):
        traders = traders_seed(accounts=int(options["accounts"]), symbols=symbols, log=log)
        # The secrets reach wrk in a file only this user can read, never on its command line.
        accounts_file = Path(workdir) / "accounts.txt"
        accounts_file.touch(mode=0o600)
        accounts_file.write_text("".join(f"{t.key_id} {t.secret} {t.symbol}\n" for t in traders))
        with gunicorn_started(
            _database.database_url(),
            cached=True,
            workers=int(options["workers"]),
            threads=int(options["threads"]),
            market_symbols=symbols,
            rate_limits=ORDER_RATE_LIMITS,
            label="trading",
            log=log,
        ) as port:
            measured: dict[str, Measurement] = {}
            for label, path in (("INSERT floor", FLOOR_PATH), ("market orders", ORDERS_PATH)):
                log(
                    f"{label}: {duration} s at concurrency {concurrency} ({(client.wrk and 'wrk') or 'Python'})"
                )
                if client.wrk is not None:
                    result = _drive_wrk(
                        client.wrk,
                        port,
                        path,
                        accounts_file,
                        duration=duration,
                        warmup=int(options["warmup_seconds"]),
                        concurrency=concurrency,
                        threads=int(options["wrk_threads"]),
                    )
                else:
                    result = _drive(
                        port,
                        path,
                        traders,
                        duration=duration,
                        warmup=int(options["warmup_seconds"]),
                        concurrency=concurrency,
                    )
                result.queries = _statements_per_request(
                    port, path, traders[0], count=int(options["query_sample"])
                )
                measured[path] = result
        log("checking every order and every account's ledger")
        check = ledger_check(seeded_qty=shares_to_units(SEED_SHARES), deposit_cents=DEPOSIT_CENTS)
        floor_rows = _floor_rows_count()
    layout = server_layout(options)
    report = Report(
        title=(
            f"benchmark trading: {connection.vendor} ({name}), gunicorn {layout} on 127.0.0.1 with the "
            f"market running, {len(traders)} accounts, concurrency {concurrency}, {duration} s per endpoint"
        )
    )
    _rows(
        report, floor=measured[FLOOR_PATH], orders=measured[ORDERS_PATH], check=check, concurrency=concurrency
    )
    report.notes.append(client.note)
    report.notes.append(
        f"orders placed in the run (warm-up and samples included): {check.orders:,}; floor rows "
        f"inserted: {floor_rows:,}; failed requests (non-2xx or socket errors): "
        f"orders {measured[ORDERS_PATH].errors}, floor {measured[FLOOR_PATH].errors}"
    )
    for problem in check.problems[:PROBLEMS_SHOWN]:
        report.notes.append(f"ledger check: {problem}")
    if len(check.problems) > PROBLEMS_SHOWN:
        report.notes.append(f"ledger check: ... {len(check.problems) - PROBLEMS_SHOWN} more problems")
    return report


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _rows(
    report: Report, *, floor: Measurement, orders: Measurement, check: LedgerCheck, concurrency: int
) -> None:
    ratio = orders.rate / floor.rate if floor.rate else 0.0
    sound = not orders.errors and check.filled_whole == check.orders and not check.problems
    report.add(
        Row(
            "floor: one-row INSERT behind key auth + limiter + DRF, p50 / p99",
            f"{_ms(floor.p50)} / {_ms(floor.p99)}",
            "-",
            f"{floor.rate:,.0f} req/s",
            f"{floor.queries:.1f} SQL statements/request",
            None,
        )
    )
    report.add(
        Row(
            f"filled market orders/s vs the INSERT floor (c={concurrency})",
            f"{orders.rate:,.0f} orders/s",
            f"{floor.rate:,.0f} req/s",
            f"{ratio:.2f}x",
            f">= {RATE_GOAL}x",
            ratio >= RATE_GOAL and sound and not floor.errors,
        )
    )
    report.add(
        Row(
            "  p50 / p99",
            f"{_ms(orders.p50)} / {_ms(orders.p99)}",
            f"{_ms(floor.p50)} / {_ms(floor.p99)}",
            f"{orders.p99 / floor.p99:.2f}x p99" if floor.p99 else "-",
            "-",
            None,
        )
    )
    report.add(
        Row(
            "SQL statements per filled market order (X-DB-Queries)",
            f"{orders.queries:.1f}",
            f"{floor.queries:.1f}",
            "-",
            f"<= {STATEMENTS_GOAL}",
            orders.queries <= STATEMENTS_GOAL and sound,
            load_free=True,
        )
    )
    report.add(
        Row(
            "orders filled whole (one execution each)",
            f"{check.filled_whole:,} of {check.orders:,}",
            f"{orders.errors} refused",
            "-",
            "all, none refused",
            check.orders > 0 and check.filled_whole == check.orders and not orders.errors,
            load_free=True,
        )
    )
    report.add(
        Row(
            "ledger balanced (cash = entries, conservation, positions = fills)",
            f"{check.accounts - check.unbalanced_accounts:,} of {check.accounts:,} accounts",
            f"{len(check.problems)} problems",
            "-",
            "all balanced",
            not check.problems,
            load_free=True,
        )
    )


# --- Seeding ----------------------------------------------------------------------------------


def traders_seed(*, accounts: int, symbols: int, log: Callable[[str], None]) -> list[Trader]:
    started = time.perf_counter()
    now = timezone.now()
    names = [f"BT{index:04d}" for index in range(symbols)]
    assets = Asset.objects.bulk_create(
        Asset(symbol=name, name=f"{name} Corp.", sector=f"Sector {index % 11}")
        for index, name in enumerate(names)
    )
    # The market resumes each symbol from its stored tick (realtime/market.py).
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=name,
            seq=1,
            price_units=SEED_PRICE_UNITS,
            size=100,
            bid_units=SEED_PRICE_UNITS - 100,
            bid_size=500,
            ask_units=SEED_PRICE_UNITS + 100,
            ask_size=500,
            recorded_at=now,
        )
        for name in names
    )
    basis_cents = SEED_SHARES * SEED_PRICE_UNITS // UNITS_PER_CENT
    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        (user_model(username=f"trader{index:05d}") for index in range(accounts)), batch_size=2000
    )
    opened = Account.objects.bulk_create(
        (
            Account(
                user=user,
                is_default=True,
                account_number=f"BT{index:010d}",
                cash_cents=DEPOSIT_CENTS - basis_cents,
            )
            for index, user in enumerate(users)
        ),
        batch_size=2000,
    )
    earlier = now - dt.timedelta(days=1)
    CashEntry.objects.bulk_create(
        (
            entry
            for account in opened
            for entry in (
                CashEntry(
                    account=account,
                    kind=CashEntry.Kind.DEPOSIT,
                    amount_cents=DEPOSIT_CENTS,
                    created_at=earlier,
                ),
                CashEntry(
                    account=account,
                    kind=CashEntry.Kind.BUY,
                    amount_cents=-basis_cents,
                    memo="benchmark: the seeded shares",
                    created_at=earlier,
                ),
            )
        ),
        batch_size=2000,
    )
    Position.objects.bulk_create(
        (
            Position(
                account=account,
                asset=assets[index % len(assets)],
                qty=shares_to_units(SEED_SHARES),
                cost_basis_cents=basis_cents,
            )
            for index, account in enumerate(opened)
        ),
        batch_size=2000,
    )
    traders = []
    keys = []
    for index, account in enumerate(opened):
        secret = secrets.token_urlsafe(32)
        key_id = f"PKTRADE{index:013d}"
        keys.append(ApiKey(key_id=key_id, account=account, secret_hmac=services.api_key_secret_hmac(secret)))
        traders.append(Trader(key_id=key_id, secret=secret, symbol=names[index % len(names)]))
    ApiKey.objects.bulk_create(keys, batch_size=2000)
    log(
        f"seeded {len(opened)} accounts and keys, {len(names)} symbols in {time.perf_counter() - started:.1f} s"
    )
    return traders


# --- Load -------------------------------------------------------------------------------------


def _drive_wrk(
    wrk: str,
    port: int,
    path: str,
    accounts_file: Path,
    *,
    duration: int,
    warmup: int,
    concurrency: int,
    threads: int,
) -> Measurement:
    threads = max(1, min(threads, concurrency))
    url = f"http://127.0.0.1:{port}{path}"
    command = [wrk, f"-t{threads}", f"-c{concurrency}", "--timeout", "10s", "-s", str(WRK_SCRIPT)]
    script_args = ["--", str(accounts_file), path, str(threads)]
    if warmup > 0:
        wrk_result([*command, f"-d{warmup}s", url, *script_args])
    result = wrk_result([*command, f"-d{duration}s", url, *script_args])
    seconds = result["duration_us"] / 1_000_000
    errors = int(result["non_2xx"]) + int(result["socket_errors"])
    return Measurement(
        p50=result["p50_us"] / 1_000_000,
        p99=result["p99_us"] / 1_000_000,
        # Answered requests, less the refused ones: a refused order is not a filled one.
        rate=(result["requests"] - int(result["non_2xx"])) / seconds if seconds else 0.0,
        errors=errors,
    )


def _drive(
    port: int, path: str, traders: list[Trader], *, duration: int, warmup: int, concurrency: int
) -> Measurement:
    """The fallback client: ``concurrency`` threads, each on its own keep-alive connection with
    its own share of the accounts, alternating sides per account, for ``warmup`` untimed then
    ``duration`` timed seconds."""
    lock = threading.Lock()
    latencies: list[float] = []
    errors = [0]  # failed sends and refusals, timed phase only
    refused = [0]
    phase_ends = [0.0, 0.0]
    gate = threading.Barrier(concurrency + 1)

    def worker(mine: list[Trader]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        sent = 0
        gate.wait()
        try:
            for phase, ends in enumerate(phase_ends):
                while time.monotonic() < ends:
                    trader = mine[sent % len(mine)]
                    side = "buy" if (sent // len(mine)) % 2 == 0 else "sell"
                    sent += 1
                    started = time.perf_counter()
                    try:
                        conn.request(
                            "POST", path, body=order_body(trader.symbol, side), headers=trader.headers
                        )
                        response = conn.getresponse()
                        response.read()
                    except (OSError, http.client.HTTPException):
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                        with lock:
                            errors[0] += phase
                        continue
                    spent = time.perf_counter() - started
                    if phase:
                        with lock:
                            latencies.append(spent)
                            if response.status >= 300:
                                errors[0] += 1
                                refused[0] += 1
        finally:
            conn.close()

    shares = [traders[index::concurrency] or traders for index in range(concurrency)]
    workers = [threading.Thread(target=worker, args=(mine,), daemon=True) for mine in shares]
    for thread in workers:
        thread.start()
    start = time.monotonic()
    phase_ends[0] = start + warmup
    phase_ends[1] = start + warmup + duration
    gate.wait()
    for thread in workers:
        thread.join()
    answered = len(latencies) - refused[0]
    return Measurement(
        p50=percentile(latencies, 0.50),
        p99=percentile(latencies, 0.99),
        rate=max(0, answered) / duration,
        errors=errors[0],
    )


def _statements_per_request(port: int, path: str, trader: Trader, *, count: int) -> float:
    """Mean ``X-DB-Queries`` of ``count`` sequential requests from one account, buy then sell
    (after the load, so the caches are as warm as under it); a refused one stops the run."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    counts = []
    try:
        for index in range(max(1, count)):
            side = "buy" if index % 2 == 0 else "sell"
            conn.request("POST", path, body=order_body(trader.symbol, side), headers=trader.headers)
            response = conn.getresponse()
            text = response.read()
            if response.status != 200:
                raise CommandError(f"sampled POST {path} answered {response.status}: {text[:300]!r}")
            counts.append(int(response.getheader("X-DB-Queries") or 0))
    finally:
        conn.close()
    return statistics.fmean(counts)


# --- After the run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerCheck:
    orders: int
    filled_whole: int
    accounts: int
    unbalanced_accounts: int
    problems: list[str]


def ledger_check(*, seeded_qty: int, deposit_cents: int) -> LedgerCheck:
    """Every order of the run filled whole in one execution, and every account's books balance
    (the invariants of tests/trading/test_ledger_state_machine.py, with the seeded shares as the
    opening position): read from the database after the servers stopped."""
    problems: list[str] = []
    executed = Order.objects.annotate(executions=Count("fills"), executed=Sum("fills__qty"))
    orders = executed.count()
    filled_whole = executed.filter(
        status=OrderStatus.FILLED, filled_qty=F("qty"), executions=1, executed=F("qty")
    ).count()
    for order in executed.exclude(
        status=OrderStatus.FILLED, filled_qty=F("qty"), executions=1, executed=F("qty")
    )[:PROBLEMS_SHOWN]:
        problems.append(
            f"order {order.pk} {order.side} {order.qty} is {order.status}, filled {order.filled_qty} "
            f"in {order.executions} executions"
        )

    def by_account(rows: Any, total: Any) -> dict[Any, int]:
        return {
            row["account_id"]: row["total"] or 0 for row in rows.values("account_id").annotate(total=total)
        }

    entries = CashEntry.objects.all()
    ledger = by_account(entries, Sum("amount_cents"))
    deposits = by_account(entries.filter(kind=CashEntry.Kind.DEPOSIT), Sum("amount_cents"))
    commission_entries = by_account(entries.filter(kind=CashEntry.Kind.COMMISSION), Sum("amount_cents"))
    commissions = by_account(Fill.objects.all(), Sum("commission_cents"))
    realised = by_account(Fill.objects.all(), Sum("realized_pl_cents"))
    basis = by_account(Position.objects.all(), Sum("cost_basis_cents"))
    signed = {
        (row["account_id"], row["asset_id"]): row["total"] or 0
        for row in Fill.objects.values("account_id", "asset_id").annotate(
            total=Sum("qty", filter=Q(side=OrderSide.BUY), default=0)
            - Sum("qty", filter=Q(side=OrderSide.SELL), default=0)
        )
    }
    unbalanced: set[Any] = set()

    def wrong(account: Account, what: str) -> None:
        unbalanced.add(account.pk)
        problems.append(f"account {account.account_number}: {what}")

    accounts = list(Account.objects.all())
    for account in accounts:
        pk = account.pk
        if account.cash_cents != ledger.get(pk, 0):
            wrong(account, f"cash {account.cash_cents} is not the sum of its entries {ledger.get(pk, 0)}")
        if account.cash_cents < 0 or account.reserved_cents != 0:
            wrong(
                account,
                f"cash {account.cash_cents}, reserved {account.reserved_cents} after every order filled",
            )
        conserved = account.cash_cents + basis.get(pk, 0) + commissions.get(pk, 0) - realised.get(pk, 0)
        if conserved != deposits.get(pk, 0) or deposits.get(pk, 0) != deposit_cents:
            wrong(
                account,
                f"cash + basis + commissions - realised P&L is {conserved}, deposited {deposits.get(pk, 0)}",
            )
        if -commission_entries.get(pk, 0) != commissions.get(pk, 0):
            wrong(account, "commission entries and the fills' commissions differ")
    positions = {(p.account_id, p.asset_id): p for p in Position.objects.select_related("account")}
    for key, position in positions.items():
        if position.qty != seeded_qty + signed.get(key, 0) or position.qty_held != 0:
            wrong(
                position.account,
                f"position {position.asset_id} holds {position.qty} (held {position.qty_held}), the "
                f"seeded {seeded_qty} and its fills make {seeded_qty + signed.get(key, 0)}",
            )
    for key in signed.keys() - positions.keys():
        problems.append(f"fills of account {key[0]} in {key[1]} without a position")
    return LedgerCheck(
        orders=orders,
        filled_whole=filled_whole,
        accounts=len(accounts),
        unbalanced_accounts=len(unbalanced),
        problems=problems,
    )


def _floor_rows_count() -> int:
    return InsertFloorRow.objects.count()
