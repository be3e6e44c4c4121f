"""Executions as alpaca-py sees them against a real server (README, "Using it with alpaca-py"): the order
validation Alpaca applies, the lifecycle of an order that fills on placement, trailing stops'
current stop price."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import time_machine
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    StopOrderRequest,
    TrailingStopOrderRequest,
)
from alpaca.trading.stream import TradingStream
from pytest_django.fixtures import Settings

from realtime.triggers import TriggerEngine
from tests.e2e.test_alpaca_py_streams import Running, wait_for
from tests.processes import ServerProcess, gunicorn_server
from tests.realtime.servers import DaphneProcess
from tests.realtime.test_auctions import MONDAY_CLOSE, MONDAY_OPEN, SATURDAY, WallClock
from tests.realtime.test_triggers import committed_ticks
from trading import services
from trading.models import Account, Asset, Fill, Order

pytestmark = pytest.mark.live


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> dict[str, Asset]:
    return {
        "AAPL": make_asset("AAPL", price="190.00", exchange="NASDAQ"),
        "PENY": make_asset("PENY", price="0.5000", exchange="NASDAQ"),
    }


@pytest.fixture
def credentials(make_account: Callable[..., Account]) -> tuple[str, str]:
    account = make_account(cash=1_000_000)  # $10,000.00
    key, secret = services.api_key_create(account_id=account.pk, label="executions")
    return key.key_id, secret


@pytest.fixture
def client(credentials: tuple[str, str], sdk_server: ServerProcess) -> TradingClient:
    return TradingClient(*credentials, paper=True, url_override=sdk_server.base_url)


def refused(submit: Callable[[], object]) -> APIError:
    with pytest.raises(APIError) as error:
        submit()
    return error.value


def test_sdk_orders_are_validated_as_alpaca_validates_them(
    client: TradingClient, market: dict[str, Asset]
) -> None:
    # Sub-penny limit and stop prices from $1 up: Alpaca's 422, code and wording.
    sub_penny = refused(
        lambda: client.submit_order(
            LimitOrderRequest(
                symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=180.005
            )
        )
    )
    assert (sub_penny.status_code, sub_penny.code) == (422, 42210000)
    assert sub_penny.message == (
        "invalid limit_price 180.005. sub-penny increment does not fulfill minimum pricing criteria"
    )
    stop = refused(
        lambda: client.submit_order(
            StopOrderRequest(
                symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, stop_price=200.101
            )
        )
    )
    assert stop.code == 42210000 and "sub-penny" in stop.message
    # Below $1, four decimals are a valid price.
    cheap = client.submit_order(
        LimitOrderRequest(
            symbol="PENY", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=0.4321
        )
    )
    assert (cheap.status.value, cheap.limit_price) == ("new", "0.4321")

    # extended_hours only on limit day orders.
    extended = refused(
        lambda: client.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                               extended_hours=True)
        )
    )  # fmt: skip
    assert (extended.status_code, extended.message) == (422, "extended hours order must be DAY limit orders")
    gtc = refused(
        lambda: client.submit_order(
            LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                              limit_price=180, extended_hours=True)
        )
    )  # fmt: skip
    assert gtc.status_code == 422
    accepted = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                          limit_price=180, extended_hours=True)
    )  # fmt: skip
    assert accepted.extended_hours is True

    # opg and cls: a clear 422 in the always-open market.
    for tif in (TimeInForce.OPG, TimeInForce.CLS):
        request = MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=tif)
        auction = refused(lambda request=request: client.submit_order(request))  # type: ignore[misc]
        assert auction.status_code == 422 and "never closes" in auction.message
    assert Order.objects.count() == 2  # nothing refused was written


def test_an_order_filling_at_once_is_answered_as_accepted_and_filled_on_trade_updates(
    client: TradingClient,
    credentials: tuple[str, str],
    sdk_stream_server: DaphneProcess,
    market: dict[str, Asset],
) -> None:
    updates: list[Any] = []

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream = TradingStream(*credentials, url_override=f"{sdk_stream_server.ws_url}/stream")
    stream.subscribe_trade_updates(on_update)
    with Running(stream):
        wait_for(lambda: bool(stream._running))
        time.sleep(0.5)  # the SDK sends "listen" without waiting for the answer
        accepted = client.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        # Alpaca's answer: the order as accepted, nothing filled yet.
        assert (accepted.status, accepted.filled_qty, accepted.filled_at) == (OrderStatus.NEW, "0", None)
        wait_for(lambda: len(updates) >= 2)
        new, fill = updates
        assert (new.event, new.order.status, new.order.filled_qty) == ("new", "new", "0")
        assert (fill.event, fill.order.status, fill.order.filled_qty) == ("fill", "filled", "3")
        assert str(new.order.id) == str(fill.order.id) == str(accepted.id)
        assert (fill.price, fill.qty, fill.position_qty) == (190.01, 3, 3)
        assert fill.execution_id == Fill.objects.get(order_id=accepted.id).pk and new.execution_id is None
    now = client.get_order_by_id(accepted.id)
    assert (now.status, now.filled_qty, now.filled_avg_price) == (OrderStatus.FILLED, "3", "190.01")


def test_a_trailing_stop_shows_its_stop_price_as_it_trails(
    client: TradingClient, market: dict[str, Asset]
) -> None:
    """The market's trigger engine (run here as run_market runs it) moves the stop; alpaca-py
    reads it as the order's stop_price, with the mark as hwm."""
    client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC)
    )
    placed = client.submit_order(
        TrailingStopOrderRequest(
            symbol="AAPL", qty=5, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, trail_price=2.5
        )
    )
    assert (placed.stop_price, placed.hwm) == ("187.50", "190.00")  # from the last trade, 190.00
    engine = TriggerEngine()
    engine.start()
    try:
        assert str(placed.id) in engine.book
        engine.on_window(committed_ticks("AAPL", 2, ["190.40", "191.25", "190.90"]))
        trailed = client.get_order_by_id(placed.id)
        assert (trailed.status, trailed.stop_price, trailed.hwm) == (OrderStatus.NEW, "188.75", "191.25")
        listed = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
        assert [(str(o.id), o.stop_price) for o in listed] == [(str(placed.id), "188.75")]
        engine.on_window(committed_ticks("AAPL", 5, ["188.70"]))
    finally:
        engine.stop()
    fired = client.get_order_by_id(placed.id)
    assert (fired.status, fired.stop_price, fired.filled_avg_price) == (
        OrderStatus.FILLED,
        "188.75",
        "188.69",
    )


