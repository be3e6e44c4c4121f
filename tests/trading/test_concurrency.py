"""Concurrency on PostgreSQL and file SQLite: 50 concurrent buys against cash for 10 give exactly
10 fills and 40 clean rejections, no 500s, no 'database is locked'.

Real threads, each with its own database connection, released together by a barrier, call the
services exactly as concurrent web requests and the market process do. Only domain errors
(``TradingError``) count as clean outcomes; anything else (OperationalError "database is locked",
a deadlock, an IntegrityError from a violated constraint) is what a client would see as a 500.

The same race through HTTP against real gunicorn processes needs the live-server fixture and
lives with it.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
from django.db import connections
from django.db.models import Sum
from django.utils import timezone
from pytest_django.fixtures import Settings

from tests.builders import shares
from trading import margin, services
from trading.errors import Forbidden, NotCancelable, TradingError
from trading.models import (
    CLOSING_INTENTS,
    Account,
    Asset,
    CashEntry,
    Fill,
    Order,
    Position,
    StockPriceHistory,
)
from trading.services import OrderRequest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

THREADS = 50
ASK = 1_000_100  # the asset trades at $100.00, bid $99.99, ask $100.01
ONE_SHARE = 10_001  # cents at the ask
MakeAccount = Callable[..., Account]


@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None


def run_together(calls: Sequence[Callable[[], object]], timeout: float = 120) -> list[Outcome]:
    """Run each call in its own thread, all released at once; every thread closes its connection."""
    barrier = threading.Barrier(len(calls))
    outcomes = [Outcome() for _ in calls]

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=timeout)
            outcomes[index].value = calls[index]()
        except BaseException as error:
            outcomes[index].error = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return outcomes


def unclean(outcomes: list[Outcome]) -> list[str]:
    """Everything that would have been a 500: errors other than the domain's own."""
    return [
        f"{type(o.error).__module__}.{type(o.error).__name__}: {o.error}"
        for o in outcomes
        if o.error is not None and not isinstance(o.error, TradingError)
    ]


def assert_books_balance(account: Account) -> Account:
    account = Account.objects.get(pk=account.pk)
    ledger = CashEntry.objects.filter(account=account).aggregate(total=Sum("amount_cents"))["total"] or 0
    assert account.cash_cents == ledger
    assert 0 <= account.reserved_cents <= account.cash_cents
    open_orders = Order.objects.filter(account=account, status__in=["new", "partially_filled"])
    positions = Position.objects.filter(account=account)
    # Open orders' reservations plus the open shorts' initial margin (trading/margin.py).
    short_holds = sum(
        margin.short_hold_cents(qty=p.qty, cost_basis_cents=p.cost_basis_cents) for p in positions
    )
    assert (
        account.reserved_cents
        == (open_orders.aggregate(total=Sum("reserved_cents"))["total"] or 0) + short_holds
    )
    for pos in positions:
        closing = open_orders.filter(asset=pos.asset, position_intent__in=CLOSING_INTENTS)
        assert pos.qty_held == sum(o.qty - o.filled_qty for o in closing)
        assert abs(pos.qty) >= pos.qty_held
        signed = sum(
            f.qty if f.side == "buy" else -f.qty
            for f in Fill.objects.filter(account=account, asset=pos.asset)
        )
        assert pos.qty == signed
    return account


@pytest.fixture(autouse=True)
def _test_settings(settings: Settings) -> None:
    # Cash for exactly ten buys assumes no commission.
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0


# Shares shown at the bid and the ask: more than any order here but the partial-fill races place.
TOUCH_SIZE = 1_000


@pytest.fixture
def asset(_test_settings: None, db: None) -> Asset:
    asset = Asset.objects.create(symbol="RACE", name="Race Inc.", sector="Technology")
    StockPriceHistory.objects.create(
        symbol="RACE",
        seq=1,
        price_units=1_000_000,
        size=100,
        bid_units=999_900,
        bid_size=TOUCH_SIZE,
        ask_units=ASK,
        ask_size=TOUCH_SIZE,
        recorded_at=timezone.now(),
    )
    return asset


