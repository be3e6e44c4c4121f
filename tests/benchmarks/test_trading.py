"""``manage.py benchmark trading`` runs end to end at tiny sizes against real gunicorn and the
market, and prints its table; its after-run check of the orders and the ledger catches what a
fast but wrong run would hide.

Timings are not asserted (the goals are the benchmark's business); the rows, every order filled
whole, the ledger balanced, the SQL statement count read, and the clean-up are. With wrk on
PostgreSQL here; on SQLite the same table comes from ``benchmark all`` (tests/benchmarks/test_all.py
checks it with ``trading_table_check``), so CI runs it once per backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.utils import timezone

from benchmarks.trading import DEPOSIT_CENTS, SEED_SHARES, ledger_check, traders_seed
from tests.benchmarks.served import LOAD_CLIENTS, benchmark_output
from trading.models import Account, Asset, Order, OrderType, Position, TimeInForce
from trading.units import shares_to_units


@pytest.mark.live
@pytest.mark.xdist_group("load")  # make test runs the load generators (benchmarks, fuzzer) one at a time
@pytest.mark.django_db(transaction=True)
@LOAD_CLIENTS
@pytest.mark.usefixtures("benchmark_template")  # tests/benchmarks/conftest.py
def test_benchmark_trading_prints_its_table(tmp_path: Path, client: str) -> None:
    text = benchmark_output("trading", tmp_path, client=client, quiet_wait=0)
    trading_table_check(text)
    assert ("load: wrk" in text) == (client == "wrk"), text


def trading_table_check(text: str) -> None:
    """Every row of ``benchmark trading``'s table; the verdicts that are counts, not speeds: every
    order filled whole, none refused, the ledger balanced, the statements per order read."""
    for scenario in (
        "floor: one-row INSERT behind key auth + limiter + DRF, p50 / p99",
        "filled market orders/s vs the INSERT floor (c=",
        "SQL statements per filled market order (X-DB-Queries)",
        "orders filled whole (one execution each)",
        "ledger balanced (cash = entries, conservation, positions = fills)",
        "orders placed in the run (warm-up and samples included):",
        "failed requests (non-2xx or socket errors): orders 0, floor 0",
    ):
        assert scenario in text, text
    assert "ledger check:" not in text, text
    for line in text.splitlines():
        if line.startswith(("orders filled whole", "ledger balanced")):
            assert line.split()[-1] == "yes", line
        if line.startswith("SQL statements per filled market order"):
            statements, floor = (float(value) for value in line.split()[7:9])
            # Each order reads and writes its account, position, order and fill: several statements.
            assert statements > floor >= 1, line


@pytest.mark.django_db
def test_the_ledger_check_finds_unfilled_orders_and_unbalanced_books() -> None:
    """The check the benchmark runs after its load: balanced as seeded, and each defect named."""
    traders_seed(accounts=3, symbols=2, log=lambda line: None)
    clean = ledger_check(seeded_qty=shares_to_units(SEED_SHARES), deposit_cents=DEPOSIT_CENTS)
    assert (clean.orders, clean.accounts, clean.problems) == (0, 3, [])

    first, second, third = Account.objects.order_by("account_number")
    Account.objects.filter(pk=first.pk).update(cash_cents=first.cash_cents + 1)
    Position.objects.filter(account=second).update(qty=shares_to_units(SEED_SHARES + 1))
    Order.objects.create(
        account=third,
        client_order_id="unfilled",
        asset=Asset.objects.order_by("symbol")[0],
        side="buy",
        position_intent="buy_to_open",
        type=OrderType.MARKET,
        time_in_force=TimeInForce.DAY,
        qty=shares_to_units(1),
        submitted_at=timezone.now(),
    )
    found = ledger_check(seeded_qty=shares_to_units(SEED_SHARES), deposit_cents=DEPOSIT_CENTS)
    assert (found.orders, found.filled_whole, found.unbalanced_accounts) == (1, 0, 2)
    problems = "\n".join(found.problems)
    assert "unfilled" not in problems and " is new, filled 0 in 0 executions" in problems, problems
    assert f"account {first.account_number}: cash" in problems, problems
    assert f"account {second.account_number}: position" in problems, problems
