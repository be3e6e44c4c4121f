"""Executions as alpaca-py sees them against a real server (issue 15, section 4): the order
validation Alpaca applies, the lifecycle of an order that fills on placement, trailing stops'
current stop price."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest, StopOrderRequest

from tests.processes import ServerProcess, gunicorn_server
from trading import services
from trading.models import Account, Asset, Order

pytestmark = pytest.mark.live


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[ServerProcess]:
    with gunicorn_server(tmp_path) as running:
        yield running


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> dict[str, Asset]:
    return {
        "AAPL": make_asset("AAPL", price="190.00", exchange="NASDAQ"),
        "PENY": make_asset("PENY", price="0.5000", exchange="NASDAQ"),
    }


@pytest.fixture
def client(make_account: Callable[..., Account], server: ServerProcess) -> TradingClient:
    account = make_account(cash=1_000_000)  # $10,000.00
    key, secret = services.api_key_create(account_id=account.pk, label="executions")
    return TradingClient(key.key_id, secret, paper=True, url_override=server.base_url)


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
