"""Every trading call alpaca-py's TradingClient makes, against a real gunicorn server.

The Django test client checks our answers against the SDK's models; this checks the rest of the
contract too: URLs, query encoding of GET and DELETE parameters, JSON bodies, empty 204s, 207s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    CreateWatchlistRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    GetPortfolioHistoryRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopOrderRequest,
    TrailingStopOrderRequest,
    UpdateWatchlistRequest,
)

from tests.processes import gunicorn_server
from trading import services
from trading.models import Account, Asset

pytestmark = pytest.mark.live


@pytest.fixture
def client(
    transactional_db: None,
    tmp_path: Path,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> Iterator[TradingClient]:
    make_asset("AAPL", price="100.00", exchange="NASDAQ")
    make_asset("MSFT", price="400.00", exchange="NASDAQ")
    account = make_account(cash=10_000_000)
    key, secret = services.api_key_create(account_id=account.pk)
    with gunicorn_server(tmp_path, workers=1) as server:
        yield TradingClient(key.key_id, secret, paper=True, url_override=server.base_url)


def test_orders_positions_and_account_through_the_sdk(client: TradingClient) -> None:
    day = TimeInForce.DAY
    client.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=day))
    client.submit_order(MarketOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=day))
    stop = client.submit_order(
        StopOrderRequest(
            symbol="AAPL", qty=2, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, stop_price=90
        )
    )
    trailing = client.submit_order(
        TrailingStopOrderRequest(
            symbol="AAPL", qty=1, side=OrderSide.SELL, time_in_force=day, trail_price=2.5
        )
    )
    assert trailing.trail_price == "2.50" and trailing.hwm == "100.00"
    limit = client.submit_order(
        LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=day, limit_price=300.5)
    )

    replaced = client.replace_order_by_id(limit.id, ReplaceOrderRequest(qty=2, limit_price=301))
    assert replaced.replaces == limit.id and replaced.limit_price == "301.00"
    assert client.get_order_by_id(limit.id).status == OrderStatus.REPLACED

    open_orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, symbols=["AAPL"]))
    assert {order.id for order in open_orders} == {stop.id, trailing.id}
    closed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, side=OrderSide.BUY, limit=1))
    assert len(closed) == 1
    after = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, after=dt.datetime.now(dt.UTC)))
    assert after == []

    canceled = client.cancel_orders()
    assert {result.id for result in canceled} == {stop.id, trailing.id, replaced.id}
    assert {result.status for result in canceled} == {200}

    account = client.get_account()
    assert account.long_market_value == "1400.00"
    assert float(account.buying_power) == pytest.approx(100_000 - 1000.10 - 400.01)

    history = client.get_portfolio_history(GetPortfolioHistoryRequest(period="1D", timeframe="15Min"))
    assert history.timeframe == "15Min" and history.equity

    closed_all = client.close_all_positions(cancel_orders=True)
    assert {result.symbol for result in closed_all} == {"AAPL", "MSFT"}
    assert {result.status for result in closed_all} == {200}
    assert client.get_all_positions() == []

    with pytest.raises(APIError) as missing:
        client.get_open_position("AAPL")
    assert missing.value.status_code == 404 and missing.value.code == 40410000


def test_configuration_calendar_and_watchlists_through_the_sdk(client: TradingClient) -> None:
    configuration = client.get_account_configurations()
    configuration.no_shorting = False
    assert client.set_account_configurations(configuration).no_shorting is False
    assert client.get_account().shorting_enabled is True

    days = client.get_calendar(GetCalendarRequest(start=dt.date(2025, 1, 1), end=dt.date(2025, 1, 7)))
    assert len(days) == 7 and days[0].open.hour == 0
    assert client.get_clock().is_open

    watchlist = client.create_watchlist(CreateWatchlistRequest(name="tech", symbols=["AAPL"]))
    assert [asset.symbol for asset in watchlist.assets or []] == ["AAPL"]
    client.add_asset_to_watchlist_by_id(watchlist.id, "MSFT")
    updated = client.update_watchlist_by_id(watchlist.id, UpdateWatchlistRequest(name="renamed"))
    assert updated.name == "renamed" and len(updated.assets or []) == 2
    removed = client.remove_asset_from_watchlist_by_id(watchlist.id, "AAPL")
    assert [asset.symbol for asset in removed.assets or []] == ["MSFT"]
    assert [w.id for w in client.get_watchlists()] == [watchlist.id]
    assert client.get_watchlist_by_id(watchlist.id).name == "renamed"
    client.delete_watchlist_by_id(watchlist.id)
    assert client.get_watchlists() == []
