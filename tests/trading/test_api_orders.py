"""``/v2/orders`` through the real stack (auth, parsing, services, database), read back with
alpaca-py's models."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, OrderType, TimeInForce
from alpaca.trading.models import Order as AlpacaOrder
from alpaca.trading.requests import CancelOrderResponse
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydantic import TypeAdapter

from tests.builders import set_quote
from tests.clock import ManualClock
from tests.trading.api_support import (
    MakeAccount,
    MakeAsset,
    assert_alpaca_error,
    buy,
    key_client,
    post_order,
)
from trading.api.serializers import OrderSerializer
from trading.models import Account, Asset, Order, OrderStatus as Status

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(account: Account) -> object:
    return key_client(account)


def now_of(client, response) -> AlpacaOrder:
    """The order as GET /v2/orders/{id} shows it now (POST answers it as accepted)."""
    return AlpacaOrder(**client.get(f"/v2/orders/{response.json()['id']}").json())


def test_market_buy_fills_at_the_ask(client, asset: Asset, account: Account) -> None:
    response = post_order(client, symbol="AAPL", qty=10)

    assert response.status_code == 200
    # Alpaca's lifecycle: POST answers the order as accepted ("new", nothing filled yet); the
    # fill is on trade_updates and in every read from then on.
    accepted = AlpacaOrder(**response.json())
    assert (accepted.status, accepted.filled_qty, accepted.filled_at) == (OrderStatus.NEW, "0", None)
    assert accepted.filled_avg_price is None
    order = now_of(client, response)
    assert order.status == OrderStatus.FILLED
    assert order.side == OrderSide.BUY
    assert order.order_class == OrderClass.SIMPLE
    assert order.order_type == OrderType.MARKET == order.type
    assert order.filled_avg_price == "100.01"
    assert order.qty == "10" and order.filled_qty == "10"
    assert order.filled_at is not None and order.filled_at.tzinfo is not None
    account.refresh_from_db()
    assert account.cash_cents == 10_000_000 - 100_010


def test_market_sell_fills_at_the_bid(client, asset: Asset, account: Account) -> None:
    buy(client, "AAPL", 10)
    set_quote("AAPL", price="110.00")

    order = now_of(client, post_order(client, symbol="AAPL", qty=4, side="sell"))

    assert order.status == OrderStatus.FILLED
    assert order.filled_avg_price == "109.99"
    account.refresh_from_db()
    assert account.cash_cents == 10_000_000 - 100_010 + 4 * 10_999


def test_every_order_key_alpaca_py_reads_is_sent(client, asset: Asset) -> None:
    body = buy(client, "AAPL", 1)

    # Every field of the SDK's model, optional ones included: older SDKs required more of them.
    assert set(AlpacaOrder.model_fields) <= set(body)
    assert set(body) == set(OrderSerializer().fields)
    assert body["asset_class"] == "us_equity"
    assert body["notional"] is None and body["legs"] is None
    assert body["created_at"].endswith("Z")


@pytest.mark.parametrize("qty", [3, "3", 3.0, "3.0"])
def test_qty_may_be_a_number_or_a_string(client, asset: Asset, qty: object) -> None:
    assert AlpacaOrder(**post_order(client, symbol="aapl", qty=qty).json()).qty == "3"


def test_limit_order_rests_and_reserves_buying_power(client, asset: Asset, account: Account) -> None:
    response = post_order(
        client, symbol="AAPL", qty=5, type="limit", limit_price="95.50", time_in_force="gtc"
    )

    order = AlpacaOrder(**response.json())
    assert order.status == OrderStatus.NEW
    assert order.limit_price == "95.50"
    assert order.filled_avg_price is None and order.filled_at is None
    account_body = client.get("/v2/account").json()
    assert account_body["cash"] == "100000.00"
    assert account_body["buying_power"] == "99522.50"


def test_limit_price_may_be_a_json_number(client, asset: Asset) -> None:
    order = AlpacaOrder(**post_order(client, symbol="AAPL", qty=1, type="limit", limit_price=95.25).json())
    assert order.limit_price == "95.25"


def test_marketable_limit_fills_at_the_quote(client, asset: Asset) -> None:
    order = now_of(client, post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="101"))
    assert order.status == OrderStatus.FILLED
    assert order.filled_avg_price == "100.01"


def test_stop_and_trailing_stop_orders_round_trip(client, asset: Asset) -> None:
    buy(client, "AAPL", 10)
    stop = AlpacaOrder(
        **post_order(client, symbol="AAPL", qty=2, side="sell", type="stop", stop_price="90").json()
    )
    trailing = AlpacaOrder(
        **post_order(
            client, symbol="AAPL", qty=2, side="sell", type="trailing_stop", trail_percent="1.5"
        ).json()
    )

    assert stop.status == OrderStatus.NEW and stop.stop_price == "90.00"
    assert trailing.type == OrderType.TRAILING_STOP
    assert trailing.trail_percent == "1.50"
    assert trailing.hwm == "100.00"


def test_cancel_answers_204_then_422(client, asset: Asset, account: Account) -> None:
    order_id = post_order(client, symbol="AAPL", qty=5, type="limit", limit_price="90").json()["id"]

    first = client.delete(f"/v2/orders/{order_id}")
    assert first.status_code == 204
    assert first.content == b""
    second = client.delete(f"/v2/orders/{order_id}")
    assert_alpaca_error(second, 422)

    canceled = AlpacaOrder(**client.get(f"/v2/orders/{order_id}").json())
    assert canceled.status == OrderStatus.CANCELED and canceled.canceled_at is not None
    account.refresh_from_db()
    assert account.reserved_cents == 0


def test_get_by_client_order_id(client, asset: Asset) -> None:
    placed = post_order(client, symbol="AAPL", qty=1, client_order_id="my-bot-1").json()

    found = client.get("/v2/orders:by_client_order_id", {"client_order_id": "my-bot-1"})
    assert AlpacaOrder(**found.json()).id == uuid.UUID(placed["id"])
    assert_alpaca_error(client.get("/v2/orders:by_client_order_id", {"client_order_id": "nope"}), 404)
    assert_alpaca_error(client.get("/v2/orders:by_client_order_id"), 422)


def test_duplicate_client_order_id_is_refused(client, asset: Asset, account: Account) -> None:
    post_order(client, symbol="AAPL", qty=1, client_order_id="dup")
    cash_before = Account.objects.get(pk=account.pk).cash_cents

    assert_alpaca_error(post_order(client, symbol="AAPL", qty=1, client_order_id="dup"), 422)
    assert Order.objects.filter(account=account).count() == 1
    assert Account.objects.get(pk=account.pk).cash_cents == cash_before


def test_insufficient_buying_power_is_403(client, asset: Asset, account: Account) -> None:
    body = assert_alpaca_error(post_order(client, symbol="AAPL", qty=100_000), 403)
    assert body["code"] == 40310000
    assert not Order.objects.filter(account=account).exists()


def test_cancel_all_answers_207_with_each_order(client, asset: Asset, account: Account) -> None:
    ids = {
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price=p).json()["id"] for p in (90, 91)
    }
    buy(client, "AAPL", 1)

    response = client.delete("/v2/orders")

    assert response.status_code == 207
    results = TypeAdapter(list[CancelOrderResponse]).validate_python(response.json())
    assert {str(result.id) for result in results} == ids
    assert {result.status for result in results} == {200}
    assert all(AlpacaOrder(**result.body).status == OrderStatus.CANCELED for result in results if result.body)
    assert not Order.objects.filter(account=account, status=Status.NEW).exists()


def test_list_filters_by_status_side_symbol_and_time(client, make_asset: MakeAsset, account: Account) -> None:
    make_asset("AAPL")
    make_asset("MSFT", price="400.00")
    filled = buy(client, "AAPL", 1)
    resting = post_order(client, symbol="MSFT", qty=1, type="limit", limit_price="300").json()
    sell = post_order(client, symbol="AAPL", qty=1, side="sell", type="limit", limit_price="500").json()

    def ids(**params: object) -> list[str]:
        response = client.get("/v2/orders", params)
        assert response.status_code == 200, response.content
        return [str(order.id) for order in TypeAdapter(list[AlpacaOrder]).validate_python(response.json())]

    assert ids() == [sell["id"], resting["id"]]
    assert ids(status="closed") == [filled["id"]]
    assert ids(status="all", direction="asc") == [filled["id"], resting["id"], sell["id"]]
    assert ids(status="all", limit=1) == [sell["id"]]
    assert ids(status="all", side="sell") == [sell["id"]]
    assert ids(status="all", symbols="MSFT,TSLA") == [resting["id"]]
    assert ids(status="all", nested="True") == [sell["id"], resting["id"], filled["id"]]
    later = (timezone.now() + dt.timedelta(minutes=1)).isoformat()
    assert ids(status="all", after=later) == []
    assert len(ids(status="all", until=later)) == 3


def test_list_limit_is_capped_at_500(client, asset: Asset) -> None:
    """Property 3: a page never holds more than the maximum, whatever the limit asked for."""
    response = client.get("/v2/orders", {"status": "all", "limit": 10_000})
    assert response.status_code == 200
    assert_alpaca_error(client.get("/v2/orders", {"limit": 0}), 422)


def test_replace_creates_a_new_order_and_links_both(client, asset: Asset, account: Account) -> None:
    old_id = post_order(
        client, symbol="AAPL", qty=5, type="limit", limit_price="90", time_in_force="gtc"
    ).json()["id"]

    response = client.patch(f"/v2/orders/{old_id}", {"qty": "7", "limit_price": 91.5}, format="json")

    assert response.status_code == 200, response.content
    new = AlpacaOrder(**response.json())
    assert new.qty == "7" and new.limit_price == "91.50"
    assert str(new.replaces) == old_id
    old = AlpacaOrder(**client.get(f"/v2/orders/{old_id}").json())
    assert old.status == OrderStatus.REPLACED
    assert old.replaced_by == new.id and old.replaced_at is not None
    account.refresh_from_db()
    assert account.reserved_cents == 7 * 9150


def test_another_accounts_order_is_not_found(client, asset: Asset, make_account: MakeAccount) -> None:
    stranger = key_client(make_account())
    order_id = post_order(stranger, symbol="AAPL", qty=1, type="limit", limit_price="90").json()["id"]

    assert_alpaca_error(client.get(f"/v2/orders/{order_id}"), 404)
    assert_alpaca_error(client.delete(f"/v2/orders/{order_id}"), 404)
    assert_alpaca_error(client.patch(f"/v2/orders/{order_id}", {"qty": 2}, format="json"), 404)
    assert Order.objects.get(pk=order_id).status == Status.NEW
    # The same message as for an id that never existed: nothing leaks.
    assert client.get(f"/v2/orders/{order_id}").json() == client.get(f"/v2/orders/{uuid.uuid4()}").json()


def test_ioc_that_cannot_fill_is_canceled(client, asset: Asset) -> None:
    response = post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="ioc")
    assert AlpacaOrder(**response.json()).status == OrderStatus.NEW  # as accepted
    order = now_of(client, response)
    assert order.status == OrderStatus.CANCELED
    assert order.time_in_force == TimeInForce.IOC


def test_property_2_order_list_query_count_does_not_grow(
    l1_clock: ManualClock, client, asset: Asset, account: Account
) -> None:
    """Property 2: listing 1 or 60 orders (with replaced ones linked) takes the same queries."""

    def queries() -> int:
        client.get("/v2/orders", {"status": "all", "limit": 500})  # warm the API-key cache
        with CaptureQueriesContext(connection) as captured:
            response = client.get("/v2/orders", {"status": "all", "limit": 500})
        assert response.status_code == 200
        return len(captured)

    first = post_order(
        client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc"
    ).json()
    one = queries()
    client.patch(f"/v2/orders/{first['id']}", {"qty": 2}, format="json")
    for _ in range(30):
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
        buy(client, "AAPL", 1)

    # The account (API key cached) with the orders and their links: one statement
    # (PreparedQuery.run_joined).
    assert queries() == one == 1