@pytest.fixture
def saturday_xnys_server(
    settings: Settings, stream_settings: Settings, transactional_db: None, tmp_path: Path
) -> Iterator[ServerProcess]:
    """A server with real NYSE hours whose clock reads a Saturday noon (New York) and ticks on
    from there (the tests' clock shim), so opg and cls orders are taken whatever the real hour."""
    settings.MARKET_HOURS = "xnys"
    real_now = (
        time_machine.escape_hatch.time.time() if time_machine.escape_hatch.is_travelling() else time.time()
    )
    shim = str(Path(__file__).resolve().parents[1] / "clock_shim")
    env = {
        "TEST_CLOCK_OFFSET_S": repr(SATURDAY.timestamp() - real_now),
        "PYTHONPATH": os.pathsep.join(filter(None, [shim, os.environ.get("PYTHONPATH")])),
    }
    with gunicorn_server(tmp_path, extra_env=env, overrides={"MARKET_HOURS": "xnys"}) as running:
        yield running


@pytest.mark.filterwarnings("ignore:.*values returning an ndarray that drops timezone")
def test_opg_and_cls_orders_execute_at_the_sessions_first_and_last_trade(
    saturday_xnys_server: ServerProcess, credentials: tuple[str, str], market: dict[str, Asset]
) -> None:
    client = TradingClient(*credentials, paper=True, url_override=saturday_xnys_server.base_url)
    assert client.get_clock().is_open is False
    moo = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.OPG)
    )
    loc = client.submit_order(
        LimitOrderRequest(
            symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.CLS, limit_price=195
        )
    )
    assert (moo.status, moo.time_in_force, loc.time_in_force) == (
        OrderStatus.NEW,
        TimeInForce.OPG,
        TimeInForce.CLS,
    )
    stop = refused(
        lambda: client.submit_order(
            StopOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.OPG,
                             stop_price=200)
        )
    )  # fmt: skip
    assert (stop.status_code, stop.message) == (422, "time_in_force opg is only for market and limit orders")
    # Any other order placed while the session is closed is accepted, not routed, until the open.
    waiting = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert waiting.status == OrderStatus.ACCEPTED
    assert client.get_order_by_id(waiting.id).status == OrderStatus.ACCEPTED

    clock = WallClock(MONDAY_OPEN - dt.timedelta(minutes=1))
    engine = TriggerEngine(clock=clock)
    engine.start()
    try:
        engine.on_window([])
        assert client.get_order_by_id(moo.id).status == OrderStatus.NEW
        clock.now = MONDAY_OPEN + dt.timedelta(seconds=1)
        engine.on_window(committed_ticks("AAPL", 2, ["190.50", "190.20"]))
        opened = client.get_order_by_id(moo.id)
        assert (opened.status, opened.filled_avg_price, opened.filled_qty) == (
            OrderStatus.FILLED,
            "190.50",
            "2",
        )
        assert client.get_order_by_id(loc.id).status == OrderStatus.NEW
        engine.on_window(committed_ticks("AAPL", 4, ["191.00", "194.10"]))
        clock.now = MONDAY_CLOSE
        engine.on_window([])
    finally:
        engine.stop()
    closed = client.get_order_by_id(loc.id)
    assert (closed.status, closed.filled_avg_price, closed.filled_qty) == (OrderStatus.FILLED, "194.10", "3")
    assert client.get_open_position("AAPL").qty == "6"  # the accepted market order filled at the open too


