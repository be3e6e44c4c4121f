"""Revoked credentials close open sockets on every web process: real daphne processes, a real
gunicorn for the logout, one Redis. The revocation is published by another process than the one
holding the socket (the test process revoking a key as the keys page would, gunicorn logging a
browser out) and reaches each daphne through the subscription its fan-out already holds."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.builders import session_cookie
from tests.processes import gunicorn_server
from tests.realtime.servers import DaphneProcess, daphne_server
from trading import services
from trading.models import Account

pytestmark = [pytest.mark.live, pytest.mark.slow]

# A wait, not a measure: the close follows the revocation's one pub/sub message at once.
TIMEOUT = 10


def receive(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(TIMEOUT))


def close_code(ws: ClientConnection) -> int | None:
    """The close code the server sent, once the socket has closed."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(TIMEOUT)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


def market_data(
    stack: ExitStack, server: DaphneProcess, auth: dict[str, Any], headers: dict[str, str] | None = None
) -> ClientConnection:
    ws = stack.enter_context(
        connect(f"{server.ws_url}/v2/iex", additional_headers=headers, open_timeout=TIMEOUT)
    )
    assert receive(ws) == [{"T": "success", "msg": "connected"}]
    ws.send(json.dumps({"action": "auth", **auth}))
    assert receive(ws) == [{"T": "success", "msg": "authenticated"}]
    return ws


def trade_updates(stack: ExitStack, server: DaphneProcess, key: tuple[str, str]) -> ClientConnection:
    ws = stack.enter_context(connect(f"{server.ws_url}/stream", open_timeout=TIMEOUT))
    ws.send(json.dumps({"action": "authenticate", "data": {"key_id": key[0], "secret_key": key[1]}}))
    assert receive(ws)["data"]["status"] == "authorized"
    ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
    assert receive(ws) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    return ws


def dashboard(stack: ExitStack, server: DaphneProcess, cookie: str) -> ClientConnection:
    ws = stack.enter_context(
        connect(f"{server.ws_url}/ws/dashboard", additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT)
    )
    assert receive(ws)["stream"] == "account_update"
    return ws


@pytest.fixture
def daphnes(
    stream_settings: Settings, transactional_db: None, tmp_path: Path
) -> Iterator[list[DaphneProcess]]:
    with daphne_server(tmp_path) as first, daphne_server(tmp_path) as second:
        yield [first, second]


def test_a_revoked_key_and_a_logout_close_sockets_on_other_processes(
    daphnes: list[DaphneProcess], make_account: Callable[..., Account], tmp_path: Path
) -> None:
    first, second = daphnes
    account = make_account()
    api_key, secret = services.api_key_create(account_id=account.pk, label="bot")
    key = (api_key.key_id, secret)
    _, cookie = session_cookie(account.user_id)

    with ExitStack() as stack:
        bot_data = market_data(stack, first, {"key": key[0], "secret": key[1]})
        bot_orders = trade_updates(stack, second, key)
        browser_data = market_data(stack, first, {}, headers={"Cookie": cookie})
        browser_dashboard = dashboard(stack, second, cookie)

        # The keys page's revoke, in this process; the sockets are on both daphnes.
        services.api_key_revoke(key_id=key[0], account_id=account.pk)
        assert receive(bot_data) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert close_code(bot_data) == 4402
        assert receive(bot_orders) == {
            "stream": "authorization",
            "data": {"status": "unauthorized", "action": "authenticate"},
        }
        assert close_code(bot_orders) == 4401

        # The browser logs out through gunicorn (a web process of its own).
        with gunicorn_server(tmp_path, workers=1) as web:
            http = requests.Session()
            name, value = cookie.split("=", 1)
            http.cookies.set(name, value)
            assert http.get(f"{web.base_url}/", timeout=TIMEOUT).status_code == 200
            logout = http.post(
                f"{web.base_url}/logout",
                headers={"X-CSRFToken": http.cookies[settings.CSRF_COOKIE_NAME]},
                allow_redirects=False,
                timeout=TIMEOUT,
            )
            assert logout.status_code == 302, logout.text[:500]
        assert close_code(browser_dashboard) == 4401
        assert receive(browser_data) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        assert close_code(browser_data) == 4402
    for server in daphnes:
        assert "Exception inside application" not in server.log(), server.log()
