"""The trading services, one behaviour at a time, with exact cash, reservation and ledger checks.

Every test's asset starts at a last trade of $100.00 with bid $99.99 and ask $100.01, so a buy of
one share costs 10,001 cents and a sale brings 9,999. Accounts start with $100,000.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import Sum
from django.utils import timezone
from pytest_django.fixtures import Settings

from tests.builders import add_tick, shares
from tests.clock import new_york
from trading import margin, services
from trading.errors import Forbidden, InvalidRequest, NotCancelable, NotFound
from trading.models import (
    CLOSING_INTENTS,
    Account,
    Asset,
    CashEntry,
    CommissionPlan,
    Fill,
    Order,
    OrderStatus,
    Position,
    StockPriceHistory,
)
from trading.services import OrderRequest

pytestmark = pytest.mark.django_db

START = 10_000_000  # $100,000.00
ASK = 1_000_100  # $100.01
BID = 999_900  # $99.99
NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)  # 11:00 New York, a Monday

MakeAccount = Callable[..., Account]
MakeAsset = Callable[..., Asset]


def tick(symbol: str, last_units: int, *, spread_units: int = 100) -> StockPriceHistory:
    """A new newest tick in exact units: bid and ask ``spread_units`` either side."""
    return add_tick(symbol, price_units=last_units, spread_units=spread_units)


def place(account: Account, *, now: dt.datetime = NOW, **fields: object) -> Order:
    values: dict[str, object] = {
        "symbol": "AAPL",
        "qty": 1,
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
    }
    values.update(fields)
    if values["qty"] is not None:  # whole or decimal shares here, quantity units in the service
        values["qty"] = shares(values["qty"])  # type: ignore[arg-type]
    return services.order_place(account_id=account.pk, request=OrderRequest(**values), now=now)  # type: ignore[arg-type]


def fresh(account: Account) -> Account:
    return Account.objects.get(pk=account.pk)


def position(account: Account, symbol: str = "AAPL") -> Position | None:
    return Position.objects.filter(account=account, asset__symbol=symbol).first()


def assert_books_balance(account: Account) -> Account:
    """Ledger and reservation invariants that must hold after every service call."""
    account = fresh(account)
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
    assert (
        not Order.objects.filter(account=account)
        .exclude(status__in=["new", "partially_filled"])
        .exclude(reserved_cents=0)
        .exists()
    )
    for pos in positions:
        # Closing orders hold what they close: shares of a long, or of a short for a cover.
        closing = open_orders.filter(asset=pos.asset, position_intent__in=CLOSING_INTENTS)
        assert pos.qty_held == sum(o.qty - o.filled_qty for o in closing)
        assert pos.qty_held <= abs(pos.qty)
    return account


def snapshot() -> tuple[object, ...]:
    return (
        Order.objects.count(),
        Fill.objects.count(),
        CashEntry.objects.count(),
        sorted(Position.objects.values_list("account_id", "asset_id", "qty", "qty_held", "cost_basis_cents")),
        sorted(Account.objects.values_list("pk", "cash_cents", "reserved_cents")),
    )


@pytest.fixture(autouse=True)
def _test_settings(settings: Settings) -> None:
    # Exact amounts below assume no commission unless a test sets one (the environment may).
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0


@pytest.fixture(autouse=True)
def aapl(_test_settings: None, make_asset: MakeAsset) -> Asset:
    return make_asset("AAPL", price="100.00")


# --- market orders ---------------------------------------------------------------------------------


def test_market_buy_fills_at_the_ask(account: Account) -> None:
    order = place(account, qty=10)
    assert order.status == OrderStatus.FILLED
    assert (order.filled_qty, order.filled_avg_price_units, order.filled_at) == (shares(10), ASK, NOW)
    order.refresh_from_db()
    assert (order.status, order.filled_qty, order.filled_avg_price_units) == ("filled", shares(10), ASK)

    account = assert_books_balance(account)
    assert account.cash_cents == START - 100_010
    assert account.reserved_cents == 0
    (fill,) = Fill.objects.filter(order=order)
    assert (fill.side, fill.qty, fill.price_units, fill.commission_cents, fill.realized_pl_cents) == (
        "buy",
        shares(10),
        ASK,
        0,
        0,
    )
    assert fill.tick_seq == 1
    assert fill.filled_at == NOW
    entries = list(CashEntry.objects.filter(fill=fill).values_list("kind", "amount_cents"))
    assert entries == [("buy", -100_010)]
    pos = position(account)
    assert pos is not None
    assert (pos.qty, pos.qty_held, pos.cost_basis_cents) == (shares(10), 0, 100_010)


def test_market_sell_fills_at_the_bid_and_realises_average_cost_pl(account: Account) -> None:
    place(account, qty=10)
    order = place(account, qty=4, side="sell")
    assert (order.status, order.filled_avg_price_units) == ("filled", BID)
    (fill,) = Fill.objects.filter(order=order)
    # 4 x 99.99 = 399.96 received; 4/10 of a 1,000.10 basis = 400.04 given up.
    assert fill.realized_pl_cents == 39_996 - 40_004
    account = assert_books_balance(account)
    assert account.cash_cents == START - 100_010 + 39_996
    pos = position(account)
    assert pos is not None
    assert (pos.qty, pos.cost_basis_cents) == (shares(6), 60_006)
    assert list(CashEntry.objects.filter(fill=fill).values_list("kind", "amount_cents")) == [("sell", 39_996)]


def test_symbol_is_case_insensitive(account: Account) -> None:
    assert place(account, symbol="aapl").status == "filled"


# --- commissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("qty", "commission"),
    [
        (10, 104),  # 100 + 3.5 -> 4 (half-even)
        (30, 110),  # 100 + 10.5 -> 10 (half-even)
        (1, 102),  # 100 + 0.35 -> 100, raised to the 102 minimum
    ],
)
def test_commission_from_settings(settings: Settings, account: Account, qty: int, commission: int) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 100
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 35
    settings.COMMISSION_MINIMUM_CENTS = 102
    order = place(account, qty=qty)
    (fill,) = Fill.objects.filter(order=order)
    assert fill.commission_cents == commission
    value = qty * 10_001
    assert sorted(CashEntry.objects.filter(fill=fill).values_list("kind", "amount_cents")) == [
        ("buy", -value),
        ("commission", -commission),
    ]
    account = assert_books_balance(account)
    assert account.cash_cents == START - value - commission

    sale = place(account, qty=qty, side="sell")
    (sell_fill,) = Fill.objects.filter(order=sale)
    assert sell_fill.commission_cents == commission
    # Realised P&L is trade P&L; the commission is recorded beside it.
    assert sell_fill.realized_pl_cents == qty * 9_999 - value
    assert assert_books_balance(account).cash_cents == START - value - commission + qty * 9_999 - commission


def test_active_commission_plan_overrides_settings(settings: Settings, account: Account) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 500
    CommissionPlan.objects.create(name="old", per_order_cents=1, active=True)
    CommissionPlan.objects.create(name="off", per_order_cents=999, active=False)
    plan = CommissionPlan.objects.create(
        name="per share", per_share_centi_cents=100, minimum_cents=5, active=True
    )
    # The newest active plan applies.
    CommissionPlan.objects.filter(name="old").update(created_at=timezone.now() - dt.timedelta(days=1))
    CommissionPlan.objects.filter(pk=plan.pk).update(created_at=timezone.now())
    order = place(account, qty=10)
    assert Fill.objects.get(order=order).commission_cents == 10  # 10 shares x 1 cent
    order = place(account, qty=2)
    assert Fill.objects.get(order=order).commission_cents == 5  # the minimum
    assert assert_books_balance(account).cash_cents == START - 12 * 10_001 - 15

    CommissionPlan.objects.update(active=False)
    order = place(account, qty=1)
    assert Fill.objects.get(order=order).commission_cents == 500  # back to settings


def test_two_active_plans_made_at_one_instant_charge_the_later_ones_rates_whole(account: Account) -> None:
    """The default plan's fields are read as separate subqueries: with a tie on created_at the
    primary key decides, so no order pays one plan's per-order rate with another's minimum."""
    CommissionPlan.objects.create(name="first", per_order_cents=100)
    later = CommissionPlan.objects.create(name="later", per_share_centi_cents=100, minimum_cents=7)
    CommissionPlan.objects.update(created_at=NOW - dt.timedelta(days=1))
    expected = services.CommissionRates.of(later)
    assert services.commission_rates() == expected
    assert services.commission_rates(account_id=account.pk) == expected

    at_once = place(account, qty=1)
    resting = place(account, qty=1, type="limit", limit_price_units=950_000)
    price = tick("AAPL", 940_000)
    services.order_fill(order_id=resting.pk, price_units=price.ask_units, tick_seq=price.seq, now=NOW)
    charged = [Fill.objects.get(order=order).commission_cents for order in (at_once, resting)]
    assert charged == [7, 7]  # the later plan's minimum alone; the first's 100 never mixed in


def test_an_order_is_created_and_updated_at_the_instant_it_is_placed(account: Account) -> None:
    """Placement's own instant, not the wall clock's: neither a resting order nor one filled at
    once is updated before it was created."""
    resting = place(account, qty=1, type="limit", limit_price_units=950_000)
    filled = place(account, qty=1)
    assert (resting.status, filled.status) == (OrderStatus.NEW, OrderStatus.FILLED)
    for order in (resting, filled):
        stored = Order.objects.get(pk=order.pk)
        assert (stored.created_at, stored.updated_at) == (NOW, NOW)
        assert (order.created_at, order.updated_at) == (NOW, NOW)


def test_a_fill_stamps_the_position_with_its_own_instant(account: Account) -> None:
    place(account, qty=1)
    later = NOW + dt.timedelta(minutes=5)
    place(account, qty=1, now=later)
    assert position(account).updated_at == later  # type: ignore[union-attr]


def test_resting_buy_reserves_its_commission(settings: Settings, account: Account) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 250
    order = place(account, qty=10, type="limit", limit_price_units=950_000)
    assert order.reserved_cents == 95_000 + 250
    assert assert_books_balance(account).reserved_cents == 95_250


# --- limit orders and reservations -------------------------------------------------------------------


def test_limit_buy_rests_and_reserves_buying_power_then_cancel_releases(account: Account) -> None:
    order = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="day")
    assert order.status == OrderStatus.NEW
    assert order.reserved_cents == 95_000
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents, account.buying_power_cents) == (
        START,
        95_000,
        START - 95_000,
    )
    assert not Fill.objects.exists()

    canceled = services.order_cancel(
        account_id=account.pk, order_id=order.pk, now=NOW + dt.timedelta(minutes=1)
    )
    assert (canceled.status, canceled.canceled_at) == ("canceled", NOW + dt.timedelta(minutes=1))
    order.refresh_from_db()
    assert (order.status, order.reserved_cents) == ("canceled", 0)
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (START, 0)

    with pytest.raises(NotCancelable):
        services.order_cancel(account_id=account.pk, order_id=order.pk)


def test_reservations_limit_further_orders(make_account: MakeAccount) -> None:
    account = make_account(cash=100_000)
    place(account, qty=10, type="limit", limit_price_units=950_000)  # holds 95,000 of 100,000
    before = snapshot()
    with pytest.raises(Forbidden):
        place(account, qty=1, type="limit", limit_price_units=950_000)
    with pytest.raises(Forbidden):
        place(account, qty=1)  # 10,001 > 5,000 of buying power
    assert snapshot() == before
    assert place(account, qty=1, type="limit", limit_price_units=500_000).reserved_cents == 5_000
    assert assert_books_balance(account).buying_power_cents == 0


def test_marketable_limit_fills_at_once_at_the_better_quote(account: Account) -> None:
    buy = place(account, qty=10, type="limit", limit_price_units=1_010_000)
    assert (buy.status, buy.filled_avg_price_units) == ("filled", ASK)
    sell = place(account, qty=10, side="sell", type="limit", limit_price_units=990_000)
    assert (sell.status, sell.filled_avg_price_units) == ("filled", BID)
    account = assert_books_balance(account)
    assert account.cash_cents == START - 100_010 + 99_990
    assert account.reserved_cents == 0


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_unfillable_ioc_and_fok_are_canceled_at_once(account: Account, tif: str) -> None:
    order = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force=tif)
    assert order.status == OrderStatus.CANCELED
    order.refresh_from_db()
    assert (order.status, order.reserved_cents, order.canceled_at) == ("canceled", 0, NOW)
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (START, 0)
    # Marketable IOC/FOK fill whole.
    filled = place(account, qty=10, type="limit", limit_price_units=1_000_100, time_in_force=tif)
    assert filled.status == "filled"


@pytest.mark.parametrize("tif", ["ioc", "fok"])
def test_unfillable_ioc_and_fok_still_need_buying_power_or_shares(
    make_account: MakeAccount, tif: str
) -> None:
    # Every order passes the buying-power (or shares) check on submission, as on Alpaca: an
    # account that could not pay is told so (403), not handed a canceled order.
    account = make_account(cash=1_000)
    before = snapshot()
    with pytest.raises(Forbidden, match="buying power"):
        place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force=tif)
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=10, side="sell", type="limit", limit_price_units=1_100_000, time_in_force=tif)
    assert snapshot() == before


def test_resting_sell_holds_its_shares(account: Account) -> None:
    place(account, qty=10)
    resting = place(account, qty=10, side="sell", type="limit", limit_price_units=1_100_000)
    assert resting.status == "new"
    pos = position(account)
    assert pos is not None
    assert (pos.qty, pos.qty_held) == (shares(10), shares(10))
    before = snapshot()
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=1, side="sell")
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=1, side="sell", type="limit", limit_price_units=1_200_000)
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=1, side="sell", type="stop", stop_price_units=900_000)
    assert snapshot() == before

    services.order_cancel(account_id=account.pk, order_id=resting.pk)
    assert position(account).qty_held == 0  # type: ignore[union-attr]
    assert place(account, qty=1, side="sell").status == "filled"
    assert_books_balance(account)


def test_partly_held_position_sells_only_the_rest(account: Account) -> None:
    place(account, qty=10)
    place(account, qty=6, side="sell", type="limit", limit_price_units=1_100_000)
    with pytest.raises(Forbidden):
        place(account, qty=5, side="sell")
    assert place(account, qty=4, side="sell").status == "filled"
    pos = position(account)
    assert pos is not None
    assert (pos.qty, pos.qty_held) == (shares(6), shares(6))
    assert_books_balance(account)


# --- stops and trailing stops on placement -------------------------------------------------------------


def test_stop_orders_rest_until_crossed_and_fill_at_once_when_already_crossed(account: Account) -> None:
    buy_stop = place(account, qty=10, type="stop", stop_price_units=1_050_000)
    assert buy_stop.status == "new"
    # Held at the stop price (above the ask): what a fill at the stop would cost.
    assert buy_stop.reserved_cents == 105_000
    crossed = place(account, qty=10, type="stop", stop_price_units=990_000)
    assert (crossed.status, crossed.filled_avg_price_units) == ("filled", ASK)
    sell_stop = place(account, qty=5, side="sell", type="stop", stop_price_units=950_000)
    assert sell_stop.status == "new"
    assert position(account).qty_held == shares(5)  # type: ignore[union-attr]
    assert_books_balance(account)


def test_stop_limit_crossed_on_placement_rests_as_a_triggered_limit(account: Account) -> None:
    order = place(account, qty=1, type="stop_limit", stop_price_units=990_000, limit_price_units=995_000)
    order.refresh_from_db()
    assert order.status == "new"
    assert order.stop_triggered_at == NOW
    assert order.reserved_cents == 9_950
    untriggered = place(
        account, qty=1, type="stop_limit", stop_price_units=1_010_000, limit_price_units=1_020_000
    )
    untriggered.refresh_from_db()
    assert untriggered.stop_triggered_at is None
    assert_books_balance(account)


def test_trailing_stop_starts_its_water_mark_at_the_last_trade(account: Account) -> None:
    place(account, qty=5)
    sell = place(account, qty=5, side="sell", type="trailing_stop", trail_price_units=20_000)
    sell.refresh_from_db()
    assert (sell.status, sell.high_water_mark_units) == ("new", 1_000_000)
    buy = place(account, qty=2, type="trailing_stop", trail_percent_units=50_000)
    buy.refresh_from_db()
    assert buy.high_water_mark_units == 1_000_000
    # A trailing buy holds at most a trail above the best price: 105.00 x 2.
    assert buy.reserved_cents == 21_000
    assert_books_balance(account)


# --- fills by the market (order_fill) ---------------------------------------------------------------


def test_order_fill_of_a_resting_buy_at_the_crossing_price(account: Account) -> None:
    order = place(account, qty=10, type="limit", limit_price_units=950_000)
    price = tick("AAPL", 940_000)  # ask 94.01, under the limit
    later = NOW + dt.timedelta(minutes=5)
    filled = services.order_fill(
        order_id=order.pk, price_units=price.ask_units, tick_seq=price.seq, now=later
    )
    assert filled is not None
    assert (filled.status, filled.filled_qty, filled.filled_avg_price_units, filled.filled_at) == (
        "filled",
        shares(10),
        940_100,
        later,
    )
    account = assert_books_balance(account)
    # Filled better than the limit: the whole 95,000 reservation goes back, 94,010 is paid.
    assert (account.cash_cents, account.reserved_cents) == (START - 94_010, 0)
    fill = Fill.objects.get(order=order)
    assert (fill.tick_seq, fill.price_units) == (price.seq, 940_100)
    assert position(account).qty == shares(10)  # type: ignore[union-attr]

    # Filled orders are not filled twice.
    assert services.order_fill(order_id=order.pk, price_units=900_000, now=later) is None
    assert Fill.objects.filter(order=order).count() == 1


def test_order_fill_of_a_resting_sell_releases_held_shares(account: Account) -> None:
    place(account, qty=10)
    order = place(account, qty=10, side="sell", type="limit", limit_price_units=1_050_000)
    filled = services.order_fill(order_id=order.pk, price_units=1_060_000, now=NOW)
    assert filled is not None
    assert filled.status == "filled"
    pos = position(account)
    assert pos is not None
    assert (pos.qty, pos.qty_held, pos.cost_basis_cents) == (0, 0, 0)
    assert Fill.objects.get(order=order).realized_pl_cents == 106_000 - 100_010
    assert assert_books_balance(account).cash_cents == START - 100_010 + 106_000


def test_cancel_then_fill_and_fill_then_cancel_have_one_outcome(account: Account) -> None:
    first = place(account, qty=10, type="limit", limit_price_units=950_000)
    services.order_cancel(account_id=account.pk, order_id=first.pk)
    assert services.order_fill(order_id=first.pk, price_units=940_100) is None
    assert not Fill.objects.exists()
    assert fresh(account).cash_cents == START

    second = place(account, qty=10, type="limit", limit_price_units=950_000)
    assert services.order_fill(order_id=second.pk, price_units=940_100) is not None
    with pytest.raises(NotCancelable):
        services.order_cancel(account_id=account.pk, order_id=second.pk)
    second.refresh_from_db()
    assert second.status == "filled"
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (START - 94_010, 0)


def test_order_fill_the_account_cannot_pay_cancels_the_order(make_account: MakeAccount) -> None:
    account = make_account(cash=105_000)
    order = place(account, qty=10, type="stop", stop_price_units=1_050_000)
    assert order.reserved_cents == 105_000
    # The price gaps far past the stop: the fill would cost more than the account has.
    result = services.order_fill(order_id=order.pk, price_units=1_200_100, now=NOW)
    assert result is not None
    assert result.status == "canceled"
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (105_000, 0)
    assert not Fill.objects.exists()


def test_order_mark_triggered_and_track_water_mark(account: Account) -> None:
    place(account, qty=3)
    order = place(
        account, qty=3, side="sell", type="stop_limit", stop_price_units=950_000, limit_price_units=940_000
    )
    services.order_mark_triggered(order_id=order.pk, now=NOW)
    services.order_mark_triggered(order_id=order.pk, now=NOW + dt.timedelta(hours=1))  # first one stays
    order.refresh_from_db()
    assert order.stop_triggered_at == NOW
    trailing = place(account, qty=1, type="trailing_stop", trail_price_units=10_000)
    other = place(account, qty=1, type="trailing_stop", trail_percent_units=10_000)
    marks = {str(trailing.pk): 970_000, str(other.pk): 980_000, str(order.pk): 5}
    # One statement for every mark; a stop_limit has no mark to move.
    assert services.orders_track_water_marks(marks=marks) == 2
    trailing.refresh_from_db()
    other.refresh_from_db()
    order.refresh_from_db()
    assert (trailing.high_water_mark_units, other.high_water_mark_units) == (970_000, 980_000)
    assert order.high_water_mark_units is None
    # Closed orders do not move.
    services.order_cancel(account_id=account.pk, order_id=trailing.pk)
    assert services.orders_track_water_marks(marks={str(trailing.pk): 1}) == 0
    trailing.refresh_from_db()
    assert trailing.high_water_mark_units == 970_000
    assert services.orders_track_water_marks(marks={}) == 0


# --- replace ------------------------------------------------------------------------------------------


def test_order_replace_moves_the_reservation_to_the_new_order(account: Account) -> None:
    old = place(account, qty=10, type="limit", limit_price_units=950_000, client_order_id="mine-1")
    later = NOW + dt.timedelta(minutes=1)
    new = services.order_replace(
        account_id=account.pk,
        order_id=old.pk,
        qty=shares(5),
        limit_price_units=960_000,
        client_order_id="mine-2",
        now=later,
    )
    old.refresh_from_db()
    assert (old.status, old.replaced_at, old.reserved_cents) == ("replaced", later, 0)
    new.refresh_from_db()
    assert (new.status, new.qty, new.limit_price_units, new.client_order_id) == (
        "new",
        shares(5),
        960_000,
        "mine-2",
    )
    assert new.replaces_id == old.pk
    assert new.reserved_cents == 48_000
    account = assert_books_balance(account)
    assert account.reserved_cents == 48_000

    # A replacement that cannot be paid for leaves the original order as it was.
    before = snapshot()
    with pytest.raises(Forbidden):
        services.order_replace(account_id=account.pk, order_id=new.pk, qty=shares(1_000_000))
    assert snapshot() == before
    new.refresh_from_db()
    assert new.status == "new"


def test_order_replace_of_a_sell_moves_the_held_shares(account: Account) -> None:
    place(account, qty=10)
    old = place(account, qty=10, side="sell", type="limit", limit_price_units=1_100_000)
    new = services.order_replace(account_id=account.pk, order_id=old.pk, qty=shares(4))
    assert position(account).qty_held == shares(4)  # type: ignore[union-attr]
    with pytest.raises(Forbidden):
        services.order_replace(account_id=account.pk, order_id=new.pk, qty=shares(11))
    assert position(account).qty_held == shares(4)  # type: ignore[union-attr]
    assert_books_balance(account)


def test_order_replace_refusals(account: Account) -> None:
    filled = place(account, qty=1)
    with pytest.raises(NotCancelable):
        services.order_replace(account_id=account.pk, order_id=filled.pk, qty=shares(2))
    stop = place(account, qty=1, type="stop", stop_price_units=1_050_000)
    with pytest.raises(InvalidRequest):
        services.order_replace(account_id=account.pk, order_id=stop.pk, limit_price_units=1_000_000)
    limit = place(account, qty=1, type="limit", limit_price_units=900_000)
    with pytest.raises(InvalidRequest):
        services.order_replace(account_id=account.pk, order_id=limit.pk, trail_units=100)
    assert_books_balance(account)


def test_orders_are_private_to_their_account(make_account: MakeAccount) -> None:
    owner, other = make_account(), make_account()
    order = place(owner, qty=1, type="limit", limit_price_units=900_000)
    with pytest.raises(NotFound):
        services.order_cancel(account_id=other.pk, order_id=order.pk)
    with pytest.raises(NotFound):
        services.order_replace(account_id=other.pk, order_id=order.pk, qty=shares(2))


# --- expiry -------------------------------------------------------------------------------------------


def test_day_orders_expire_at_the_day_boundary_and_release_what_they_held(account: Account) -> None:
    place(account, qty=10)
    day_buy = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="day")
    day_sell = place(
        account, qty=4, side="sell", type="limit", limit_price_units=1_100_000, time_in_force="day"
    )
    gtc_buy = place(account, qty=1, type="limit", limit_price_units=900_000, time_in_force="gtc")
    boundary = dt.datetime(2025, 6, 3, 4, 0, tzinfo=dt.UTC)  # midnight New York (EDT)
    assert day_buy.expires_at == boundary
    assert gtc_buy.expires_at is None
    assert fresh(account).reserved_cents == 95_000 + 9_000

    assert services.orders_expire(now=boundary - dt.timedelta(seconds=1)) == 0
    assert services.orders_expire(now=boundary + dt.timedelta(seconds=1)) == 2
    for order in (day_buy, day_sell):
        order.refresh_from_db()
        assert (order.status, order.expired_at, order.reserved_cents) == (
            "expired",
            boundary + dt.timedelta(seconds=1),
            0,
        )
    gtc_buy.refresh_from_db()
    assert gtc_buy.status == "new"
    account = assert_books_balance(account)
    assert account.reserved_cents == 9_000
    assert position(account).qty_held == 0  # type: ignore[union-attr]
    assert services.orders_expire(now=boundary + dt.timedelta(days=3)) == 0


@pytest.mark.parametrize(
    ("placed", "boundary"),
    [
        (new_york(2026, 3, 4, 23, 59, 59), new_york(2026, 3, 5)),
        (new_york(2026, 3, 5, 0, 0, 1), new_york(2026, 3, 6)),
        # Placed on the 23-hour and the 25-hour day: still the next New York midnight.
        (new_york(2026, 3, 8, 1, 59), new_york(2026, 3, 9)),
        (new_york(2026, 11, 1, 1, 30, fold=1), new_york(2026, 11, 2)),
        (new_york(2026, 4, 30, 21, 15), new_york(2026, 5, 1)),  # already May 1st in UTC
    ],
)
def test_a_day_order_expires_at_the_next_new_york_midnight(
    account: Account, placed: dt.datetime, boundary: dt.datetime
) -> None:
    order = place(account, qty=1, type="limit", limit_price_units=900_000, time_in_force="day", now=placed)
    assert order.expires_at == boundary
    assert services.orders_expire(now=boundary - dt.timedelta(microseconds=1)) == 0
    assert services.orders_expire(now=boundary) == 1


@pytest.mark.parametrize(
    ("placed", "boundary"),
    [
        (new_york(2026, 3, 4, 10), new_york(2026, 3, 4, 16)),  # in the session: today's close
        (new_york(2026, 3, 4, 17), new_york(2026, 3, 5, 16)),  # after it: the next session's
        (new_york(2026, 3, 6, 23, 59, 59), new_york(2026, 3, 9, 16)),  # Friday night: Monday
        (new_york(2026, 11, 25, 20), new_york(2026, 11, 27, 13)),  # Thanksgiving, then an early close
    ],
)
def test_with_real_hours_a_day_order_expires_at_the_next_close(
    account: Account, placed: dt.datetime, boundary: dt.datetime, settings: Settings
) -> None:
    settings.MARKET_HOURS = "xnys"
    order = place(account, qty=1, type="limit", limit_price_units=900_000, time_in_force="day", now=placed)
    assert order.expires_at == boundary


def test_a_day_order_past_its_boundary_cannot_be_replaced_into_a_new_day(account: Account) -> None:
    """The periodic expiry runs every few seconds; a replace that reaches a day order after its
    trading day ended but before the expiry did must not carry it into the next day."""
    placed, boundary = new_york(2026, 3, 4, 23, 59, 30), new_york(2026, 3, 5)
    order = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="day", now=placed)
    later = boundary + dt.timedelta(seconds=5)

    with pytest.raises(NotCancelable, match="expired"):
        services.order_replace(account_id=account.pk, order_id=order.pk, qty=shares(5), now=later)

    order.refresh_from_db()
    assert (order.status, order.expired_at) == (OrderStatus.EXPIRED, later)
    assert not Order.objects.filter(replaces=order).exists()
    assert fresh(account).reserved_cents == 0
    assert services.orders_expire(now=later) == 0  # already done


def test_a_day_order_past_its_boundary_is_expired_not_canceled(account: Account) -> None:
    placed, boundary = new_york(2026, 3, 4, 23, 59, 30), new_york(2026, 3, 5)
    order = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="day", now=placed)

    with pytest.raises(NotCancelable, match="expired"):
        services.order_cancel(
            account_id=account.pk, order_id=order.pk, now=boundary + dt.timedelta(seconds=5)
        )

    order.refresh_from_db()
    assert order.status == OrderStatus.EXPIRED and order.canceled_at is None
    assert fresh(account).reserved_cents == 0


def test_a_day_order_replaced_before_its_boundary_keeps_that_boundary(account: Account) -> None:
    placed, boundary = new_york(2026, 3, 4, 23, 59, 30), new_york(2026, 3, 5)
    order = place(account, qty=10, type="limit", limit_price_units=950_000, time_in_force="day", now=placed)

    new = services.order_replace(
        account_id=account.pk, order_id=order.pk, qty=shares(5), now=boundary - dt.timedelta(seconds=1)
    )

    assert new.expires_at == boundary and new.time_in_force == "day"


# --- positions ------------------------------------------------------------------------------------------


def test_position_close_whole(account: Account) -> None:
    place(account, qty=10)
    order = services.position_close(account_id=account.pk, symbol="aapl", now=NOW)
    assert (order.side, order.qty, order.status, order.filled_avg_price_units) == (
        "sell",
        shares(10),
        "filled",
        BID,
    )
    assert position(account).qty == 0  # type: ignore[union-attr]
    assert assert_books_balance(account).cash_cents == START - 100_010 + 99_990
    with pytest.raises(NotFound):
        services.position_close(account_id=account.pk, symbol="AAPL")


@pytest.mark.parametrize(
    ("qty", "percentage", "sold"),
    [
        (3, None, 3),
        (None, Decimal("50"), 5),
        (None, Decimal("25"), Decimal("2.5")),  # not rounded to whole shares
        (None, Decimal("100"), 10),
        (Decimal("1.5"), None, Decimal("1.5")),
    ],
)
def test_position_close_part(
    account: Account, qty: Decimal | None, percentage: Decimal | None, sold: Decimal
) -> None:
    place(account, qty=10)
    order = services.position_close(
        account_id=account.pk, symbol="AAPL", qty=None if qty is None else shares(qty), percentage=percentage
    )
    assert (order.qty, order.status) == (shares(sold), "filled")
    assert position(account).qty == shares(10 - sold)  # type: ignore[union-attr]
    assert_books_balance(account)


def test_position_close_refusals(account: Account) -> None:
    place(account, qty=3)
    with pytest.raises(Forbidden):
        services.position_close(account_id=account.pk, symbol="AAPL", qty=shares(4))
    with pytest.raises(InvalidRequest):
        services.position_close(account_id=account.pk, symbol="AAPL", percentage=Decimal("0.00000001"))
    with pytest.raises(InvalidRequest):
        services.position_close(account_id=account.pk, symbol="AAPL", percentage=Decimal("101"))
    with pytest.raises(InvalidRequest):
        services.position_close(account_id=account.pk, symbol="AAPL", qty=shares(1), percentage=Decimal("50"))
    with pytest.raises(NotFound):
        services.position_close(account_id=account.pk, symbol="MSFT")
    assert position(account).qty == shares(3)  # type: ignore[union-attr]


# --- account reset and cash grants ---------------------------------------------------------------------


def test_account_reset(settings: Settings, make_asset: MakeAsset, account: Account) -> None:
    make_asset("MSFT", price="50.00")
    place(account, qty=10)
    place(account, symbol="MSFT", qty=20)
    place(account, qty=5, side="sell", type="limit", limit_price_units=1_200_000)
    resting_buy = place(account, qty=10, type="limit", limit_price_units=900_000)
    services.account_grant_cash(account_id=account.pk, amount_cents=12_345, now=NOW)
    fills_before = Fill.objects.count()

    settings.ACCOUNT_STARTING_CASH = "2500.00"
    later = NOW + dt.timedelta(days=2)
    reset = services.account_reset(account_id=account.pk, now=later)
    assert (reset.cash_cents, reset.reserved_cents, reset.reset_at) == (250_000, 0, later)
    assert not Position.objects.filter(account=account).exists()
    assert not Order.objects.filter(account=account, status__in=["new", "partially_filled"]).exists()
    resting_buy.refresh_from_db()
    assert (resting_buy.status, resting_buy.canceled_at) == ("canceled", later)
    # History stays; the ledger records the reset so it still sums to the cash.
    assert Fill.objects.count() == fills_before
    entry = CashEntry.objects.get(account=account, kind="reset")
    assert entry.created_at == later
    assert_books_balance(account)
    # Trading starts afresh.
    assert place(account, qty=1).status == "filled"
    assert assert_books_balance(account).cash_cents == 250_000 - 10_001


def test_account_grant_cash(account: Account) -> None:
    entry = services.account_grant_cash(account_id=account.pk, amount_cents=50_000, memo="prize", now=NOW)
    assert (entry.kind, entry.amount_cents, entry.memo, entry.created_at) == ("grant", 50_000, "prize", NOW)
    assert fresh(account).cash_cents == START + 50_000
    withdrawal = services.account_grant_cash(account_id=account.pk, amount_cents=-20_000)
    assert (withdrawal.amount_cents, withdrawal.memo) == (-20_000, "Cash withdrawal")
    assert assert_books_balance(account).cash_cents == START + 30_000

    with pytest.raises(InvalidRequest):
        services.account_grant_cash(account_id=account.pk, amount_cents=0)
    with pytest.raises(NotFound):
        services.account_grant_cash(account_id="00000000-0000-0000-0000-000000000000", amount_cents=1)


def test_withdrawal_cannot_take_reserved_cash(make_account: MakeAccount) -> None:
    account = make_account(cash=100_000)
    place(account, qty=9, type="limit", limit_price_units=1_000_000)  # reserves 90,000
    before = snapshot()
    with pytest.raises(Forbidden):
        services.account_grant_cash(account_id=account.pk, amount_cents=-10_001)
    with pytest.raises(Forbidden):
        services.account_grant_cash(account_id=account.pk, amount_cents=-100_001)
    assert snapshot() == before
    services.account_grant_cash(account_id=account.pk, amount_cents=-10_000)
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents, account.buying_power_cents) == (90_000, 90_000, 0)


# --- shorting -----------------------------------------------------------------------------------------


def test_selling_without_shares_is_forbidden_by_default(account: Account) -> None:
    assert not account.shorting_enabled
    before = snapshot()
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=1, side="sell")
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=1, side="sell", type="limit", limit_price_units=1_100_000)
    assert snapshot() == before


def test_shorting_needs_a_shortable_asset(make_asset: MakeAsset, account: Account) -> None:
    make_asset("HARD", price="10.00", shortable=False)
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    with pytest.raises(Forbidden):
        place(account, symbol="HARD", qty=1, side="sell")


def test_short_then_cover_realises_pl(make_asset: MakeAsset, account: Account) -> None:
    make_asset("SHRT", price="100.00", shortable=True)
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    short = place(account, symbol="SHRT", qty=10, side="sell")
    assert (short.status, short.filled_avg_price_units) == ("filled", BID)
    pos = position(account, "SHRT")
    assert pos is not None
    assert (pos.qty, pos.cost_basis_cents) == (shares(-10), -99_990)
    assert assert_books_balance(account).cash_cents == START + 99_990

    tick("SHRT", 900_000)  # the price falls to 90.00: ask 90.01
    cover = place(account, symbol="SHRT", qty=10, side="buy")
    assert cover.filled_avg_price_units == 900_100
    fill = Fill.objects.get(order=cover)
    assert fill.realized_pl_cents == 99_990 - 90_010
    pos = position(account, "SHRT")
    assert pos is not None
    assert (pos.qty, pos.cost_basis_cents) == (0, 0)
    assert assert_books_balance(account).cash_cents == START + 99_990 - 90_010


# --- refusals write nothing ------------------------------------------------------------------------------


def test_insufficient_cash_is_forbidden_and_writes_nothing(make_account: MakeAccount) -> None:
    account = make_account(cash=10_000)  # one share costs 10,001
    before = snapshot()
    with pytest.raises(Forbidden, match="buying power"):
        place(account, qty=1)
    with pytest.raises(Forbidden, match="buying power"):
        place(account, qty=1, type="limit", limit_price_units=1_000_100)
    with pytest.raises(Forbidden, match="buying power"):
        place(account, qty=2, type="limit", limit_price_units=900_000)
    with pytest.raises(Forbidden, match="buying power"):
        place(account, qty=1, type="stop", stop_price_units=1_100_000)
    assert snapshot() == before
    account = assert_books_balance(account)
    assert (account.cash_cents, account.reserved_cents) == (10_000, 0)


def test_client_order_id_is_unique_per_account(make_account: MakeAccount) -> None:
    first, second = make_account(), make_account()
    place(first, client_order_id="bot-42")
    before = snapshot()
    with pytest.raises(InvalidRequest, match="client_order_id must be unique"):
        place(first, client_order_id="bot-42", type="limit", limit_price_units=900_000)
    assert snapshot() == before
    assert place(second, client_order_id="bot-42").client_order_id == "bot-42"
    assert_books_balance(first)


def test_halted_asset_is_forbidden(make_asset: MakeAsset, account: Account) -> None:
    make_asset("HALT", price="10.00", halted=True)
    with pytest.raises(Forbidden, match="halted"):
        place(account, symbol="HALT")


@pytest.mark.parametrize(
    ("symbol", "fields"),
    [("NOPE", {}), ("DEAD", {"active": False}), ("FROZ", {"tradable": False})],
)
def test_unknown_or_untradable_symbol_is_invalid(
    make_asset: MakeAsset, account: Account, symbol: str, fields: dict[str, object]
) -> None:
    if fields:
        make_asset(symbol, price="10.00", **fields)
    before = snapshot()
    with pytest.raises(InvalidRequest):
        place(account, symbol=symbol)
    assert snapshot() == before


def test_no_market_data_yet_is_invalid(account: Account) -> None:
    Asset.objects.create(symbol="NEWB", name="New", sector="Tech")
    with pytest.raises(InvalidRequest, match="no market data"):
        place(account, symbol="NEWB")


def test_suspended_account_is_forbidden(account: Account) -> None:
    services.account_configure(account_id=account.pk, suspend_trade=True)
    with pytest.raises(Forbidden, match="suspended"):
        place(account)


@pytest.mark.parametrize(
    "fields",
    [
        {"qty": 0},
        {"qty": -1},
        {"qty": 1_000_001},
        {"side": "short"},
        {"type": "bracket"},
        {"time_in_force": "opg"},
        {"time_in_force": "cls"},
        {"time_in_force": "gtx"},
        {"type": "limit"},
        {"type": "market", "limit_price_units": 1_000_000},
        {"type": "stop"},
        {"type": "stop_limit", "stop_price_units": 1_000_000},
        {"type": "limit", "limit_price_units": 0},
        {"type": "trailing_stop"},
        {"type": "trailing_stop", "trail_price_units": 100, "trail_percent_units": 100},
        {"type": "trailing_stop", "trail_price_units": 100, "time_in_force": "ioc"},
        {"type": "trailing_stop", "trail_percent_units": 1_000_000},
        {"type": "market", "trail_price_units": 100},
        {"client_order_id": ""},
        {"client_order_id": "x" * 49},
        # Sub-penny prices from $1.00 up (Alpaca's SEC Rule 612 check).
        {"type": "limit", "limit_price_units": 1_000_050},
        {"type": "stop", "stop_price_units": 10_001},
        {"type": "stop_limit", "stop_price_units": 1_000_000, "limit_price_units": 999_999},
        # extended_hours only on limit day orders.
        {"extended_hours": True},
        {"type": "limit", "limit_price_units": 1_000_000, "time_in_force": "gtc", "extended_hours": True},
        {"type": "stop", "stop_price_units": 1_000_000, "time_in_force": "day", "extended_hours": True},
    ],
)
def test_malformed_orders_are_invalid_and_write_nothing(account: Account, fields: dict[str, Any]) -> None:
    before = snapshot()
    with pytest.raises(InvalidRequest):
        place(account, **fields)
    assert snapshot() == before


MISSING = "00000000-0000-0000-0000-000000000000"


def test_services_on_unknown_ids(account: Account) -> None:
    with pytest.raises(NotFound):
        place(Account(pk=MISSING))
    with pytest.raises(NotFound):
        services.order_cancel(account_id=account.pk, order_id=MISSING)
    with pytest.raises(NotFound):
        services.order_replace(account_id=account.pk, order_id=MISSING, qty=shares(2))
    with pytest.raises(NotFound):
        services.account_reset(account_id=MISSING)
    with pytest.raises(NotFound):
        services.position_close(account_id=MISSING, symbol="AAPL")


@pytest.mark.parametrize(
    "call",
    [
        lambda account: services.order_cancel(account_id=account.pk, order_id="not-a-uuid"),
        lambda account: services.order_replace(account_id=account.pk, order_id="not-a-uuid", qty=shares(2)),
        lambda account: services.account_reset(account_id="not-a-uuid"),
        lambda account: services.account_grant_cash(account_id="not-a-uuid", amount_cents=1),
        lambda account: services.account_configure(account_id="not-a-uuid", no_shorting=True),
        lambda account: services.position_close(account_id="not-a-uuid", symbol="AAPL"),
    ],
    ids=[
        "order_cancel",
        "order_replace",
        "account_reset",
        "account_grant_cash",
        "account_configure",
        "position_close",
    ],
)
def test_malformed_ids_are_not_found(account: Account, call: Callable[[Account], object]) -> None:
    # Ids come from URLs and JSON: a malformed one is a 404 like any unknown id, never a 500.
    with pytest.raises(NotFound):
        call(account)


def test_order_fill_of_a_vanished_order_returns_none() -> None:
    # The market's trigger book can outlive an order (its account deleted): no crash, no fill.
    assert services.order_fill(order_id=MISSING, price_units=1_000_000) is None


def test_sub_penny_prices_below_a_dollar_are_accepted_and_messages_are_alpacas(
    account: Account, make_asset: MakeAsset
) -> None:
    make_asset("PENY", price="0.5000")
    resting = place(account, symbol="PENY", type="limit", limit_price_units=4_321, time_in_force="day")
    assert (resting.status, resting.limit_price_units) == ("new", 4_321)
    with pytest.raises(InvalidRequest) as sub_penny:
        place(account, type="limit", limit_price_units=1_000_050)
    assert str(sub_penny.value) == (
        "invalid limit_price 100.005. sub-penny increment does not fulfill minimum pricing criteria"
    )
    with pytest.raises(InvalidRequest, match="extended hours order must be DAY limit orders"):
        place(account, extended_hours=True)
    extended = place(
        account, type="limit", limit_price_units=900_000, time_in_force="day", extended_hours=True
    )
    assert (extended.status, extended.extended_hours) == ("new", True)
    assert_books_balance(account)
