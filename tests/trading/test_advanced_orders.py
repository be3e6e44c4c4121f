"""Advanced orders (bracket, oco, oto) in the services: legs held until their entry fills, one
exit filling or ending ends the other, and what the legs hold counted exactly once.

The asset's last trade is $100.00, bid $99.99, ask $100.01; accounts start with $100,000.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.db.models import Sum

from tests.builders import shares
from trading import matching, services
from trading.errors import InvalidRequest
from trading.models import (
    OPEN_ORDER_STATUSES,
    Account,
    Asset,
    CashEntry,
    Fill,
    Order,
    OrderClass,
    OrderStatus,
    Position,
)
from trading.services import OrderRequest
from trading.units import price_to_units

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


@pytest.fixture(autouse=True)
def aapl(no_commission: None, make_asset: Callable[..., Asset]) -> Asset:
    return make_asset("AAPL", price="100.00")


def p(dollars: str) -> int:
    return price_to_units(dollars)


def place(account: Account, *, now: dt.datetime = NOW, **fields: object) -> Order:
    values: dict[str, object] = {
        "symbol": "AAPL",
        "qty": shares(10),
        "side": "buy",
        "type": "market",
        "time_in_force": "gtc",
    }
    values.update(fields)
    return services.order_place(account_id=account.pk, request=OrderRequest(**values), now=now)  # type: ignore[arg-type]


def bracket(account: Account, **fields: object) -> Order:
    values: dict[str, object] = {
        "order_class": OrderClass.BRACKET,
        "take_profit_limit_units": p("110.00"),
        "stop_loss_stop_units": p("95.00"),
    }
    values.update(fields)
    return place(account, **values)  # type: ignore[arg-type]


def oco_exit(account: Account) -> Order:
    """An oco exit of 10 shares: its take-profit at $110.00, its stop-loss leg at $95.00."""
    return place(
        account,
        side="sell",
        type="limit",
        order_class=OrderClass.OCO,
        take_profit_limit_units=p("110.00"),
        stop_loss_stop_units=p("95.00"),
    )


def legs(order: Order) -> list[Order]:
    return list(Order.objects.filter(parent=order).order_by("submitted_at", "id"))


def statuses(*orders: Order) -> list[str]:
    return [Order.objects.get(pk=order.pk).status for order in orders]


def held(account: Account) -> int:
    position = Position.objects.filter(account=account, asset__symbol="AAPL").first()
    return position.qty_held if position is not None else 0


def assert_holds_exact(account: Account) -> Account:
    """Cash matches the ledger, reserved cash is the open orders' own, and held shares are the
    open active sells', an exit pair's shares counted once."""
    account = Account.objects.get(pk=account.pk)
    ledger = CashEntry.objects.filter(account=account).aggregate(total=Sum("amount_cents"))["total"] or 0
    assert account.cash_cents == ledger
    open_orders = Order.objects.filter(account=account, status__in=OPEN_ORDER_STATUSES)
    assert account.reserved_cents == (open_orders.aggregate(total=Sum("reserved_cents"))["total"] or 0)
    assert not open_orders.filter(status=OrderStatus.HELD).exclude(reserved_cents=0).exists()
    for position in Position.objects.filter(account=account):
        sells = open_orders.filter(asset=position.asset, side="sell").exclude(status=OrderStatus.HELD)
        groups: dict[object, int] = {}
        for order in sells:
            # An oco's take-profit and its leg, or a bracket's two legs: one group, one hold.
            group = (
                order.parent_id if order.order_class == OrderClass.BRACKET else order.parent_id or order.pk
            )
            groups[group] = max(groups.get(group, 0), order.qty - order.filled_qty)
        assert position.qty_held == sum(groups.values())
        assert position.qty_held <= max(position.qty, 0) or account.shorting_enabled
    return account


# --- bracket ----------------------------------------------------------------------------------


def test_a_bracket_filling_on_placement_activates_both_legs_holding_the_shares_once(account: Account) -> None:
    entry = bracket(account)

    take_profit, stop_loss = legs(entry)
    assert entry.status == OrderStatus.FILLED
    assert (take_profit.type, take_profit.side, take_profit.limit_price_units) == (
        "limit",
        "sell",
        p("110.00"),
    )
    assert (stop_loss.type, stop_loss.side, stop_loss.stop_price_units) == ("stop", "sell", p("95.00"))
    assert statuses(take_profit, stop_loss) == ["new", "new"]
    assert {leg.order_class for leg in (take_profit, stop_loss)} == {"bracket"}
    assert take_profit.qty == stop_loss.qty == shares(10)
    assert held(account) == shares(10)
    assert_holds_exact(account)


def test_legs_wait_held_while_the_entry_rests_and_activate_when_it_fills(account: Account) -> None:
    entry = bracket(account, type="limit", limit_price_units=p("99.00"), stop_loss_stop_units=p("97.00"))

    take_profit, stop_loss = legs(entry)
    assert statuses(entry, take_profit, stop_loss) == ["new", "held", "held"]
    # Only the entry holds buying power; held legs hold nothing.
    assert Account.objects.get(pk=account.pk).reserved_cents == 99_000
    assert held(account) == 0
    assert_holds_exact(account)

    services.order_fill(order_id=entry.pk, price_units=p("98.99"), now=LATER)

    assert statuses(entry, take_profit, stop_loss) == ["filled", "new", "new"]
    assert held(account) == shares(10)
    assert assert_holds_exact(account).reserved_cents == 0


@pytest.mark.parametrize("leg_index", [0, 1])
def test_one_leg_filling_cancels_its_sibling_and_the_shares_are_released_once(
    account: Account, leg_index: int
) -> None:
    entry = bracket(account)
    pair = legs(entry)
    price = p("110.00") if leg_index == 0 else p("94.99")

    services.order_fill(order_id=pair[leg_index].pk, price_units=price, now=LATER)

    expected = ["filled", "canceled"] if leg_index == 0 else ["canceled", "filled"]
    assert statuses(*pair) == expected
    position = Position.objects.get(account=account)
    assert (position.qty, position.qty_held) == (0, 0)
    assert_holds_exact(account)


def test_a_filled_leg_is_not_filled_again_through_its_canceled_sibling(account: Account) -> None:
    entry = bracket(account)
    take_profit, stop_loss = legs(entry)
    services.order_fill(order_id=take_profit.pk, price_units=p("110.00"), now=LATER)

    assert services.order_fill(order_id=stop_loss.pk, price_units=p("94.99"), now=LATER) is None
    assert Position.objects.get(account=account).qty == 0
    assert_holds_exact(account)


def test_canceling_the_entry_cancels_its_held_legs(account: Account) -> None:
    entry = bracket(account, type="limit", limit_price_units=p("99.00"), stop_loss_stop_units=p("97.00"))

    services.order_cancel(account_id=account.pk, order_id=entry.pk, now=LATER)

    assert statuses(entry, *legs(entry)) == ["canceled", "canceled", "canceled"]
    assert assert_holds_exact(account).reserved_cents == 0


def test_canceling_an_active_leg_cancels_its_sibling_and_releases_the_shares(account: Account) -> None:
    entry = bracket(account)
    take_profit, stop_loss = legs(entry)

    services.order_cancel(account_id=account.pk, order_id=stop_loss.pk, now=LATER)

    assert statuses(take_profit, stop_loss) == ["canceled", "canceled"]
    assert held(account) == 0
    assert Position.objects.get(account=account).qty == shares(10)
    assert_holds_exact(account)


def test_cancel_all_ends_every_leg_once(account: Account) -> None:
    bracket(account)
    bracket(account, type="limit", limit_price_units=p("99.00"), stop_loss_stop_units=p("97.00"))

    services.order_cancel_all(account_id=account.pk, now=LATER)

    assert not Order.objects.filter(account=account, status__in=OPEN_ORDER_STATUSES).exists()
    assert held(account) == 0
    assert assert_holds_exact(account).reserved_cents == 0


def test_a_day_bracket_expires_with_its_legs(account: Account) -> None:
    entry = bracket(
        account,
        type="limit",
        time_in_force="day",
        limit_price_units=p("99.00"),
        stop_loss_stop_units=p("97.00"),
    )
    assert entry.expires_at is not None
    assert {leg.expires_at for leg in legs(entry)} == {entry.expires_at}

    services.orders_expire(now=entry.expires_at)

    assert statuses(entry, *legs(entry)) == ["expired", "expired", "expired"]
    assert_holds_exact(account)


def test_a_stop_limit_stop_loss(account: Account) -> None:
    entry = bracket(account, stop_loss_limit_units=p("94.50"))

    stop_loss = legs(entry)[1]
    assert (stop_loss.type, stop_loss.stop_price_units, stop_loss.limit_price_units) == (
        "stop_limit",
        p("95.00"),
        p("94.50"),
    )


def test_one_tick_crossing_both_exits_fills_one_and_the_other_finds_it_canceled(account: Account) -> None:
    """A stop-limit stop-loss that triggered on a gap below its limit rests as a sell limit under
    the take-profit: a tick above both crosses both legs at once (found on PostgreSQL by Property
    38's state machine, seed 38). The first fill cancels its sibling, whose fill then does
    nothing (None, as when a cancel won the race): the shares are sold once."""
    entry = bracket(account, stop_loss_limit_units=p("94.50"))
    pair = legs(entry)
    take_profit, stop_loss = pair

    def resting() -> list[matching.RestingOrder]:
        orders = Order.objects.filter(pk__in=[take_profit.pk, stop_loss.pk], status__in=OPEN_ORDER_STATUSES)
        return [services.order_as_resting(order) for order in orders.select_related("asset")]

    gap = matching.Quote(bid=p("93.99"), ask=p("94.01"), last=p("94.00"))
    assert matching.triggered(resting(), {"AAPL": gap}) == [
        matching.Decision(str(stop_loss.pk), matching.Action.TRIGGER)
    ]
    services.order_mark_triggered(order_id=stop_loss.pk, now=LATER)

    jump = matching.Quote(bid=p("110.49"), ask=p("110.51"), last=p("110.50"))
    decisions = matching.triggered(resting(), {"AAPL": jump})
    assert [decision.action for decision in decisions] == [matching.Action.FILL] * 2
    first, second = (
        services.order_fill(order_id=decision.order_id, price_units=p("110.49"), now=LATER)
        for decision in decisions
    )

    assert first is not None and first.status == OrderStatus.FILLED
    assert second is None
    assert sorted(statuses(*pair)) == ["canceled", "filled"]
    assert Fill.objects.filter(order__in=pair).count() == 1
    position = Position.objects.get(account=account)
    assert (position.qty, position.qty_held) == (0, 0)
    assert_holds_exact(account)


def test_replacing_a_leg_keeps_it_in_its_group_and_the_hold_once(account: Account) -> None:
    entry = bracket(account)
    take_profit, stop_loss = legs(entry)

    new_stop = services.order_replace(
        account_id=account.pk, order_id=stop_loss.pk, stop_price_units=p("96.00"), now=LATER
    )

    assert (new_stop.parent_id, new_stop.status, new_stop.stop_price_units) == (entry.pk, "new", p("96.00"))
    assert statuses(stop_loss) == ["replaced"]
    assert held(account) == shares(10)
    assert_holds_exact(account)
    services.order_fill(order_id=new_stop.pk, price_units=p("95.99"), now=LATER)
    assert statuses(take_profit, new_stop) == ["canceled", "filled"]
    assert held(account) == 0
    assert_holds_exact(account)


def test_a_partially_filled_leg_is_not_replaced_and_keeps_its_hold(account: Account) -> None:
    entry = bracket(account)
    take_profit, _ = legs(entry)
    services.order_fill(order_id=take_profit.pk, price_units=p("110.00"), qty=shares(4), now=LATER)
    take_profit.refresh_from_db()
    assert (take_profit.status, held(account)) == ("partially_filled", shares(6))

    with pytest.raises(InvalidRequest, match="partially filled leg of a bracket order cannot be replaced"):
        services.order_replace(
            account_id=account.pk, order_id=take_profit.pk, limit_price_units=p("111.00"), now=LATER
        )

    take_profit.refresh_from_db()
    assert (take_profit.status, held(account)) == ("partially_filled", shares(6))
    assert_holds_exact(account)
    services.order_cancel(account_id=account.pk, order_id=take_profit.pk, now=LATER)
    assert held(account) == 0
    assert_holds_exact(account)


def test_a_held_leg_is_replaced_held(account: Account) -> None:
    entry = bracket(account, type="limit", limit_price_units=p("99.00"), stop_loss_stop_units=p("97.00"))
    take_profit = legs(entry)[0]

    new = services.order_replace(
        account_id=account.pk, order_id=take_profit.pk, limit_price_units=p("105.00"), now=LATER
    )
    assert new.status == OrderStatus.HELD

    services.order_fill(order_id=entry.pk, price_units=p("98.99"), now=LATER)
    assert [leg.status for leg in legs(entry)] == ["replaced", "new", "new"]
    assert held(account) == shares(10)
    assert_holds_exact(account)


def test_a_legs_qty_and_a_waiting_entry_cannot_be_replaced(account: Account) -> None:
    entry = bracket(account, type="limit", limit_price_units=p("99.00"), stop_loss_stop_units=p("97.00"))
    with pytest.raises(InvalidRequest, match="entry of a bracket order cannot be replaced"):
        services.order_replace(account_id=account.pk, order_id=entry.pk, limit_price_units=p("98.00"))
    with pytest.raises(InvalidRequest, match="qty"):
        services.order_replace(account_id=account.pk, order_id=legs(entry)[0].pk, qty=shares(5))


# --- oto and oco ------------------------------------------------------------------------------


def test_an_oto_entry_activates_its_one_leg(account: Account) -> None:
    entry = place(account, order_class=OrderClass.OTO, stop_loss_stop_units=p("95.00"))

    (stop_loss,) = legs(entry)
    assert (stop_loss.type, stop_loss.status, stop_loss.order_class) == ("stop", "new", "oto")
    assert held(account) == shares(10)
    services.order_cancel(account_id=account.pk, order_id=stop_loss.pk, now=LATER)
    assert held(account) == 0
    assert_holds_exact(account)


def test_an_oco_exit_holds_its_shares_once_and_one_fill_cancels_the_other(account: Account) -> None:
    place(account)  # 10 shares to exit
    take_profit = oco_exit(account)

    (stop_loss,) = legs(take_profit)
    assert (take_profit.limit_price_units, take_profit.status, take_profit.order_class) == (
        p("110.00"),
        "new",
        "oco",
    )
    assert (stop_loss.side, stop_loss.type, stop_loss.status) == ("sell", "stop", "new")
    assert held(account) == shares(10)
    assert_holds_exact(account)

    services.order_fill(order_id=stop_loss.pk, price_units=p("94.99"), now=LATER)

    assert statuses(take_profit, stop_loss) == ["canceled", "filled"]
    assert (Position.objects.get(account=account).qty, held(account)) == (0, 0)
    assert_holds_exact(account)


def test_canceling_an_oco_cancels_both(account: Account) -> None:
    place(account)
    take_profit = oco_exit(account)

    services.order_cancel(account_id=account.pk, order_id=take_profit.pk, now=LATER)

    assert statuses(take_profit, *legs(take_profit)) == ["canceled", "canceled"]
    assert held(account) == 0
    assert_holds_exact(account)


def test_replacing_an_ocos_take_profit_moves_its_leg(account: Account) -> None:
    place(account)
    take_profit = oco_exit(account)
    (stop_loss,) = legs(take_profit)

    new = services.order_replace(
        account_id=account.pk, order_id=take_profit.pk, limit_price_units=p("108.00"), now=LATER
    )

    assert legs(new) == [stop_loss]
    assert held(account) == shares(10)
    services.order_fill(order_id=new.pk, price_units=p("108.00"), now=LATER)
    assert statuses(new, stop_loss) == ["filled", "canceled"]
    assert held(account) == 0
    assert_holds_exact(account)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"take_profit_limit_units": p("100.01")}, "take_profit.limit_price must be >= base_price + 0.01"),
        ({"stop_loss_stop_units": p("100.01")}, "stop_loss.stop_price must be <= base_price - 0.01"),
        ({"time_in_force": "ioc"}, "bracket orders must be day or gtc orders"),
        ({"stop_loss_stop_units": None}, "bracket orders need both take_profit and stop_loss"),
        (
            {"type": "trailing_stop", "trail_price_units": p("1.00")},
            "must be market, limit, stop or stop_limit",
        ),
        ({"take_profit_limit_units": p("110.001")}, "invalid take_profit.limit_price 110.001"),
        ({"qty": shares(1) // 2, "time_in_force": "day"}, "whole-share"),
    ],
)
def test_bracket_validation(account: Account, fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace(".", r"\.").replace("+", r"\+")):
        bracket(account, **fields)
    assert not Order.objects.exists()


def test_a_sell_brackets_take_profit_is_below_and_its_stop_above_the_limit(account: Account) -> None:
    with pytest.raises(InvalidRequest, match=r"take_profit\.limit_price must be <= base_price - 0\.01"):
        place(
            account,
            side="sell",
            type="limit",
            limit_price_units=p("100.00"),
            order_class=OrderClass.BRACKET,
            take_profit_limit_units=p("100.00"),
            stop_loss_stop_units=p("105.00"),
        )


def test_simple_orders_take_no_legs_and_oto_takes_one(account: Account) -> None:
    with pytest.raises(InvalidRequest, match="only for bracket, oco and oto"):
        place(account, take_profit_limit_units=p("110.00"))
    with pytest.raises(InvalidRequest, match="either take_profit or stop_loss"):
        place(
            account,
            order_class=OrderClass.OTO,
            take_profit_limit_units=p("110.00"),
            stop_loss_stop_units=p("95.00"),
        )
    with pytest.raises(InvalidRequest, match=r"stop_loss\.stop_price must be < take_profit\.limit_price"):
        place(
            account,
            side="sell",
            type="limit",
            order_class=OrderClass.OCO,
            take_profit_limit_units=p("95.00"),
            stop_loss_stop_units=p("110.00"),
        )


# --- shorts -----------------------------------------------------------------------------------


def test_a_short_brackets_buy_back_legs_hold_the_short_once(account: Account, aapl: Asset) -> None:
    Asset.objects.filter(pk=aapl.pk).update(shortable=True)
    services.account_configure(account_id=account.pk, no_shorting=False)

    entry = bracket(
        account, side="sell", take_profit_limit_units=p("90.00"), stop_loss_stop_units=p("105.00")
    )

    take_profit, stop_loss = legs(entry)
    assert entry.status == OrderStatus.FILLED
    assert (take_profit.side, take_profit.position_intent, stop_loss.position_intent) == (
        "buy",
        "buy_to_close",
        "buy_to_close",
    )
    assert statuses(take_profit, stop_loss) == ["new", "new"]
    position = Position.objects.get(account=account)
    assert (position.qty, position.qty_held) == (-shares(10), shares(10))
    # The legs hold the short, not cash: only the short's own margin is reserved.
    assert take_profit.reserved_cents == stop_loss.reserved_cents == 0

    services.order_fill(order_id=stop_loss.pk, price_units=p("105.01"), now=LATER)

    assert statuses(take_profit, stop_loss) == ["canceled", "filled"]
    position.refresh_from_db()
    assert (position.qty, position.qty_held) == (0, 0)
    assert Account.objects.get(pk=account.pk).reserved_cents == 0


def test_a_bracket_opens_and_an_oco_closes(account: Account) -> None:
    place(account)  # long 10
    with pytest.raises(InvalidRequest, match="must open or add to a position"):
        bracket(account, side="sell", take_profit_limit_units=p("90.00"), stop_loss_stop_units=p("105.00"))
    with pytest.raises(InvalidRequest, match="oco orders are exit orders"):
        place(
            account,
            side="buy",
            type="limit",
            order_class=OrderClass.OCO,
            take_profit_limit_units=p("90.00"),
            stop_loss_stop_units=p("105.00"),
        )
    assert Order.objects.count() == 1