def test_an_order_larger_than_the_quote_fills_in_parts_and_an_ioc_cancels_its_rest(
    client: TradingClient,
    credentials: tuple[str, str],
    sdk_stream_server: DaphneProcess,
    make_asset: Callable[..., Asset],
) -> None:
    """The quote shows 4 shares at the ask: a market buy of 10 takes them on placement, its rest
    fills at the next quote (run here as run_market runs it); an IOC for 10 takes 4 and is
    canceled (README, Partial fills, IOC and FOK)."""
    make_asset("PART", price="20.00", quote_size=4, exchange="NASDAQ")
    updates: list[Any] = []

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream = TradingStream(*credentials, url_override=f"{sdk_stream_server.ws_url}/stream")
    stream.subscribe_trade_updates(on_update)
    with Running(stream):
        wait_for(lambda: bool(stream._running))
        time.sleep(0.5)  # the SDK sends "listen" without waiting for the answer
        placed = client.submit_order(
            MarketOrderRequest(symbol="PART", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
        assert placed.status == OrderStatus.NEW
        wait_for(lambda: len(updates) >= 2)
        resting = client.get_order_by_id(placed.id)
        assert (resting.status, resting.filled_qty, resting.filled_avg_price) == (
            OrderStatus.PARTIALLY_FILLED,
            "4",
            "20.01",
        )
        # An IOC meets the same quote: its 4 shares fill, the rest is canceled.
        ioc = client.submit_order(
            MarketOrderRequest(symbol="PART", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.IOC)
        )
        wait_for(lambda: len(updates) >= 5)
        assert [(u.event, u.order.status, u.order.filled_qty) for u in updates[2:5]] == [
            ("new", "new", "0"),
            ("partial_fill", "partially_filled", "4"),
            ("canceled", "canceled", "4"),
        ]
        # The next quote fills the first order's rest.
        engine = TriggerEngine()
        engine.start()
        try:
            engine.on_window(committed_ticks("PART", 2, ["20.10"]))
        finally:
            engine.stop()
        wait_for(lambda: len(updates) >= 6)
        new, partial, fill = updates[0], updates[1], updates[5]
        assert [(u.event, u.order.status, u.order.filled_qty) for u in (new, partial, fill)] == [
            ("new", "new", "0"),
            ("partial_fill", "partially_filled", "4"),
            ("fill", "filled", "10"),
        ]
        assert str(new.order.id) == str(partial.order.id) == str(fill.order.id) == str(placed.id)
        assert [(u.price, u.qty, u.position_qty) for u in (partial, fill)] == [(20.01, 4, 4), (20.11, 6, 14)]
        executions = {execution.pk for execution in Fill.objects.filter(order_id=placed.id)}
        assert {partial.execution_id, fill.execution_id} == executions and len(executions) == 2
    filled = client.get_order_by_id(placed.id)
    assert (filled.status, filled.filled_qty, filled.filled_avg_price) == (OrderStatus.FILLED, "10", "20.07")
    canceled = client.get_order_by_id(ioc.id)
    assert (canceled.status, canceled.filled_qty) == (OrderStatus.CANCELED, "4")
    assert client.get_open_position("PART").qty == "14"
