"""``/v2/positions``: valuation, closing, and the constant query count (Property 2)."""

from __future__ import annotations

import datetime as dt

import pytest
from alpaca.trading.enums import OrderSide, OrderStatus, PositionSide
from alpaca.trading.models import ClosePositionResponse, Order as AlpacaOrder, Position as AlpacaPosition
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pydantic import TypeAdapter

from tests.builders import set_quote, shares
from tests.clock import ManualClock, boundary_instants, new_york
from tests.trading.api_support import (
    MakeAsset,
    assert_alpaca_error,
    buy,
    key_client,
    post_order,
)
from trading import calendar, services
from trading.api.serializers import PositionSerializer
from trading.models import Account, Asset, CashEntry, DailyBar, Order, Position, StockPriceHistory

# A stopped clock: "yesterday" must not move between a test's setup and its requests.
pytestmark = [pytest.mark.django_db, pytest.mark.time_machine(new_york(2026, 3, 4, 15, 0), tick=False)]


@pytest.fixture
def client(account: Account) -> object:
    return key_client(account)


def _yesterday_close(symbol: str, close_units: int) -> None:
    start = calendar.day_start(calendar.trading_day_of(timezone.now()) - dt.timedelta(days=1))
    DailyBar.objects.create(
        symbol=symbol, start=start, open_units=close_units, high_units=close_units, low_units=close_units,
        close_units=close_units, volume=1, trade_count=1, vwap_units=close_units,
    )  # fmt: skip


@boundary_instants()
def test_position_parses_and_is_valued_at_the_last_trade(now: dt.datetime, asset: Asset) -> None:
    # Opened an hour ago: before a New York midnight for some of the instants, after it for others.
    user = get_user_model().objects.create_user(username="valued", password="pw-123456!")
    client = key_client(services.account_open(user=user, now=now - dt.timedelta(hours=1)))
    _yesterday_close("AAPL", 950_000)
    buy(client, "AAPL", 10)  # at 100.01
    set_quote("AAPL", price="102.00")

    body = client.get("/v2/positions/AAPL").json()

    position = AlpacaPosition(**body)
    assert set(body) == set(PositionSerializer().fields)
    assert position.side == PositionSide.LONG
    assert position.qty == "10" and position.qty_available == "10"
    assert position.avg_entry_price == "100.01"
    assert position.cost_basis == "1000.10"
    assert position.current_price == "102.00"
    assert position.market_value == "1020.00"
    assert position.unrealized_pl == "19.90"
    assert position.unrealized_plpc == "0.019898"
    assert position.lastday_price == "95.00"
    assert position.change_today == "0.073684"
    # Bought today: the day's gain is measured from the purchase, not yesterday's close.
    assert position.unrealized_intraday_pl == "19.90"
    assert position.exchange.value == "NYSE" and position.asset_class.value == "us_equity"


def test_position_by_asset_id_and_the_list(client, make_asset: MakeAsset) -> None:
    aapl = make_asset("AAPL")
    make_asset("MSFT", price="400.00")
    buy(client, "MSFT", 1)
    buy(client, "AAPL", 2)

    assert AlpacaPosition(**client.get(f"/v2/positions/{aapl.id}").json()).symbol == "AAPL"
    listed = TypeAdapter(list[AlpacaPosition]).validate_python(client.get("/v2/positions").json())
    assert [position.symbol for position in listed] == ["AAPL", "MSFT"]


def test_qty_available_excludes_shares_held_by_open_sells(client, asset: Asset) -> None:
    buy(client, "AAPL", 10)
    post_order(client, symbol="AAPL", qty=4, side="sell", type="limit", limit_price="200")
    assert client.get("/v2/positions/AAPL").json()["qty_available"] == "6"


def test_a_position_not_held_is_404(client, asset: Asset) -> None:
    assert_alpaca_error(client.get("/v2/positions/AAPL"), 404)
    assert_alpaca_error(client.delete("/v2/positions/AAPL"), 404)
    assert_alpaca_error(client.get("/v2/positions/NOPE"), 404)


def test_close_by_qty_then_percentage_then_the_rest(client, asset: Asset, account: Account) -> None:
    buy(client, "AAPL", 10)

    by_qty = AlpacaOrder(**client.delete("/v2/positions/AAPL", QUERY_STRING="qty=4").json())
    assert by_qty.side == OrderSide.SELL and by_qty.qty == "4"
    assert by_qty.status == OrderStatus.NEW  # as accepted, as POST /v2/orders answers
    by_qty = AlpacaOrder(**client.get(f"/v2/orders/{by_qty.id}").json())
    assert by_qty.status == OrderStatus.FILLED and by_qty.filled_avg_price == "99.99"
    assert Position.objects.get(account=account).qty == shares(6)

    by_percent = AlpacaOrder(**client.delete("/v2/positions/AAPL?percentage=25").json())
    assert by_percent.qty == "1.5"  # a quarter of 6, not rounded to whole shares

    by_fraction = AlpacaOrder(**client.delete("/v2/positions/AAPL?qty=0.25").json())
    assert by_fraction.qty == "0.25"
    assert client.get(f"/v2/orders/{by_fraction.id}").json()["filled_qty"] == "0.25"
    assert client.get("/v2/positions/AAPL").json()["qty"] == "4.25"

    rest = AlpacaOrder(**client.delete(f"/v2/positions/{asset.id}").json())
    assert rest.qty == "4.25"
    assert client.get("/v2/positions").json() == []


