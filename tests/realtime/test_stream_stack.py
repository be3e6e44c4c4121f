"""The WebSocket stack without Channels' middleware (realtime/routing.py), with daphne's handshake
state released (realtime/transport.py): the behaviour the streams must keep, through a real daphne
serving the project's application. The transport module's own guard tests are in
tests/realtime/test_transport.py."""

from __future__ import annotations

import json
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pytest_django.fixtures import Settings
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from config.redis_pools import redis_client
from realtime.consumers import MarketDataConsumer
from realtime.routing import StreamRouter, websocket_urlpatterns
from realtime.wire import Window, WireTick
from tests.builders import session_cookie
from tests.realtime.servers import DaphneProcess, daphne_server
from trading.models import Account, Asset

AT_NS = 1_764_000_000_000_000_000
TIMEOUT = 10


def test_the_router_starts_each_consumer_itself_without_channels_wrapper() -> None:
    """StreamRouter takes the consumer class and arguments that Channels' ``as_asgi()`` keeps on
    its wrapper (``consumer_class``, ``consumer_initkwargs``) and starts the consumer directly;
    without them it would run the wrapper, one more coroutine frame holding the scope for each
    socket's life. A Channels upgrade that drops them fails here."""

    async def nothing(*args: Any) -> Any:
        return None

    router = StreamRouter(websocket_urlpatterns, origin_allowed=lambda scope: True)
    for path in ("/v2/iex", "/stream", "/ws/dashboard"):
        started = router({"type": "websocket", "path": path, "headers": []}, nothing, nothing)
        assert isinstance(started, types.CoroutineType), path
        try:
            assert started.cr_code is MarketDataConsumer.__call__.__code__, path
        finally:
            started.close()


def receive(ws: ClientConnection) -> Any:
    return json.loads(ws.recv(TIMEOUT))


@contextmanager
def open_market_data(server: DaphneProcess, headers: dict[str, str]) -> Iterator[ClientConnection]:
    with connect(f"{server.ws_url}/v2/iex", additional_headers=headers, open_timeout=TIMEOUT) as ws:
        assert receive(ws) == [{"T": "success", "msg": "connected"}]
        yield ws


def assert_released(server: DaphneProcess) -> None:
    """realtime/transport.py recognised every part of daphne's connection state (a daphne,
    autobahn or Twisted upgrade that changed them shows here, not only as memory in the benchmark)."""
    log = server.log()
    assert "connection state released after the handshake" in log, log
    assert "connection state not released" not in log, log


def assert_clean_log(server: DaphneProcess) -> None:
    assert_released(server)
    log = server.log()
    assert "Exception inside application" not in log, log
    assert "internal error" not in log, log


@pytest.mark.live
@pytest.mark.slow
def test_session_auth_data_and_later_messages_after_the_handshake_is_released(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
    tmp_path: Path,
) -> None:
    account = make_account()
    make_asset("AAPL", price="100.00")
    _, cookie = session_cookie(account.user_id)

    with daphne_server(tmp_path) as server:
        origin = f"http://127.0.0.1:{server.port}"
        # The dashboard's market-data socket: Origin and session cookie, then auth without keys.
        with open_market_data(server, {"Cookie": cookie, "Origin": origin}) as ws:
            ws.send(json.dumps({"action": "auth"}))
            assert receive(ws) == [{"T": "success", "msg": "authenticated"}]
            ws.send(json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
            assert receive(ws)[0]["trades"] == ["AAPL"]
            redis_client().publish(
                settings.MARKET_WINDOWS_CHANNEL,
                Window(
                    number=1,
                    ticks=[WireTick("AAPL", 1, 1_000_000, 100, 999_900, 300, 1_000_100, 400, AT_NS)],
                ).encode(),
            )
            assert [(event["T"], event["S"]) for event in receive(ws)] == [("t", "AAPL")]
            # Messages still reach the consumer through the released inbound queue.
            ws.send(json.dumps({"action": "unsubscribe", "trades": ["AAPL"]}))
            assert receive(ws)[0]["trades"] == []
            ws.send(json.dumps({"action": "auth"}))
            assert receive(ws) == [{"T": "error", "code": 403, "msg": "already authenticated"}]

        # The trading stream resolves the same session when asked to.
        with connect(
            f"{server.ws_url}/stream", additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT
        ) as trading:
            trading.send(json.dumps({"action": "authenticate", "data": {}}))
            assert receive(trading) == {
                "stream": "authorization",
                "data": {"status": "authorized", "action": "authenticate"},
            }
            trading.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
            assert receive(trading) == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
        assert_clean_log(server)


@pytest.mark.live
@pytest.mark.slow
def test_foreign_origins_unknown_paths_and_ended_sessions_are_refused(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    tmp_path: Path,
) -> None:
    account = make_account()
    browser, cookie = session_cookie(account.user_id)

    with daphne_server(tmp_path, overrides={"STREAM_AUTH_TIMEOUT_S": 1}) as server:
        # Cross-site WebSocket hijacking: another site's page is refused at the handshake, with
        # or without the visitor's cookie, on every route.
        for path in ("/v2/iex", "/stream", "/ws/dashboard"):
            with pytest.raises(InvalidStatus) as refused:
                connect(
                    f"{server.ws_url}{path}",
                    additional_headers={"Cookie": cookie, "Origin": "https://evil.example"},
                    open_timeout=TIMEOUT,
                )
            assert refused.value.response.status_code == 403, path
        # No such route: HTTP 404, not a server error (and no traceback in the log).
        for path in ("/v2/IEX", "/v2/../stream", "/v1beta3/crypto/us", "/v2/iex/extra"):
            with pytest.raises(InvalidStatus) as missing:
                connect(f"{server.ws_url}{path}", open_timeout=TIMEOUT)
            assert missing.value.response.status_code == 404, path

        # No session, then a session that was logged out since the cookie was issued.
        with open_market_data(server, {}) as anonymous:
            anonymous.send(json.dumps({"action": "auth"}))
            assert receive(anonymous) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        browser.logout()
        with open_market_data(server, {"Cookie": cookie}) as ended:
            ended.send(json.dumps({"action": "auth"}))
            assert receive(ended) == [{"T": "error", "code": 402, "msg": "auth failed"}]
        with pytest.raises(InvalidStatus):
            connect(
                f"{server.ws_url}/ws/dashboard", additional_headers={"Cookie": cookie}, open_timeout=TIMEOUT
            )

        # The auth timeout still answers and closes a released connection.
        with open_market_data(server, {}) as idle:
            assert receive(idle) == [{"T": "error", "code": 404, "msg": "auth timeout"}]
            with pytest.raises(ConnectionClosed) as closed:
                idle.recv(TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        assert_released(server)
        assert "Exception inside application" not in server.log(), server.log()
        assert "No route found" not in server.log(), server.log()
