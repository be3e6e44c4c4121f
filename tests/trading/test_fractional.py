"""Fractional shares and notional orders as Alpaca takes them (docs/architecture.md, Fractional
and notional orders): sizes, Alpaca's rules, commissions, reservations, partial closes, the
fractional-short refusal and replacing a notional order.

The asset starts at a last trade of $100.00 with bid $99.99 and ask $100.01; accounts hold
$100,000 unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from pytest_django.fixtures import Settings

from tests.builders import shares
from tests.trading.test_services import (
    ASK,
    BID,
    NOW,
    START,
    MakeAsset,
    assert_books_balance,
    fresh,
    place,
    position,
    snapshot,
    tick,
)
from trading import selectors, services
from trading.errors import Forbidden, InvalidRequest
from trading.models import Account, Fill, Order
from trading.units import QTY_SCALE, holding_value_units, qty_for_value, trade_value_cents

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _aapl(settings: Settings, make_asset: MakeAsset) -> None:
    # Exact amounts below assume no commission unless a test sets one (the environment may).
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0
    make_asset("AAPL", price="100.00")


def test_a_fractional_market_buy_fills_exactly(account: Account) -> None:
    order = place(account, qty=Decimal("1.5"), time_in_force="day")
    assert (order.status, order.qty, order.filled_qty) == ("filled", shares("1.5"), shares("1.5"))
    (fill,) = Fill.objects.filter(order=order)
    assert (fill.qty, fill.value_cents) == (shares("1.5"), 15_002)  # 150.015 -> 150.02 (half-even)
    pos = position(account)
    assert pos is not None and (pos.qty, pos.cost_basis_cents) == (shares("1.5"), 15_002)
    assert assert_books_balance(account).cash_cents == START - 15_002


def test_the_smallest_unit_trades(account: Account) -> None:
    order = place(account, qty=Decimal("0.000000001"), time_in_force="day")
    assert order.filled_qty == 1
    sale = place(account, qty=Decimal("0.000000001"), side="sell", time_in_force="day")
    assert sale.status == "filled"
    assert position(account).qty == 0  # type: ignore[union-attr]
    assert_books_balance(account)


def test_a_notional_buy_is_sized_down_at_the_ask_and_never_spends_more(account: Account) -> None:
    order = place(account, qty=None, notional_cents=10_000, time_in_force="day")  # $100
    expected = qty_for_value(cents=10_000, price_units=ASK)
    assert expected == 999_900_009  # 0.999900009 share at $100.01
    assert (order.status, order.qty, order.notional_cents, order.filled_qty) == (
        "filled",
        expected,
        10_000,
        expected,
    )
    (fill,) = Fill.objects.filter(order=order)
    assert fill.value_cents == trade_value_cents(price_units=ASK, qty=expected) == 10_000
    assert assert_books_balance(account).cash_cents == START - 10_000


def test_a_notional_sell_is_sized_at_the_bid(account: Account) -> None:
    place(account, qty=2)
    sale = place(account, qty=None, notional_cents=5_000, side="sell", time_in_force="day")
    assert sale.qty == qty_for_value(cents=5_000, price_units=BID)
    assert sale.status == "filled"
    assert position(account).qty == shares(2) - sale.qty  # type: ignore[union-attr]
    # More than the position: refused, nothing written (no fractional shorts, shorting or not).
    before = snapshot()
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=None, notional_cents=50_000, side="sell", time_in_force="day")
    assert snapshot() == before
    assert_books_balance(account)


@pytest.mark.parametrize("notional_cents", [5_000_00, 10**15])  # above the limit; past 64 bits
def test_a_notional_order_is_held_to_the_size_limit(
    account: Account, settings: Settings, notional_cents: int
) -> None:
    settings.ORDER_MAX_QTY = 10
    before = snapshot()
    with pytest.raises(InvalidRequest, match="more than 10 shares"):
        place(account, qty=None, notional_cents=notional_cents, time_in_force="day")
    assert snapshot() == before
    within = place(account, qty=None, notional_cents=500_00, time_in_force="day")
    assert within.status == "filled" and within.qty <= shares(10)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"qty": Decimal("0.5"), "time_in_force": "gtc"}, "fractional orders must be day orders"),
        ({"qty": Decimal("0.5"), "time_in_force": "ioc"}, "fractional orders must be day orders"),
        ({"qty": Decimal("0.5"), "type": "stop", "stop_price_units": 900_000}, "market or limit"),
        ({"qty": Decimal("0.5"), "type": "trailing_stop", "trail_price_units": 10_000}, "market or limit"),
        ({"qty": None, "notional_cents": 99}, "at least \\$1.00"),
        (
            {"qty": None, "notional_cents": 10_000, "time_in_force": "gtc"},
            "notional orders must be day orders",
        ),
        ({"qty": None, "notional_cents": 10_000, "type": "stop", "stop_price_units": 1}, "market or limit"),
        ({"qty": 1, "notional_cents": 10_000}, "either qty or notional"),
        ({"qty": None}, "either qty or notional"),
        (
            {"qty": Decimal("0.5"), "extended_hours": True, "type": "limit", "limit_price_units": 1},
            "extended",
        ),
    ],
)
def test_alpacas_rules_for_fractional_and_notional_orders(
    account: Account, fields: dict[str, object], message: str
) -> None:
    values: dict[str, object] = {"time_in_force": "day", **fields}
    before = snapshot()
    with pytest.raises(InvalidRequest, match=message):
        place(account, **values)  # type: ignore[arg-type]
    assert snapshot() == before


def test_a_resting_notional_limit_buy_reserves_what_it_can_spend_and_its_commission(
    settings: Settings, account: Account
) -> None:
    """Sized at its limit: a fill at the limit or better never costs more than was reserved."""
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 100  # 1 cent a share, pro rata
    order = place(
        account,
        qty=None,
        notional_cents=100_000,
        type="limit",
        limit_price_units=950_000,
        time_in_force="day",
    )
    qty = qty_for_value(cents=100_000, price_units=950_000)  # 10.526315789 shares
    assert (order.status, order.qty) == ("new", qty)
    value = trade_value_cents(price_units=950_000, qty=qty)
    assert value <= 100_000
    commission = services.commission_cents(qty=qty)
    assert commission == 11  # 10.53 cents -> 11
    assert order.reserved_cents == value + commission
    assert fresh(account).reserved_cents == value + commission

    tick("AAPL", 940_000)  # ask 94.01, below the limit
    filled = services.order_fill(order_id=order.pk, price_units=940_100, now=NOW)
    assert filled is not None and filled.status == "filled" and filled.filled_qty == qty
    account = assert_books_balance(account)
    assert account.reserved_cents == 0
    assert account.cash_cents == START - trade_value_cents(price_units=940_100, qty=qty) - commission


def test_the_per_share_commission_is_pro_rata(settings: Settings, account: Account) -> None:
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 50  # half a cent a share
    assert services.commission_cents(qty=shares(1)) == 0  # 0.5 cent -> 0 (half-even)
    assert services.commission_cents(qty=shares(3)) == 2  # 1.5 cents -> 2
    assert services.commission_cents(qty=shares("0.5")) == 0
    assert services.commission_cents(qty=shares("10.5")) == 5  # 5.25 cents
    settings.COMMISSION_PER_ORDER_CENTS = 100
    assert services.commission_cents(qty=shares("0.001")) == 100


def test_a_position_closes_by_fraction_and_percentage_without_rounding(account: Account) -> None:
    place(account, qty=Decimal("2.5"), time_in_force="day")
    third = services.position_close(account_id=account.pk, symbol="AAPL", percentage=Decimal("33.333333333"))
    assert third.qty == 833_333_333  # 2.5 x 33.333333333 % rounded down to the unit
    services.position_close(account_id=account.pk, symbol="AAPL", qty=shares("0.25"))
    rest = services.position_close(account_id=account.pk, symbol="AAPL")
    assert rest.qty == shares("2.5") - 833_333_333 - shares("0.25")
    assert position(account).qty == 0  # type: ignore[union-attr]
    assert_books_balance(account)


def test_a_fractional_long_is_sold_by_a_whole_share_sell_only_to_its_size(account: Account) -> None:
    place(account, qty=Decimal("1.5"), time_in_force="day")
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(account, qty=2, side="sell")
    assert place(account, qty=1, side="sell").status == "filled"
    assert position(account).qty == shares("0.5")  # type: ignore[union-attr]


# --- no fractional shorts --------------------------------------------------------------------------


@pytest.fixture
def shorting(make_asset: MakeAsset, account: Account) -> Account:
    make_asset("SHRT", price="100.00", shortable=True)
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    return fresh(account)


def test_no_fractional_short_is_opened(shorting: Account) -> None:
    before = snapshot()
    for fields in (
        {"qty": Decimal("0.5")},
        {"qty": None, "notional_cents": 5_000},
        {"qty": Decimal("0.5"), "type": "limit", "limit_price_units": 1_100_000},
    ):
        with pytest.raises(Forbidden):
            place(shorting, symbol="SHRT", side="sell", time_in_force="day", **fields)
    assert snapshot() == before
    # A whole-share sell from a fractional long would carry it past zero, which no order does
    # (Alpaca's rule, docs/architecture.md, Short selling): refused for the quantity.
    place(shorting, symbol="SHRT", qty=Decimal("0.5"), time_in_force="day")
    with pytest.raises(
        Forbidden, match=r"insufficient qty available for order \(requested: 1, available: 0.5\)"
    ):
        place(shorting, symbol="SHRT", qty=1, side="sell")
    assert position(shorting, "SHRT").qty == shares("0.5")  # type: ignore[union-attr]


def test_a_fractional_buy_covering_a_whole_short_must_not_leave_a_fractional_short(shorting: Account) -> None:
    """Alpaca holds no fractional short: a fractional buy may not leave part of a share short,
    and no buy covers a short and goes long by the rest."""
    place(shorting, symbol="SHRT", qty=2, side="sell")
    before = snapshot()
    with pytest.raises(Forbidden, match="fractional short"):
        place(shorting, symbol="SHRT", qty=Decimal("0.5"), time_in_force="day")
    with pytest.raises(Forbidden, match="fractional short"):
        place(
            shorting,
            symbol="SHRT",
            qty=Decimal("1.5"),
            type="limit",
            limit_price_units=900_000,
            time_in_force="day",
        )
    assert snapshot() == before
    with pytest.raises(
        Forbidden, match=r"insufficient qty available for order \(requested: 2.5, available: 2\)"
    ):
        place(shorting, symbol="SHRT", qty=Decimal("2.5"), time_in_force="day")
    assert snapshot() == before
    covered = place(shorting, symbol="SHRT", qty=2, time_in_force="day")
    assert (covered.status, covered.position_intent) == ("filled", "buy_to_close")
    assert position(shorting, "SHRT").qty == 0  # type: ignore[union-attr]
    assert_books_balance(shorting)


def test_a_percentage_close_of_a_short_is_whole_shares(shorting: Account) -> None:
    place(shorting, symbol="SHRT", qty=3, side="sell")
    cover = services.position_close(account_id=shorting.pk, symbol="SHRT", percentage=Decimal("50"))
    assert cover.qty == shares(1)  # 1.5 shares, down to whole shares
    with pytest.raises(Forbidden, match="fractional short"):
        services.position_close(account_id=shorting.pk, symbol="SHRT", qty=shares("0.5"))
    assert position(shorting, "SHRT").qty == shares(-2)  # type: ignore[union-attr]


# --- replacing --------------------------------------------------------------------------------------


def test_replacing_a_notional_limit_order(account: Account) -> None:
    notional = place(
        account, qty=None, notional_cents=50_000, type="limit", limit_price_units=900_000, time_in_force="day"
    )
    # A new limit only: still $500, sized again at the new limit.
    moved = services.order_replace(
        account_id=account.pk, order_id=notional.pk, limit_price_units=800_000, now=NOW
    )
    assert (moved.notional_cents, moved.qty) == (50_000, qty_for_value(cents=50_000, price_units=800_000))
    # A qty: it becomes a qty order, with the same rules (day, fractional allowed for a limit).
    sized = services.order_replace(account_id=account.pk, order_id=moved.pk, qty=shares("2.5"), now=NOW)
    assert (sized.notional_cents, sized.qty, sized.status) == (None, shares("2.5"), "new")
    assert Order.objects.get(pk=moved.pk).status == "replaced"
    account = assert_books_balance(account)
    assert account.reserved_cents == trade_value_cents(price_units=800_000, qty=shares("2.5"))


def test_a_fractional_replacement_of_a_gtc_order_is_refused(account: Account) -> None:
    resting = place(account, qty=1, type="limit", limit_price_units=900_000)  # gtc
    before = snapshot()
    with pytest.raises(InvalidRequest, match="day orders"):
        services.order_replace(account_id=account.pk, order_id=resting.pk, qty=shares("0.5"), now=NOW)
    assert snapshot() == before
    assert shares(1) == QTY_SCALE


@pytest.mark.db_backend
def test_large_holdings_sum_without_overflowing_64_bits(
    make_asset: MakeAsset, make_account: Callable[..., Account]
) -> None:
    """900,000 shares of a $2,000 stock are 1.8 x 10^22 price units x quantity units: past a 64-bit
    integer, so SQL sums each fill's value in cents (PostgreSQL would raise "bigint out of range")."""
    make_asset("BIGP", price="2000.00", quote_size=1_000_000)  # fills at once, in one execution
    account = make_account(cash=200_000_000_000)  # $2,000,000,000
    buy = place(account, symbol="BIGP", qty=Decimal("900000.5"), time_in_force="day")
    assert buy.status == "filled"
    place(account, symbol="BIGP", qty=Decimal("0.25"), side="sell", time_in_force="day")
    summary = selectors.account_summary(account=fresh(account))
    (value,) = summary.positions
    assert value.qty == shares("900000.25")
    assert value.market_value == holding_value_units(price_units=20_000_000, qty=shares("900000.25"))
    assert value.market_value == 18_000_005_000_000  # $1,800,000,500.00 in price units
    assert value.intraday_basis != 0
    assert_books_balance(account)
