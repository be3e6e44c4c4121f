"""A bracket order as alpaca-py places and follows it against a real server (README, Advanced
orders): the entry fills, its legs activate, the market fills the take-profit and cancels the
stop-loss, and ``trade_updates`` carries every leg's events."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderClass, OrderSide, OrderStatus, OrderType, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import GetOrdersRequest, MarketOrderRequest, StopLossRequest, TakeProfitRequest
from alpaca.trading.stream import TradingStream

from realtime.triggers import TriggerEngine
from tests.e2e.test_alpaca_py_streams import Running, wait_for
from tests.processes import ServerProcess
from tests.realtime.servers import DaphneProcess
from tests.realtime.test_triggers import committed_ticks
from trading import services
from trading.models import Account, Asset, Position

pytestmark = pytest.mark.live


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account(cash=1_000_000)  # $10,000.00


@pytest.fixture
def credentials(account: Account) -> tuple[str, str]:
    key, secret = services.api_key_create(account_id=account.pk, label="brackets")
    return key.key_id, secret


def test_a_bracket_entry_fills_its_legs_activate_and_one_leg_filling_cancels_the_other(
    credentials: tuple[str, str],
    account: Account,
    sdk_server: ServerProcess,
    sdk_stream_server: DaphneProcess,
    make_asset: Callable[..., Asset],
) -> None:
    make_asset("AAPL", price="190.00", exchange="NASDAQ")
    client = TradingClient(*credentials, paper=True, url_override=sdk_server.base_url)
    updates: list[Any] = []

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream = TradingStream(*credentials, url_override=f"{sdk_stream_server.ws_url}/stream")
    stream.subscribe_trade_updates(on_update)
    with Running(stream):
        wait_for(lambda: bool(stream._running))
        time.sleep(0.5)  # the SDK sends "listen" without waiting for the answer

        # Alpaca's validation: a take-profit below the ask (190.01) is refused.
        with pytest.raises(APIError) as refused:
            client.submit_order(
                MarketOrderRequest(
                    symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                    order_class=OrderClass.BRACKET,
                    take_profit=TakeProfitRequest(limit_price=190.00), stop_loss=StopLossRequest(stop_price=185),
                )
            )  # fmt: skip
        assert (refused.value.status_code, refused.value.message) == (
            422,
            "take_profit.limit_price must be >= base_price + 0.01",
        )

        placed = client.submit_order(
            MarketOrderRequest(
                symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                order_class=OrderClass.BRACKET,
                take_profit=TakeProfitRequest(limit_price=195), stop_loss=StopLossRequest(stop_price=185),
            )
        )  # fmt: skip
        assert placed.order_class == OrderClass.BRACKET and placed.legs is not None
        # Answered as accepted (README, Order lifecycle): the legs still wait for the entry.
        assert [leg.status for leg in placed.legs] == [OrderStatus.HELD, OrderStatus.HELD]

        entry = client.get_order_by_id(placed.id)
        assert (entry.status, entry.filled_avg_price) == (OrderStatus.FILLED, "190.01")
        assert entry.legs is not None
        take_profit, stop_loss = entry.legs
        assert (take_profit.order_type, take_profit.limit_price, take_profit.status) == (
            OrderType.LIMIT,
            "195.00",
            OrderStatus.NEW,
        )
        assert (stop_loss.order_type, stop_loss.stop_price, stop_loss.status) == (
            OrderType.STOP,
            "185.00",
            OrderStatus.NEW,
        )
        nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN, nested=True))
        assert [str(order.id) for order in nested] == [str(placed.id)]
        # The exit pair holds the 5 shares once.
        assert client.get_open_position("AAPL").qty_available == "0"
        assert Position.objects.get(account=account).qty_held == 5 * 10**9

        engine = TriggerEngine()  # as run_market runs it
        engine.start()
        try:
            assert str(take_profit.id) in engine.book and str(stop_loss.id) in engine.book
            engine.on_window(committed_ticks("AAPL", 2, ["195.20"]))  # the bid, 195.19, crosses 195
        finally:
            engine.stop()

        after = client.get_order_by_id(placed.id)
        assert after.legs is not None
        assert [(leg.status, leg.filled_avg_price) for leg in after.legs] == [
            (OrderStatus.FILLED, "195.19"),
            (OrderStatus.CANCELED, None),
        ]
        assert client.get_all_positions() == []

        def seen() -> list[tuple[str, str]]:
            return [(update.event, str(update.order.id)) for update in updates]

        wait_for(
            lambda: ("fill", str(take_profit.id)) in seen() and ("canceled", str(stop_loss.id)) in seen()
        )
        events = seen()
        assert events[:2] == [("new", str(placed.id)), ("fill", str(placed.id))]
        assert {("new", str(take_profit.id)), ("new", str(stop_loss.id))} <= set(events)
        assert events.index(("canceled", str(stop_loss.id))) < events.index(("fill", str(take_profit.id)))
        legs_shown = [update.order for update in updates if str(update.order.id) == str(take_profit.id)]
        assert [order.order_class for order in legs_shown] == [OrderClass.BRACKET] * len(legs_shown)