def buy(account: Account, **fields: object) -> Callable[[], Order]:
    values: dict[str, object] = {
        "symbol": "RACE",
        "qty": 1,
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
    }
    values.update(fields)
    values["qty"] = shares(values["qty"])  # type: ignore[arg-type]
    request = OrderRequest(**values)  # type: ignore[arg-type]
    return lambda: services.order_place(account_id=account.pk, request=request)


def test_50_concurrent_market_buys_against_cash_for_10(asset: Asset, make_account: MakeAccount) -> None:
    account = make_account(cash=10 * ONE_SHARE)
    outcomes = run_together([buy(account) for _ in range(THREADS)])

    assert unclean(outcomes) == []
    filled = [o.value for o in outcomes if o.error is None]
    rejected = [o.error for o in outcomes if o.error is not None]
    assert len(filled) == 10
    assert all(isinstance(order, Order) and order.status == "filled" for order in filled)
    assert len(rejected) == 40
    assert all(isinstance(error, Forbidden) and error.status == 403 for error in rejected)

    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (0, 0)
    pos = Position.objects.get(account=account, asset=asset)
    assert (pos.qty, pos.cost_basis_cents) == (shares(10), 10 * ONE_SHARE)
    # Rejected orders left nothing behind.
    assert Order.objects.filter(account=account).count() == 10
    assert Fill.objects.filter(account=account).count() == 10
    assert CashEntry.objects.filter(account=account, kind="buy").count() == 10


def test_50_concurrent_resting_limit_buys_reserve_for_exactly_10(
    asset: Asset, make_account: MakeAccount
) -> None:
    account = make_account(cash=10 * 9_500)
    outcomes = run_together([buy(account, type="limit", limit_price_units=950_000) for _ in range(THREADS)])

    assert unclean(outcomes) == []
    accepted = [o.value for o in outcomes if o.error is None]
    assert len(accepted) == 10
    assert all(isinstance(order, Order) and order.status == "new" for order in accepted)
    assert sum(isinstance(o.error, Forbidden) for o in outcomes) == 40

    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents, account.buying_power_cents) == (95_000, 95_000, 0)
    assert Order.objects.filter(account=account).count() == 10


