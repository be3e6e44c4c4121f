"""Two accounts of one user through a real daphne and a real Redis: the trading stream of one
account's key and the dashboard channel of a session on the other carry only their own account's
order events, and switching the session's account (the page's POST, in the test process) closes
its dashboard socket, which reconnects on the new account."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.builders import session_cookie, shares
from tests.realtime.servers import DaphneProcess, daphne_server
from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.live, pytest.mark.slow]

TIMEOUT = 10


def receive(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    return json.loads(ws.recv(timeout))


def quiet(ws: ClientConnection, seconds: float = 0.5) -> bool:
    try:
        ws.recv(seconds)
    except TimeoutError:
        return True
    return False


def buy(account: Account, qty: int) -> None:
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(qty), side="buy", type="market", time_in_force="day"
        ),
    )


def dashboard(
    stack: ExitStack, server: DaphneProcess, cookie: str
) -> tuple[ClientConnection, dict[str, Any]]:
    ws = stack.enter_context(
        connect(f"{server.ws_url}/ws/dashboard", additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT)
    )
    snapshot = receive(ws)
    assert snapshot["stream"] == "account_update"
    return ws, snapshot


def test_one_accounts_streams_carry_nothing_of_the_other_and_a_switch_reconnects(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
    tmp_path: Path,
) -> None:
    make_asset("AAPL", price="100.00")
    default = make_account(cash=1_000_000)
    further = services.account_create(user=default.user, cash_cents=1_000_000)
    key, secret = services.api_key_create(account_id=default.pk, label="bot")
    browser, cookie = session_cookie(default.user_id)
    assert browser.post("/account/select", {"account_id": str(further.pk)}).status_code == 302

    with daphne_server(tmp_path) as server, ExitStack() as stack:
        bot = stack.enter_context(connect(f"{server.ws_url}/stream", open_timeout=TIMEOUT))
        bot.send(json.dumps({"action": "authenticate", "data": {"key_id": key.key_id, "secret_key": secret}}))
        assert receive(bot)["data"]["status"] == "authorized"
        bot.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert receive(bot)["stream"] == "listening"
        page, snapshot = dashboard(stack, server, cookie)
        assert snapshot["data"]["account"]["id"] == str(further.pk)

        buy(further, 3)
        updates = [receive(page) for _ in range(2)]
        assert [u["data"]["trade_update"]["event"] for u in updates] == ["new", "fill"]
        assert {u["data"]["account"]["id"] for u in updates} == {str(further.pk)}
        assert quiet(bot)

        buy(default, 2)
        assert [receive(bot)["data"]["event"] for _ in range(2)] == ["new", "fill"]
        assert quiet(page)

        # Back to the default account: the page's socket closes and comes back on it.
        assert browser.post("/account/select", {"account_id": str(default.pk)}).status_code == 302
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                page.recv(TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        _, snapshot = dashboard(stack, server, cookie)
        assert snapshot["data"]["account"]["id"] == str(default.pk)
        assert [p["qty"] for p in snapshot["data"]["positions"]] == ["2"]
    assert "Traceback" not in server.log(), server.log()
