"""Several accounts of one user on the streams, through the real ASGI stack, a real Redis and real
order events: a key's streams and a session's carry only their own account's events, switching a
session's account closes its account sockets (not its market data) and they reconnect on the new
one, and the connection and symbol limits count per account."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from pytest_django.fixtures import Settings

from config.asgi import application
from tests.builders import list_symbols, session_cookie, shares
from tests.realtime.test_streams_protocol import (
    AUTHENTICATED_REPLY,
    AUTHORIZED,
    TIMEOUT,
    UNAUTHORIZED,
    auth_message,
    authenticate_message,
    closed_with,
    error,
    new_key,
    open_stream,
    revoked_with,
    run,
    say,
)
from trading import services
from trading.models import Account, Asset

pytestmark = pytest.mark.usefixtures("stream_settings", "transactional_db")

LISTEN = {"action": "listen", "data": {"streams": ["trade_updates"]}}


@pytest.fixture
def two_accounts(make_account: Callable[..., Account]) -> tuple[Account, Account]:
    default = make_account(cash=1_000_000)
    return default, services.account_create(user=default.user, cash_cents=1_000_000)


def _buy(account: Account, qty: int) -> None:
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(qty), side="buy", type="market", time_in_force="day"
        ),
    )


async def _trading(credentials: tuple[str, str]) -> WebsocketCommunicator:
    socket = await open_stream("/stream")
    assert await say(socket, authenticate_message(credentials)) == AUTHORIZED
    await say(socket, LISTEN)
    return socket


async def _dashboard(
    cookie: list[tuple[bytes, bytes]],
) -> tuple[WebsocketCommunicator | None, dict[str, Any]]:
    """A dashboard socket and its first frame (the account snapshot); None if refused."""
    socket = WebsocketCommunicator(application, "/ws/dashboard", headers=cookie)
    if not (await socket.connect(timeout=TIMEOUT))[0]:
        return None, {}
    snapshot = json.loads(await socket.receive_from(TIMEOUT))
    assert snapshot["stream"] == "account_update"
    return socket, snapshot


def _select(browser: Client, account: Account) -> None:
    assert browser.post("/account/select", {"account_id": str(account.pk)}).status_code == 302


def test_the_streams_of_one_account_carry_nothing_of_the_other(
    two_accounts: tuple[Account, Account], make_asset: Callable[..., Asset]
) -> None:
    default, further = two_accounts
    make_asset("AAPL", price="100.00")
    default_key, further_key = new_key(default.pk), new_key(further.pk)
    cookie = [(b"cookie", session_cookie(default.user_id)[1].encode())]

    async def body() -> None:
        on_default, on_further = await _trading(default_key), await _trading(further_key)
        dashboard, snapshot = await _dashboard(cookie)
        assert dashboard is not None and snapshot["data"]["account"]["id"] == str(default.pk)

        await database_sync_to_async(_buy)(further, 3)
        events = [json.loads(await on_further.receive_from(TIMEOUT)) for _ in range(2)]
        assert [e["data"]["event"] for e in events] == ["new", "fill"]
        assert {e["data"]["order"]["qty"] for e in events} == {"3"}
        assert await on_default.receive_nothing(0.3)
        assert await dashboard.receive_nothing(0.1)

        await database_sync_to_async(_buy)(default, 2)
        events = [json.loads(await on_default.receive_from(TIMEOUT)) for _ in range(2)]
        assert [e["data"]["event"] for e in events] == ["new", "fill"]
        updates = [json.loads(await dashboard.receive_from(TIMEOUT)) for _ in range(2)]
        assert {u["data"]["account"]["id"] for u in updates} == {str(default.pk)}
        assert [p["qty"] for p in updates[-1]["data"]["positions"]] == ["2"]
        assert await on_further.receive_nothing(0.3)
        for socket in (on_default, on_further, dashboard):
            await socket.disconnect()

    run(body)


def test_switching_a_sessions_account_reconnects_its_account_sockets_on_the_new_one(
    two_accounts: tuple[Account, Account], make_asset: Callable[..., Asset]
) -> None:
    default, further = two_accounts
    make_asset("AAPL", price="100.00")
    browser, cookie_value = session_cookie(default.user_id)
    cookie = [(b"cookie", cookie_value.encode())]
    other_cookie = [(b"cookie", session_cookie(default.user_id)[1].encode())]

    async def body() -> None:
        market_data = await open_stream(headers=cookie)
        assert await say(market_data, {"action": "auth"}) == AUTHENTICATED_REPLY
        trading = await open_stream("/stream", headers=cookie)
        assert await say(trading, {"action": "authenticate", "data": {}}) == AUTHORIZED
        dashboard, _ = await _dashboard(cookie)
        other_session, _ = await _dashboard(other_cookie)
        assert dashboard is not None and other_session is not None

        await database_sync_to_async(_select)(browser, further)
        assert await closed_with(dashboard) == 4401
        assert await revoked_with(trading) == (UNAUTHORIZED, 4401)
        assert await market_data.receive_nothing(0.3)  # the same for every account
        assert await other_session.receive_nothing(0.1)  # another browser keeps its account

        again, snapshot = await _dashboard(cookie)
        assert again is not None and snapshot["data"]["account"]["id"] == str(further.pk)
        await database_sync_to_async(_buy)(default, 1)
        assert await again.receive_nothing(0.3)
        await database_sync_to_async(_buy)(further, 4)
        updates = [json.loads(await again.receive_from(TIMEOUT)) for _ in range(2)]
        assert {u["data"]["account"]["id"] for u in updates} == {str(further.pk)}
        for socket in (market_data, again, other_session):
            await socket.disconnect()

    run(body)


def test_session_connections_are_limited_per_account(
    two_accounts: tuple[Account, Account], stream_settings: Settings
) -> None:
    stream_settings.STREAM_MAX_CONNECTIONS_PER_KEY = 1
    default, further = two_accounts
    first = [(b"cookie", session_cookie(default.user_id)[1].encode())]
    browser, second_value = session_cookie(default.user_id)
    second = [(b"cookie", second_value.encode())]

    async def body() -> None:
        held, _ = await _dashboard(first)
        assert held is not None
        refused, _ = await _dashboard(second)  # the same (default) account: over its limit
        assert refused is None
        await database_sync_to_async(_select)(browser, further)
        admitted, snapshot = await _dashboard(second)  # the other account has its own
        assert admitted is not None and snapshot["data"]["account"]["id"] == str(further.pk)
        for socket in (held, admitted):
            await socket.disconnect()

    run(body)


def test_the_symbol_budget_counts_per_account(
    two_accounts: tuple[Account, Account], stream_settings: Settings
) -> None:
    stream_settings.STREAM_MAX_SYMBOLS_PER_ACCOUNT = 2
    default, further = two_accounts
    list_symbols("S1", "S2", "S3")
    default_key, second_default_key, further_key = (
        new_key(default.pk),
        new_key(default.pk),
        new_key(further.pk),
    )

    async def body() -> None:
        first = await open_stream()
        await say(first, auth_message(default_key))
        assert (await say(first, {"action": "subscribe", "trades": ["S1", "S2"]}))[0]["trades"] == [
            "S1",
            "S2",
        ]
        same_account = await open_stream()
        await say(same_account, auth_message(second_default_key))
        refused = await say(same_account, {"action": "subscribe", "trades": ["S3"]})
        assert refused == error(405, "symbol limit exceeded")
        other_account = await open_stream()
        await say(other_account, auth_message(further_key))
        subscribed = await say(other_account, {"action": "subscribe", "trades": ["S2", "S3"]})
        assert subscribed[0]["trades"] == ["S2", "S3"]
        for socket in (first, same_account, other_account):
            await socket.disconnect()

    run(body)