def test_50_concurrent_sells_of_10_shares_hold_exactly_10(asset: Asset, make_account: MakeAccount) -> None:
    account = make_account(cash=10 * ONE_SHARE)
    services.order_place(
        account_id=account.pk,
        request=OrderRequest(symbol="RACE", qty=shares(10), side="buy", type="market", time_in_force="day"),
    )
    calls = [
        buy(account, side="sell", type="limit", limit_price_units=1_100_000)
        if i % 2
        else buy(account, side="sell")
        for i in range(THREADS)
    ]
    outcomes = run_together(calls)

    assert unclean(outcomes) == []
    succeeded = [o.value for o in outcomes if o.error is None]
    assert len(succeeded) == 10
    assert sum(isinstance(o.error, Forbidden) for o in outcomes) == 40
    sold = sum(1 for order in succeeded if isinstance(order, Order) and order.status == "filled")
    resting = sum(1 for order in succeeded if isinstance(order, Order) and order.status == "new")
    assert sold + resting == 10
    pos = Position.objects.get(account=account, asset=asset)
    assert (pos.qty, pos.qty_held) == (shares(10 - sold), shares(resting))
    account = assert_books_balance(account)
    assert account.cash_cents == sold * 9_999


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_cancel_racing_fill_has_exactly_one_winner(
    asset: Asset, make_account: MakeAccount, side: str
) -> None:
    account = make_account(cash=10_000_000)
    if side == "sell":
        services.order_place(
            account_id=account.pk,
            request=OrderRequest(
                symbol="RACE", qty=shares(200), side="buy", type="market", time_in_force="gtc"
            ),
        )
    start = Account.objects.get(pk=account.pk).cash_cents
    limit, fill_price = (950_000, 940_100) if side == "buy" else (1_050_000, 1_060_000)
    fills = cancels = 0
    for round_ in range(20):
        order = buy(account, side=side, qty=10, type="limit", limit_price_units=limit, time_in_force="gtc")()
        assert order.status == "new"
        now = timezone.now() + dt.timedelta(seconds=round_)
        cancel, fill = run_together(
            [
                functools.partial(services.order_cancel, account_id=account.pk, order_id=order.pk, now=now),
                functools.partial(services.order_fill, order_id=order.pk, price_units=fill_price, now=now),
            ]
        )
        assert unclean([cancel, fill]) == [], f"round {round_}"
        order.refresh_from_db()
        if order.status == "filled":
            fills += 1
            assert isinstance(cancel.error, NotCancelable)
            assert isinstance(fill.value, Order) and fill.value.status == "filled"
        else:
            cancels += 1
            assert order.status == "canceled"
            assert cancel.error is None
            assert fill.error is None and fill.value is None
        assert Fill.objects.filter(order=order).count() == (1 if order.status == "filled" else 0)
        balanced = assert_books_balance(account)
        # The reservation (or the held shares) came back exactly once, whoever won.
        assert balanced.reserved_cents == 0
        per_fill = -94_010 if side == "buy" else 106_000
        assert balanced.cash_cents == start + fills * per_fill
        if side == "sell":
            assert Position.objects.get(account=account, asset=asset).qty_held == 0
    assert fills + cancels == 20


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_cancel_racing_partial_fills_releases_what_is_left_exactly_once(
    asset: Asset, make_account: MakeAccount, side: str
) -> None:
    """Two executions of part of an order race its cancel: whatever commits first, the cancel
    releases only what the executions before it left (read from the locked row), so the
    reservation and the held shares come back exactly once."""
    account = make_account(cash=100_000_000)
    if side == "sell":
        services.order_place(
            account_id=account.pk,
            request=OrderRequest(
                symbol="RACE", qty=shares(900), side="buy", type="market", time_in_force="gtc"
            ),
        )
    limit, fill_price = (950_000, 940_100) if side == "buy" else (1_050_000, 1_060_000)
    for round_ in range(10):
        order = buy(account, side=side, qty=30, type="limit", limit_price_units=limit, time_in_force="gtc")()
        assert order.status == "new"
        now = timezone.now() + dt.timedelta(seconds=round_)
        outcomes = run_together(
            [
                functools.partial(services.order_cancel, account_id=account.pk, order_id=order.pk, now=now),
                *[
                    functools.partial(
                        services.order_fill,
                        order_id=order.pk,
                        price_units=fill_price,
                        qty=shares(10),
                        now=now,
                    )
                    for _ in range(2)
                ],
            ]
        )
        assert unclean(outcomes) == [], f"round {round_}"
        order.refresh_from_db()
        assert order.status == "canceled"
        assert outcomes[0].error is None
        executed = Fill.objects.filter(order=order)
        assert order.filled_qty == sum(fill.qty for fill in executed) == shares(10) * executed.count()
        assert executed.count() == sum(isinstance(o.value, Order) for o in outcomes[1:])
        balanced = assert_books_balance(account)
        assert balanced.reserved_cents == 0
        if side == "sell":
            assert Position.objects.get(account=account, asset=asset).qty_held == 0


