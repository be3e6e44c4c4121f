"""Bracket, oco and oto orders through ``/v2/orders``, read back with alpaca-py's models."""

from __future__ import annotations

import pytest
from alpaca.trading.enums import OrderClass, OrderStatus, OrderType
from alpaca.trading.models import Order as AlpacaOrder

from tests.trading.api_support import assert_alpaca_error, key_client, post_order
from trading import services
from trading.models import Account, Asset, Order

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(account: Account) -> object:
    return key_client(account)


BRACKET = {
    "symbol": "AAPL",
    "qty": 10,
    "type": "limit",
    "limit_price": "99.00",
    "time_in_force": "gtc",
    "order_class": "bracket",
    "take_profit": {"limit_price": "110"},
    "stop_loss": {"stop_price": "95", "limit_price": "94.5"},
}


def test_a_bracket_is_answered_with_its_held_legs(client, asset: Asset) -> None:
    response = post_order(client, **BRACKET)

    assert response.status_code == 200, response.content
    order = AlpacaOrder(**response.json())
    assert (order.order_class, order.status, order.limit_price) == (
        OrderClass.BRACKET,
        OrderStatus.NEW,
        "99.00",
    )
    assert order.legs is not None
    take_profit, stop_loss = order.legs
    assert (take_profit.order_type, take_profit.side.value, take_profit.limit_price) == (
        OrderType.LIMIT,
        "sell",
        "110.00",
    )
    assert (stop_loss.order_type, stop_loss.stop_price, stop_loss.limit_price) == (
        OrderType.STOP_LIMIT,
        "95.00",
        "94.50",
    )
    assert {leg.status for leg in order.legs} == {OrderStatus.HELD}
    assert {leg.order_class for leg in order.legs} == {OrderClass.BRACKET}
    assert all(leg.legs is None for leg in order.legs)
    again = AlpacaOrder(**client.get(f"/v2/orders/{order.id}").json())
    assert again.legs is not None and [leg.id for leg in again.legs] == [take_profit.id, stop_loss.id]


def test_orders_list_legs_on_their_own_unless_nested(client, asset: Asset) -> None:
    entry = post_order(client, **BRACKET).json()
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="90", time_in_force="gtc")

    flat = client.get("/v2/orders?status=open").json()
    assert len(flat) == 4
    assert all(order["legs"] is None for order in flat)
    nested = client.get("/v2/orders?status=open&nested=true").json()
    assert len(nested) == 2
    (shown,) = [order for order in nested if order["id"] == entry["id"]]
    assert [leg["id"] for leg in shown["legs"]] == [leg["id"] for leg in entry["legs"]]
    assert [AlpacaOrder(**order) for order in nested]


def test_a_filled_entry_with_open_legs_is_open_when_nested(client, asset: Asset, account: Account) -> None:
    body = {**BRACKET, "type": "market", "limit_price": None}
    entry = post_order(client, **body).json()

    assert Order.objects.get(pk=entry["id"]).status == "filled"
    nested = client.get("/v2/orders?status=open&nested=true").json()
    assert [order["id"] for order in nested] == [entry["id"]]
    assert [leg["status"] for leg in nested[0]["legs"]] == ["new", "new"]
    assert client.get("/v2/orders?status=closed&nested=true").json() == []


def test_an_oco_needs_no_limit_price_of_its_own(client, asset: Asset, account: Account) -> None:
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=10 * 10**9, side="buy", type="market", time_in_force="day"
        ),
    )
    response = post_order(
        client,
        symbol="AAPL",
        qty=10,
        side="sell",
        type="limit",
        time_in_force="gtc",
        order_class="oco",
        take_profit={"limit_price": "110"},
        stop_loss={"stop_price": "95"},
    )

    order = AlpacaOrder(**response.json())
    assert (order.order_class, order.limit_price, order.status) == (OrderClass.OCO, "110.00", OrderStatus.NEW)
    assert order.legs is not None
    (stop_loss,) = order.legs
    assert (stop_loss.order_type, stop_loss.stop_price, stop_loss.status) == (
        OrderType.STOP,
        "95.00",
        OrderStatus.NEW,
    )


def test_a_leg_is_replaced_and_canceling_the_entry_cancels_the_legs(client, asset: Asset) -> None:
    entry = post_order(client, **BRACKET).json()
    stop_id = entry["legs"][1]["id"]

    replaced = client.patch(f"/v2/orders/{stop_id}", {"stop_price": "96"}, format="json")
    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["stop_price"], replaced.json()["status"]) == ("96.00", "held")
    assert client.delete(f"/v2/orders/{entry['id']}").status_code == 204

    shown = client.get(f"/v2/orders/{entry['id']}").json()
    assert shown["status"] == "canceled"
    assert [leg["status"] for leg in shown["legs"]] == ["canceled", "replaced", "canceled"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"take_profit": {"limit_price": "98.99"}}, "take_profit.limit_price must be >= base_price + 0.01"),
        ({"stop_loss": {"stop_price": "99"}}, "stop_loss.stop_price must be <= base_price - 0.01"),
        ({"time_in_force": "ioc"}, "bracket orders must be day or gtc orders"),
        ({"stop_loss": None}, "bracket orders need both take_profit and stop_loss"),
        ({"stop_loss": {"limit_price": "94"}}, "stop_loss.stop_price"),
    ],
)
def test_bracket_refusals_are_422_in_alpacas_words(
    client, asset: Asset, changes: dict[str, object], message: str
) -> None:
    body = assert_alpaca_error(post_order(client, **{**BRACKET, **changes}), 422)
    assert message in body["message"]
    assert not Order.objects.exists()


def test_a_market_entrys_base_price_is_the_ask(client, asset: Asset) -> None:
    # The ask is 100.01: a take-profit at 100.01 is no profit.
    body = {**BRACKET, "type": "market", "limit_price": None, "take_profit": {"limit_price": "100.01"}}
    message = assert_alpaca_error(post_order(client, **body), 422)["message"]
    assert message == "take_profit.limit_price must be >= base_price + 0.01"
