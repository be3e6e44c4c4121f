"""POST /v2/account/reset: self-service reset, unless the operator turned it off."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pytest_django.fixtures import Settings

from tests.builders import shares
from tests.trading.api_support import assert_alpaca_error, buy, key_client, post_order
from trading.models import Account, Asset, Order, Position

pytestmark = pytest.mark.django_db


def test_reset_cancels_orders_clears_positions_and_restores_cash(
    settings: Settings, make_account: Callable[..., Account], make_asset: Callable[..., Asset]
) -> None:
    settings.ACCOUNT_STARTING_CASH = "5000.00"
    make_asset("AAPL", price="100.00")
    account = make_account(cash=500_000)
    client = key_client(account)
    buy(client, "AAPL", 3)
    resting = post_order(
        client, symbol="AAPL", qty=1, side="buy", type="limit", limit_price="50", time_in_force="gtc"
    )
    assert resting.status_code == 200

    response = client.post("/v2/account/reset")

    assert response.status_code == 200, response.content
    assert response.json()["cash"] == "5000.00"
    assert response.json()["buying_power"] == "5000.00"
    assert Order.objects.get(pk=resting.json()["id"]).status == "canceled"
    assert not Position.objects.filter(account=account).exclude(qty=0).exists()


def test_reset_is_refused_when_the_operator_disabled_it(
    settings: Settings, make_account: Callable[..., Account], make_asset: Callable[..., Asset]
) -> None:
    settings.ACCOUNT_SELF_RESET = False
    make_asset("AAPL", price="100.00")
    account = make_account(cash=500_000)
    client = key_client(account)
    buy(client, "AAPL", 2)

    body = assert_alpaca_error(client.post("/v2/account/reset"), 403)

    assert "disabled" in body["message"]
    account.refresh_from_db()
    assert account.cash_cents < 500_000  # nothing was reset
    assert Position.objects.get(account=account).qty == shares(2)