def test_replace_racing_fill_has_exactly_one_winner(asset: Asset, make_account: MakeAccount) -> None:
    account = make_account(cash=10_000_000)
    for round_ in range(10):
        order = buy(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="gtc")()
        replace, fill = run_together(
            [
                functools.partial(
                    services.order_replace,
                    account_id=account.pk,
                    order_id=order.pk,
                    limit_price_units=940_000,
                ),
                functools.partial(services.order_fill, order_id=order.pk, price_units=940_100),
            ]
        )
        assert unclean([replace, fill]) == [], f"round {round_}"
        order.refresh_from_db()
        assert order.status in ("filled", "replaced")
        if order.status == "filled":
            assert isinstance(replace.error, NotCancelable)
        else:
            assert fill.value is None
            assert isinstance(replace.value, Order)
            services.order_cancel(account_id=account.pk, order_id=replace.value.pk)
        assert assert_books_balance(account).reserved_cents == 0


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_expiry_and_cancels_racing_fills_release_each_order_once(
    asset: Asset, make_account: MakeAccount, side: str
) -> None:
    """Expiry works from copies of the due orders read before each one's transaction, cancels
    from a copy read before the lock; whichever of expiry, cancel and fill wins an order, what it
    held (cash or shares) comes back exactly once, from the row as the lock finds it."""
    account = make_account(cash=10_000_000)
    if side == "sell":
        services.order_place(
            account_id=account.pk,
            request=OrderRequest(
                symbol="RACE", qty=shares(100), side="buy", type="market", time_in_force="gtc"
            ),
        )
    start = Account.objects.get(pk=account.pk).cash_cents
    placed_at = timezone.now()
    limit, fill_price = (950_000, 940_100) if side == "buy" else (1_050_000, 1_060_000)
    orders = [
        services.order_place(
            account_id=account.pk,
            request=OrderRequest(symbol="RACE", qty=shares(10), side=side, type="limit", time_in_force="day",
                                 limit_price_units=limit),
            now=placed_at,
        )
        for _ in range(8)
    ]  # fmt: skip
    after_day = max(order.expires_at for order in orders if order.expires_at) + dt.timedelta(seconds=1)
    calls: list[Callable[[], object]] = [functools.partial(services.orders_expire, now=after_day)]
    for order in orders:
        calls.append(functools.partial(services.order_fill, order_id=order.pk, price_units=fill_price))
        calls.append(functools.partial(services.order_cancel, account_id=account.pk, order_id=order.pk))
    outcomes = run_together(calls)
    assert unclean(outcomes) == []
    statuses = {order.pk: Order.objects.get(pk=order.pk).status for order in orders}
    assert set(statuses.values()) <= {"filled", "canceled", "expired"}
    fills = sum(1 for status in statuses.values() if status == "filled")
    assert Fill.objects.filter(order__in=orders).count() == fills
    assert outcomes[0].value == sum(1 for status in statuses.values() if status == "expired")
    balanced = assert_books_balance(account)
    assert balanced.reserved_cents == 0
    per_fill = -94_010 if side == "buy" else 106_000  # 10 shares at $94.01 or $106.00
    assert balanced.cash_cents == start + fills * per_fill
    if side == "sell":
        assert Position.objects.get(account=account, asset=asset).qty_held == 0


# --- shorts ---------------------------------------------------------------------------------------


def test_50_concurrent_short_sales_against_margin_for_10(asset: Asset, make_account: MakeAccount) -> None:
    """Each short of one share brings 9,999 cents and holds 14,999 (Reg T's 150 %): an account
    with 10 x 5,000 cents of buying power shorts exactly 10 shares, whoever races."""
    account = make_account(cash=10 * 5_000)
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    outcomes = run_together([buy(account, side="sell") for _ in range(THREADS)])

    assert unclean(outcomes) == []
    filled = [o.value for o in outcomes if o.error is None]
    assert len(filled) == 10
    assert all(isinstance(order, Order) and order.position_intent == "sell_to_open" for order in filled)
    assert all(isinstance(o.error, Forbidden) and "buying power" in str(o.error) for o in outcomes if o.error)
    account = assert_books_balance(account)
    # The hold is 150 % of the whole short's entry value: 99,990 cents -> 149,985.
    assert (account.cash_cents, account.reserved_cents) == (50_000 + 10 * 9_999, 149_985)
    pos = Position.objects.get(account=account, asset=asset)
    assert (pos.qty, pos.cost_basis_cents) == (shares(-10), -10 * 9_999)


def test_50_concurrent_covers_of_a_10_share_short_close_exactly_10(
    asset: Asset, make_account: MakeAccount
) -> None:
    """Covers hold the shares they cover, so market and resting covers racing never carry the
    short past zero into a long."""
    account = make_account(cash=100_000)
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    buy(account, side="sell", qty=10)()
    calls = [
        buy(account, type="limit", limit_price_units=950_000) if i % 2 else buy(account)
        for i in range(THREADS)
    ]
    outcomes = run_together(calls)

    assert unclean(outcomes) == []
    succeeded = [o.value for o in outcomes if o.error is None]
    assert len(succeeded) == 10
    assert all(
        isinstance(o.error, Forbidden) and "insufficient qty" in str(o.error) for o in outcomes if o.error
    )
    covered = sum(1 for order in succeeded if isinstance(order, Order) and order.status == "filled")
    resting = sum(1 for order in succeeded if isinstance(order, Order) and order.status == "new")
    assert covered + resting == 10
    pos = Position.objects.get(account=account, asset=asset)
    assert (pos.qty, pos.qty_held) == (shares(covered - 10), shares(resting))
    assert_books_balance(account)