def test_close_refuses_bad_amounts(client, asset: Asset, account: Account) -> None:
    buy(client, "AAPL", 10)
    bad = (
        "qty=11",
        "qty=0",
        "percentage=150",
        "percentage=0",
        "qty=1.0000000001",
        "qty=1&percentage=5",
        "qty=10.5",
    )
    for query in bad:
        response = client.delete(f"/v2/positions/AAPL?{query}")
        assert response.status_code in (403, 422), query
        assert_alpaca_error(response, response.status_code)
    assert Position.objects.get(account=account).qty == shares(10)


def test_close_all_answers_207_and_cancels_orders_first(
    client, make_asset: MakeAsset, account: Account
) -> None:
    make_asset("AAPL")
    make_asset("MSFT", price="400.00")
    buy(client, "AAPL", 2)
    buy(client, "MSFT", 1)
    post_order(client, symbol="AAPL", qty=2, side="sell", type="limit", limit_price="500")

    # alpaca-py sends DELETE parameters in the query string, booleans as True/False.
    response = client.delete("/v2/positions?cancel_orders=True")

    assert response.status_code == 207
    results = TypeAdapter(list[ClosePositionResponse]).validate_python(response.json())
    assert {result.symbol for result in results} == {"AAPL", "MSFT"}
    assert {result.status for result in results} == {200}
    assert all(isinstance(result.body, AlpacaOrder) for result in results)
    assert client.get("/v2/positions").json() == []
    assert not Order.objects.filter(account=account, status="new").exists()


def test_close_all_reports_a_position_it_cannot_close(client, make_asset: MakeAsset) -> None:
    make_asset("AAPL")
    make_asset("MSFT", price="400.00")
    buy(client, "AAPL", 2)
    buy(client, "MSFT", 1)
    post_order(client, symbol="AAPL", qty=2, side="sell", type="limit", limit_price="500")

    response = client.delete("/v2/positions")  # open sells keep holding AAPL

    results = {
        result.symbol: result
        for result in TypeAdapter(list[ClosePositionResponse]).validate_python(response.json())
    }
    assert results["MSFT"].status == 200
    assert results["AAPL"].status == 403
    assert results["AAPL"].body.code == 40310000
    assert [p["symbol"] for p in client.get("/v2/positions").json()] == ["AAPL"]


def _holdings(account: Account, count: int) -> None:
    """``count`` positions with a quote and yesterday's close each, in four bulk inserts."""
    assets = Asset.objects.bulk_create(
        Asset(symbol=f"S{i:04d}", name=f"Stock {i}", sector="Test") for i in range(count)
    )
    now = timezone.now()
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=a.symbol, seq=1, price_units=1_000_000, size=1, bid_units=999_900, bid_size=1,
            ask_units=1_000_100, ask_size=1, recorded_at=now,
        )
        for a in assets
    )  # fmt: skip
    start = calendar.day_start(calendar.trading_day_of(now) - dt.timedelta(days=1))
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol=a.symbol, start=start, open_units=1, high_units=1, low_units=1, close_units=990_000,
            volume=1, trade_count=1, vwap_units=1,
        )
        for a in assets
    )  # fmt: skip
    Position.objects.bulk_create(
        Position(account=account, asset=a, qty=shares(5), cost_basis_cents=50_000) for a in assets
    )


def _queries(client, path: str, expected_items: int | None = None) -> int:
    client.get(path)  # warm the API-key cache so both sizes are measured alike
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    if expected_items is not None:
        assert len(response.json()) == expected_items
    return len(captured)


@pytest.mark.parametrize("path", ["/v2/positions", "/v2/account"])
def test_property_2_query_count_does_not_grow_with_holdings(
    l1_clock: ManualClock, make_account, path: str
) -> None:
    """Property 2: the portfolio reads take the same number of queries for 1 and 200 holdings."""
    small, large = make_account(), make_account()
    _holdings(small, 1)
    Asset.objects.filter(symbol="S0000").update(symbol="ONE")
    StockPriceHistory.objects.filter(symbol="S0000").update(symbol="ONE")
    DailyBar.objects.filter(symbol="S0000").update(symbol="ONE")
    _holdings(large, 200)
    small_client, large_client = key_client(small), key_client(large)

    items = {"/v2/positions": (1, 200)}.get(path, (None, None))
    small_count = _queries(small_client, path, items[0])
    large_count = _queries(large_client, path, items[1])

    assert small_count == large_count
    # the account with its book (trading/book.py), the quotes (database: Redis has none)
    assert small_count == 2


def test_property_2_large_portfolio_values_add_up(make_account) -> None:
    """Property 2: all 200 holdings are priced from the one batched quote lookup."""
    account = make_account()
    # Held since before today began, so last_equity values them at yesterday's close.
    two_days_ago = timezone.now() - dt.timedelta(days=2)
    Account.objects.filter(pk=account.pk).update(reset_at=two_days_ago)
    CashEntry.objects.filter(account=account).update(created_at=two_days_ago)
    account.refresh_from_db()
    _holdings(account, 200)
    body = key_client(account).get("/v2/account").json()
    assert body["long_market_value"] == "100000.00"  # 200 x 5 x 100.00
    assert body["last_equity"] == f"{100_000 + 200 * 5 * 99:.2f}"
