"""The stream protocols through the real ASGI stack (origin check, sessions, routing, consumers)
with Channels' WebsocketCommunicator, a real Redis carrying the market's window messages and real
order events from the trading services. Every Alpaca error code has a test here."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgpack
import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from pytest_django.fixtures import Settings

from config.asgi import application
from config.metrics import metrics_snapshot, snapshot_value
from config.redis_pools import redis_client
from realtime import fanout
from realtime.limits import AUTH_FAILURES_PER_ADDRESS_MAX
from realtime.wire import Window, WireBar, WireTick
from tests.builders import list_symbols, session_cookie, shares
from tests.realtime.frames import decode
from trading import services
from trading.models import Account, ApiKey, Asset, Fill

AT_NS = 1_764_000_000_000_000_000
TIMEOUT = 3


def run(body: Callable[[], Awaitable[None]]) -> None:
    """One event loop per test, and this loop's fan-out stopped with it."""

    async def wrapped() -> None:
        try:
            await body()
        finally:
            await fanout.shutdown()
            # The consumers' queries ran in asgiref's sync thread; its connection must not
            # outlive the test (PostgreSQL cannot drop a test database with sessions open).
            await database_sync_to_async(connections.close_all)()

    asyncio.run(wrapped())


def window(number: int, *symbols: str, seq: int = 1) -> Window:
    return Window(
        number=number,
        ticks=[WireTick(s, seq, 1_000_000, 100, 999_900, 300, 1_000_100, 400, AT_NS + seq) for s in symbols],
        bars=[
            WireBar("b", s, AT_NS, 1_000_000, 1_000_100, 999_900, 1_000_000, 500, 5, 1_000_000)
            for s in symbols
        ],
    )


def publish(win: Window) -> None:
    redis_client().publish(settings.MARKET_WINDOWS_CHANNEL, win.encode())


def from_peer(address: str) -> Callable[..., Awaitable[None]]:
    """The ASGI application as a server hands it a connection from ``address`` (the test
    communicator's scope names no client)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await application({**scope, "client": [address, 50_000]}, receive, send)

    return app


async def open_stream(
    path: str = "/v2/iex",
    *,
    msgpack_: bool = False,
    headers: list[tuple[bytes, bytes]] | None = None,
    peer: str | None = None,
) -> WebsocketCommunicator:
    all_headers = list(headers or [])
    if msgpack_:
        all_headers.append((b"content-type", b"application/msgpack"))
    app = application if peer is None else from_peer(peer)
    communicator = WebsocketCommunicator(app, path, headers=all_headers)
    connected, _ = await communicator.connect(timeout=TIMEOUT)
    assert connected
    if path.startswith("/v2/"):
        assert decode(await communicator.receive_from(TIMEOUT)) == [{"T": "success", "msg": "connected"}]
    return communicator


async def say(communicator: WebsocketCommunicator, message: dict[str, Any], *, msgpack_: bool = False) -> Any:
    if msgpack_:
        await communicator.send_to(bytes_data=msgpack.packb(message))
    else:
        await communicator.send_to(text_data=json.dumps(message))
    return decode(await communicator.receive_from(TIMEOUT))


async def closed_with(communicator: WebsocketCommunicator) -> int:
    output = await communicator.receive_output(TIMEOUT)
    assert output["type"] == "websocket.close", output
    return int(output.get("code", 1000))


def error(code: int, msg: str) -> list[dict[str, Any]]:
    return [{"T": "error", "code": code, "msg": msg}]


@pytest.fixture
def credentials(
    transactional_db: None, stream_settings: Settings, make_account: Callable[..., Account]
) -> tuple[str, str]:
    account = make_account()
    key, secret = services.api_key_create(account_id=account.pk, label="stream")
    return key.key_id, secret


def auth_message(credentials: tuple[str, str]) -> dict[str, str]:
    return {"action": "auth", "key": credentials[0], "secret": credentials[1]}


def test_json_stream_delivers_only_subscribed_symbols_then_unsubscribes(credentials: tuple[str, str]) -> None:
    list_symbols("AAPL", "MSFT", "NVDA")

    async def body() -> None:
        ws = await open_stream()
        assert await say(ws, auth_message(credentials)) == [{"T": "success", "msg": "authenticated"}]
        reply = await say(ws, {"action": "subscribe", "trades": ["AAPL"], "quotes": ["MSFT"], "bars": ["*"]})
        assert reply[0]["T"] == "subscription"
        assert (reply[0]["trades"], reply[0]["quotes"], reply[0]["bars"]) == (["AAPL"], ["MSFT"], ["*"])
        publish(window(1, "AAPL", "MSFT", "NVDA"))
        events = decode(await ws.receive_from(TIMEOUT))  # the whole window in one frame
        assert [(e["T"], e["S"]) for e in events] == [
            ("t", "AAPL"), ("b", "AAPL"), ("q", "MSFT"), ("b", "MSFT"), ("b", "NVDA"),
        ]  # fmt: skip
        trade = events[0]
        assert trade["p"] == 100.0 and trade["x"] == "V" and trade["t"].endswith("Z") and trade["i"] == 1
        reply = await say(
            ws, {"action": "unsubscribe", "trades": ["AAPL"], "quotes": ["MSFT"], "bars": ["*"]}
        )
        assert reply[0]["trades"] == reply[0]["quotes"] == reply[0]["bars"] == []
        publish(window(2, "AAPL", "MSFT", seq=2))
        assert await ws.receive_nothing(0.3)
        await ws.disconnect()

    run(body)


def test_msgpack_stream_uses_binary_frames_and_timestamp_extensions(credentials: tuple[str, str]) -> None:
    list_symbols("AAPL", "MSFT")

    async def body() -> None:
        ws = await open_stream(msgpack_=True)
        assert await say(ws, auth_message(credentials), msgpack_=True) == [
            {"T": "success", "msg": "authenticated"}
        ]
        await say(ws, {"action": "subscribe", "trades": ["AAPL"], "quotes": ["AAPL"]}, msgpack_=True)
        publish(window(1, "AAPL", "MSFT"))
        frame = await ws.receive_from(TIMEOUT)
        assert isinstance(frame, bytes)
        trade, quote = msgpack.unpackb(frame)
        assert isinstance(trade["t"], msgpack.Timestamp) and trade["t"].to_unix_nano() == AT_NS + 1
        assert (trade["T"], quote["T"], quote["bp"], quote["ap"]) == ("t", "q", 99.99, 100.01)
        await ws.disconnect()

    run(body)


def test_error_codes_400_401_403_405_410_and_the_socket_stays_usable(
    credentials: tuple[str, str], settings: Settings
) -> None:
    settings.STREAM_MAX_SYMBOLS = 3
    list_symbols("AAPL", "A", "B", "C", "D")

    async def body() -> None:
        ws = await open_stream()
        assert await say(ws, {"action": "subscribe", "trades": ["AAPL"]}) == error(401, "not authenticated")
        await ws.send_to(text_data="{not json")
        assert decode(await ws.receive_from(TIMEOUT)) == error(400, "invalid syntax")
        await ws.send_to(bytes_data=b"\xc1\x00garbage")
        assert decode(await ws.receive_from(TIMEOUT)) == error(400, "invalid syntax")
        assert await say(ws, {"action": "dance"}) == error(400, "invalid syntax")
        assert await say(ws, ["auth"]) == error(400, "invalid syntax")  # type: ignore[arg-type]
        assert (await say(ws, auth_message(credentials)))[0]["msg"] == "authenticated"
        assert await say(ws, auth_message(credentials)) == error(403, "already authenticated")
        assert await say(ws, {"action": "subscribe", "trades": "AAPL"}) == error(400, "invalid syntax")
        assert await say(ws, {"action": "subscribe", "orderbooks": ["AAPL"]}) == error(
            410, "invalid subscribe action"
        )
        assert await say(ws, {"action": "subscribe", "trades": ["A", "B", "C", "D"]}) == error(
            405, "symbol limit exceeded"
        )
        reply = await say(ws, {"action": "subscribe", "trades": ["A", "B"], "quotes": ["C", "*"]})
        assert reply[0]["trades"] == ["A", "B"]  # the refused request changed nothing
        await ws.disconnect()

    run(body)


def test_402_auth_failed_then_rate_limited_and_closed(
    credentials: tuple[str, str], settings: Settings
) -> None:
    settings.STREAM_AUTH_FAILURES_MAX = 2

    async def body() -> None:
        ws = await open_stream()
        wrong = {"action": "auth", "key": credentials[0], "secret": "wrong"}
        assert await say(ws, wrong) == error(402, "auth failed")
        # Malformed credentials name no key: they count against the address only.
        assert await say(ws, {"action": "auth", "key": 5, "secret": None}) == error(402, "auth failed")
        assert await say(ws, wrong) == error(402, "auth failed")
        # The key is over its limit: refused without a lookup (even the right secret) and closed.
        assert await say(ws, auth_message(credentials)) == error(402, "auth failed")
        assert await closed_with(ws) == 4402

    run(body)


def failure_counter(name: str) -> str:
    return f"{settings.STREAM_REDIS_PREFIX}:authfail:{name}"


async def wait_until_gone(key: str) -> None:
    """Until Redis has expired ``key`` (a bounded wait: the window, not the time, is the test)."""
    deadline = time.monotonic() + 30
    while redis_client().exists(key):
        assert time.monotonic() < deadline, f"{key} never expired (PTTL {redis_client().pttl(key)})"
        await asyncio.sleep(0.05)


def test_a_key_locked_out_by_failed_auths_authenticates_again_after_the_window(
    credentials: tuple[str, str], settings: Settings
) -> None:
    """The lockout ends: its counter has an expiry on the embedded Redis (6.2, no EXPIRE NX)."""
    settings.STREAM_AUTH_FAILURES_MAX = 2
    settings.STREAM_AUTH_FAILURES_WINDOW_S = 1.0
    counter = failure_counter(f"key:{credentials[0]}")

    async def body() -> None:
        ws = await open_stream()
        wrong = {"action": "auth", "key": credentials[0], "secret": "wrong"}
        for _ in range(2):
            assert await say(ws, wrong) == error(402, "auth failed")
        assert await say(ws, auth_message(credentials)) == error(402, "auth failed")
        assert await closed_with(ws) == 4402
        assert 0 < redis_client().pttl(counter) <= 1000
        await wait_until_gone(counter)
        again = await open_stream()
        assert await say(again, auth_message(credentials)) == [{"T": "success", "msg": "authenticated"}]
        await again.disconnect()

    run(body)


def test_a_failure_counter_left_without_expiry_gets_one(credentials: tuple[str, str]) -> None:
    counter = failure_counter(f"key:{credentials[0]}")
    redis_client().set(counter, 7)  # as the old EXPIRE ... NX left them on Redis 6.2: no TTL

    async def body() -> None:
        await fanout.manager().auth_failures.failed(address="198.51.100.7", key_id=credentials[0])
        assert redis_client().get(counter) == b"8"
        assert 0 < redis_client().pttl(counter) <= settings.STREAM_AUTH_FAILURES_WINDOW_S * 1000

    run(body)


def test_unknown_key_ids_count_against_the_forwarded_address_only_and_at_a_higher_limit(
    credentials: tuple[str, str], settings: Settings
) -> None:
    """Guessed key ids write no counter of their own; the address is locked out only after
    AUTH_FAILURES_PER_ADDRESS_MAX failures, and behind a trusted proxy that address is the
    forwarded client's, so the proxy's other clients still authenticate."""
    settings.STREAM_AUTH_FAILURES_MAX = 2
    settings.STREAM_INBOUND_BURST = 10 * AUTH_FAILURES_PER_ADDRESS_MAX
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    prefix = f"{settings.STREAM_REDIS_PREFIX}:authfail:"

    def forwarded(client: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-forwarded-for", client.encode())]

    async def body() -> None:
        ws = await open_stream(peer="10.0.0.1", headers=forwarded("203.0.113.5"))
        for number in range(AUTH_FAILURES_PER_ADDRESS_MAX):
            guess = {"action": "auth", "key": f"PKGUESS{number:06d}", "secret": "x"}
            assert await say(ws, guess) == error(402, "auth failed"), number
        counters = {key.decode() for key in redis_client().scan_iter(match=f"{prefix}*")}
        assert counters == {f"{prefix}ip:203.0.113.5"}
        assert await say(ws, auth_message(credentials)) == error(402, "auth failed")
        assert await closed_with(ws) == 4402
        neighbour = await open_stream(peer="10.0.0.1", headers=forwarded("203.0.113.6"))
        assert await say(neighbour, auth_message(credentials)) == [{"T": "success", "msg": "authenticated"}]
        await neighbour.disconnect()

    run(body)


def test_404_auth_timeout(stream_settings: Settings, transactional_db: None) -> None:
    stream_settings.STREAM_AUTH_TIMEOUT_S = 0.2

    async def body() -> None:
        ws = await open_stream()
        assert decode(await ws.receive_from(TIMEOUT)) == error(404, "auth timeout")
        assert await closed_with(ws) == 4404

    run(body)


def test_406_connection_limit_per_key(credentials: tuple[str, str], settings: Settings) -> None:
    settings.STREAM_MAX_CONNECTIONS_PER_KEY = 2

    async def body() -> None:
        first, second, third = [await open_stream() for _ in range(3)]
        for ws in (first, second):
            assert (await say(ws, auth_message(credentials)))[0]["msg"] == "authenticated"
        assert await say(third, auth_message(credentials)) == error(406, "connection limit exceeded")
        assert await closed_with(third) == 4406
        await first.disconnect()
        fourth = await open_stream()
        assert (await say(fourth, auth_message(credentials)))[0]["msg"] == "authenticated"
        await second.disconnect()
        await fourth.disconnect()

    run(body)


def test_409_feed_not_enabled(credentials: tuple[str, str], settings: Settings) -> None:
    settings.STREAM_FEEDS = ["iex"]

    async def body() -> None:
        ws = await open_stream("/v2/sip")
        assert await say(ws, auth_message(credentials)) == error(409, "insufficient subscription")
        assert await closed_with(ws) == 4409

    run(body)


def test_oversized_inbound_and_floods_close_only_that_socket(
    credentials: tuple[str, str], settings: Settings
) -> None:
    settings.STREAM_MAX_INBOUND_BYTES = 2000
    settings.STREAM_INBOUND_BURST = 10
    list_symbols("AAPL")

    async def body() -> None:
        healthy = await open_stream()
        await say(healthy, auth_message(credentials))
        await say(healthy, {"action": "subscribe", "trades": ["AAPL"]})
        big = await open_stream()
        await big.send_to(text_data=json.dumps({"action": "subscribe", "trades": ["X" * 10] * 300}))
        assert decode(await big.receive_from(TIMEOUT)) == error(400, "invalid syntax")
        assert await closed_with(big) == 4400
        flood = await open_stream()
        for _ in range(20):
            await flood.send_to(text_data="garbage")
        outputs = [await flood.receive_output(TIMEOUT) for _ in range(11)]
        assert outputs[-1] == {"type": "websocket.close", "code": 4429}
        publish(window(1, "AAPL"))
        assert [e["S"] for e in decode(await healthy.receive_from(TIMEOUT))] == ["AAPL"]
        await healthy.disconnect()

    run(body)


def test_origin_is_checked_for_browsers_and_absent_for_bots(
    stream_settings: Settings, transactional_db: None
) -> None:
    async def body() -> None:
        page = f"http://localhost:{settings.HTTP_PORT}"
        for origin, allowed in (
            (None, True),
            (page.encode(), True),
            (page.replace("http:", "https:").encode(), False),  # the same host and port, not scheme
            (f"http://localhost:{settings.HTTP_PORT + 1000}".encode(), False),
            (b"https://evil.example", False),
        ):
            headers = [(b"origin", origin)] if origin else []
            communicator = WebsocketCommunicator(application, "/v2/iex", headers=headers)
            connected, _ = await communicator.connect(timeout=TIMEOUT)
            assert connected is allowed, origin
            await communicator.disconnect()

    run(body)


def session_cookie_header(user_id: int) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", session_cookie(user_id)[1].encode())]


def test_session_auth_market_data_and_dashboard_updates(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
) -> None:
    account = make_account()
    make_asset("AAPL", price="100.00")
    cookie = session_cookie_header(account.user_id)

    async def body() -> None:
        ws = await open_stream(headers=cookie)
        assert await say(ws, {"action": "auth"}) == [{"T": "success", "msg": "authenticated"}]
        anonymous = await open_stream()
        assert await say(anonymous, {"action": "auth"}) == error(402, "auth failed")
        refused = WebsocketCommunicator(application, "/ws/dashboard")
        assert (await refused.connect(timeout=TIMEOUT))[0] is False
        dashboard = WebsocketCommunicator(application, "/ws/dashboard", headers=cookie)
        assert (await dashboard.connect(timeout=TIMEOUT))[0]
        snapshot = json.loads(await dashboard.receive_from(TIMEOUT))
        assert snapshot["stream"] == "account_update" and set(snapshot["data"]) == {"account", "positions"}
        assert snapshot["data"]["positions"] == [] and snapshot["data"]["account"]["id"] == str(account.pk)
        await database_sync_to_async(services.order_place)(
            account_id=account.pk,
            request=services.OrderRequest(
                symbol="AAPL", qty=shares(2), side="buy", type="market", time_in_force="day"
            ),
        )
        updates = [json.loads(await dashboard.receive_from(TIMEOUT)) for _ in range(2)]
        assert [u["data"]["trade_update"]["event"] for u in updates] == ["new", "fill"]
        assert updates[-1]["stream"] == "account_update"
        assert [p["symbol"] for p in updates[-1]["data"]["positions"]] == ["AAPL"]
        assert updates[-1]["data"]["account"]["status"] == "ACTIVE"
        for communicator in (ws, anonymous, dashboard):
            await communicator.disconnect()

    run(body)


def test_trade_updates_stream(credentials: tuple[str, str], make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL", price="100.00")
    account_id = (
        services.api_key_account_id(credentials[0]) if hasattr(services, "api_key_account_id") else None
    )

    async def body() -> None:
        ws = await open_stream("/stream")
        await ws.send_to(text_data=json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads(await ws.receive_from(TIMEOUT))["data"] == {
            "status": "unauthorized",
            "action": "listen",
        }
        await ws.send_to(
            bytes_data=json.dumps(
                {"action": "authenticate", "data": {"key_id": credentials[0], "secret_key": credentials[1]}}
            ).encode()
        )
        assert json.loads(await ws.receive_from(TIMEOUT)) == {
            "stream": "authorization", "data": {"status": "authorized", "action": "authenticate"},
        }  # fmt: skip
        await ws.send_to(text_data=json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        assert json.loads(await ws.receive_from(TIMEOUT)) == {
            "stream": "listening",
            "data": {"streams": ["trade_updates"]},
        }
        owner = await database_sync_to_async(
            lambda: Account.objects.get(api_keys__key_id=credentials[0]).pk
        )()
        order = await database_sync_to_async(services.order_place)(
            account_id=owner,
            request=services.OrderRequest(
                symbol="AAPL", qty=shares(3), side="buy", type="market", time_in_force="day"
            ),
        )
        new, fill = [json.loads(await ws.receive_from(TIMEOUT)) for _ in range(2)]
        assert (new["stream"], new["data"]["event"], fill["data"]["event"]) == (
            "trade_updates",
            "new",
            "fill",
        )
        assert fill["data"]["order"]["id"] == str(order.pk) and fill["data"]["order"]["status"] == "filled"
        # Each event shows the order as it was then: the new order was not filled yet.
        assert (new["data"]["order"]["status"], new["data"]["order"]["filled_qty"]) == ("new", "0")
        assert new["data"]["order"]["filled_at"] is None and fill["data"]["order"]["filled_qty"] == "3"
        assert (
            fill["data"]["qty"] == "3"
            and fill["data"]["position_qty"] == "3"
            and fill["data"]["price"] == "100.01"
        )
        assert (
            fill["data"]["execution_id"]
            == await database_sync_to_async(lambda: str(Fill.objects.get(order_id=order.pk).pk))()
        )
        assert "execution_id" not in new["data"]
        assert new["data"]["timestamp"].endswith("Z")
        await ws.disconnect()

    assert account_id is None or account_id
    run(body)


def test_trade_updates_connection_limit_per_key(credentials: tuple[str, str], settings: Settings) -> None:
    """/stream counts its sockets per key like market data (apart from it), answers the one over
    the limit with the trading stream's error shape and closes it; a disconnect frees the slot."""
    settings.STREAM_MAX_CONNECTIONS_PER_KEY = 2
    authenticate = {
        "action": "authenticate",
        "data": {"key_id": credentials[0], "secret_key": credentials[1]},
    }
    authorized = {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}}

    async def body() -> None:
        market_data = await open_stream()  # another stream of the same key does not count here
        assert (await say(market_data, auth_message(credentials)))[0]["msg"] == "authenticated"
        first, second, third = [await open_stream("/stream") for _ in range(3)]
        for ws in (first, second):
            assert await say(ws, authenticate) == authorized
        assert await say(third, authenticate) == {
            "stream": "listening",
            "data": {"error": "connection limit exceeded"},
        }
        assert await closed_with(third) == 4406
        await first.disconnect()
        fourth = await open_stream("/stream")
        assert await say(fourth, authenticate) == authorized
        for ws in (second, fourth, market_data):
            await ws.disconnect()

    run(body)


def test_dashboard_sockets_per_session_are_limited(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
) -> None:
    """/ws/dashboard counts its sockets per account apart from the Alpaca streams: the one over the
    limit is refused at the handshake, and a disconnect frees its slot."""
    stream_settings.STREAM_MAX_CONNECTIONS_PER_KEY = 2
    cookie = session_cookie_header(make_account().user_id)

    async def dashboard() -> tuple[bool, WebsocketCommunicator]:
        communicator = WebsocketCommunicator(application, "/ws/dashboard", headers=cookie)
        connected, _ = await communicator.connect(timeout=TIMEOUT)
        if connected:
            assert json.loads(await communicator.receive_from(TIMEOUT))["stream"] == "account_update"
        return connected, communicator

    async def body() -> None:
        market_data = await open_stream(headers=cookie)  # the Alpaca stream counts apart
        assert await say(market_data, {"action": "auth"}) == [{"T": "success", "msg": "authenticated"}]
        (first_ok, first), (second_ok, second) = await dashboard(), await dashboard()
        assert first_ok and second_ok
        third_ok, _ = await dashboard()
        assert third_ok is False
        await first.disconnect()
        fourth_ok, fourth = await dashboard()
        assert fourth_ok
        for communicator in (second, fourth, market_data):
            await communicator.disconnect()

    run(body)


def test_gaps_are_counted_and_a_backwards_jump_is_a_restart(credentials: tuple[str, str]) -> None:
    list_symbols("AAPL")

    async def body() -> None:
        missed = snapshot_value(metrics_snapshot(), "stream_fanout_missed_windows_total") or 0.0
        ws = await open_stream()
        await say(ws, auth_message(credentials))
        await say(ws, {"action": "subscribe", "trades": ["AAPL"]})
        manager = fanout.manager()
        for number in (1, 2, 5, 6, 1):
            publish(window(number, "AAPL", seq=number))
        received = [decode(await ws.receive_from(TIMEOUT))[0]["i"] for _ in range(5)]
        assert received == [1, 2, 5, 6, 1]  # nothing replayed, nothing invented
        deadline = time.monotonic() + TIMEOUT
        while manager.stats.restarts < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert (manager.stats.gaps, manager.stats.missed_windows, manager.stats.restarts) == (1, 2, 1)
        # Property 31: the missed windows reach their series (metrics_snapshot flushes).
        assert (snapshot_value(metrics_snapshot(), "stream_fanout_missed_windows_total") or 0.0) - missed >= 2
        await ws.disconnect()

    run(body)


@pytest.fixture(autouse=True)
def _no_leftover_loops() -> Iterator[None]:
    yield
    assert not fanout._managers, "a test left a fan-out manager running"


# --- Revoked credentials close the sockets that showed them ----------------------------------------


AUTHENTICATED_REPLY = [{"T": "success", "msg": "authenticated"}]
AUTHORIZED = {"stream": "authorization", "data": {"status": "authorized", "action": "authenticate"}}
UNAUTHORIZED = {"stream": "authorization", "data": {"status": "unauthorized", "action": "authenticate"}}


def authenticate_message(credentials: tuple[str, str]) -> dict[str, Any]:
    return {"action": "authenticate", "data": {"key_id": credentials[0], "secret_key": credentials[1]}}


async def open_dashboard(cookie: list[tuple[bytes, bytes]]) -> WebsocketCommunicator:
    dashboard = WebsocketCommunicator(application, "/ws/dashboard", headers=cookie)
    assert (await dashboard.connect(timeout=TIMEOUT))[0]
    assert json.loads(await dashboard.receive_from(TIMEOUT))["stream"] == "account_update"
    return dashboard


async def revoked_with(communicator: WebsocketCommunicator) -> tuple[Any, int]:
    """The message a revoked socket is sent before its close, and the close code."""
    message = decode(await communicator.receive_from(TIMEOUT))
    return message, await closed_with(communicator)


def new_key(account_id: Any) -> tuple[str, str]:
    key, secret = services.api_key_create(account_id=account_id, label="another")
    return key.key_id, secret


def test_revoking_a_key_closes_its_market_data_and_trade_updates_sockets(
    credentials: tuple[str, str], make_asset: Callable[..., Asset]
) -> None:
    make_asset("AAPL", price="100.00")
    owner = Account.objects.get(api_keys__key_id=credentials[0])
    other = new_key(owner.pk)  # the same account's other key stays in use

    async def body() -> None:
        market_data = await open_stream()
        assert await say(market_data, auth_message(credentials)) == AUTHENTICATED_REPLY
        await say(market_data, {"action": "subscribe", "trades": ["AAPL"]})
        trading = await open_stream("/stream")
        assert await say(trading, authenticate_message(credentials)) == AUTHORIZED
        await say(trading, {"action": "listen", "data": {"streams": ["trade_updates"]}})
        kept = await open_stream()
        assert await say(kept, auth_message(other)) == AUTHENTICATED_REPLY
        await say(kept, {"action": "subscribe", "trades": ["AAPL"]})

        await database_sync_to_async(services.api_key_revoke)(key_id=credentials[0])
        assert await revoked_with(market_data) == (error(402, "auth failed"), 4402)
        assert await revoked_with(trading) == (UNAUTHORIZED, 4401)
        publish(window(1, "AAPL"))
        assert [e["S"] for e in decode(await kept.receive_from(TIMEOUT))] == ["AAPL"]
        # The key is refused from now on, on a new socket too.
        again = await open_stream()
        assert await say(again, auth_message(credentials)) == error(402, "auth failed")
        # Deleting a key (the admin) is revoking it too.
        await database_sync_to_async(ApiKey.objects.filter(key_id=other[0]).delete)()
        assert await revoked_with(kept) == (error(402, "auth failed"), 4402)
        await again.disconnect()

    run(body)


def test_logout_closes_that_sessions_sockets_and_no_other(
    stream_settings: Settings, transactional_db: None, make_account: Callable[..., Account]
) -> None:
    user_id = make_account().user_id
    leaving, leaving_cookie = session_cookie(user_id)
    _, staying_cookie = session_cookie(user_id)

    async def body() -> None:
        market_data = await open_stream(headers=[(b"cookie", leaving_cookie.encode())])
        assert await say(market_data, {"action": "auth"}) == AUTHENTICATED_REPLY
        trading = await open_stream("/stream", headers=[(b"cookie", leaving_cookie.encode())])
        assert await say(trading, {"action": "authenticate", "data": {}}) == AUTHORIZED
        dashboard = await open_dashboard([(b"cookie", leaving_cookie.encode())])
        other_session = await open_dashboard([(b"cookie", staying_cookie.encode())])

        await database_sync_to_async(leaving.logout)()
        assert await revoked_with(market_data) == (error(402, "auth failed"), 4402)
        assert await revoked_with(trading) == (UNAUTHORIZED, 4401)
        assert await closed_with(dashboard) == 4401
        assert await other_session.receive_nothing(0.3)
        await other_session.disconnect()

    run(body)


def test_a_password_change_closes_the_users_session_sockets_and_deactivation_all_of_them(
    credentials: tuple[str, str],
) -> None:
    user = Account.objects.get(api_keys__key_id=credentials[0]).user
    cookie = [(b"cookie", session_cookie(user.pk)[1].encode())]

    async def body() -> None:
        session_socket = await open_stream(headers=cookie)
        assert await say(session_socket, {"action": "auth"}) == AUTHENTICATED_REPLY
        dashboard = await open_dashboard(cookie)
        key_socket = await open_stream()
        assert await say(key_socket, auth_message(credentials)) == AUTHENTICATED_REPLY

        def change_password() -> None:
            user.set_password("another-pw-987!")
            user.save()

        await database_sync_to_async(change_password)()
        assert await revoked_with(session_socket) == (error(402, "auth failed"), 4402)
        assert await closed_with(dashboard) == 4401
        assert await key_socket.receive_nothing(0.3)  # an API key is not a password

        def deactivate() -> None:
            user.is_active = False
            user.save()

        await database_sync_to_async(deactivate)()
        assert await revoked_with(key_socket) == (error(402, "auth failed"), 4402)

    run(body)


def test_authenticating_again_keeps_the_first_identity(
    credentials: tuple[str, str], make_account: Callable[..., Account], make_asset: Callable[..., Asset]
) -> None:
    """Another key's credentials on an authenticated socket are refused (market data: Alpaca's
    403; trade_updates: an error message) and the socket stays the first key's."""
    make_asset("AAPL", price="100.00")
    mine = Account.objects.get(api_keys__key_id=credentials[0])
    stranger = make_account()
    strangers_key = new_key(stranger.pk)

    async def body() -> None:
        market_data = await open_stream()
        assert await say(market_data, auth_message(credentials)) == AUTHENTICATED_REPLY
        assert await say(market_data, auth_message(strangers_key)) == error(403, "already authenticated")
        trading = await open_stream("/stream")
        assert await say(trading, authenticate_message(credentials)) == AUTHORIZED
        assert await say(trading, authenticate_message(strangers_key)) == {
            "stream": "listening",
            "data": {"error": "already authenticated"},
        }
        await say(trading, {"action": "listen", "data": {"streams": ["trade_updates"]}})
        placed = {
            account: await database_sync_to_async(services.order_place)(
                account_id=account.pk,
                request=services.OrderRequest(
                    symbol="AAPL", qty=shares(1), side="buy", type="market", time_in_force="day"
                ),
            )
            for account in (stranger, mine)
        }
        updates = [json.loads(await trading.receive_from(TIMEOUT)) for _ in range(2)]
        assert [(u["data"]["event"], u["data"]["order"]["id"]) for u in updates] == [
            ("new", str(placed[mine].pk)),
            ("fill", str(placed[mine].pk)),
        ]
        assert await trading.receive_nothing(0.3)
        # Revoking the stranger's key leaves the socket alone: it never held that key.
        await database_sync_to_async(services.api_key_revoke)(key_id=strangers_key[0])
        assert await market_data.receive_nothing(0.3)
        for communicator in (market_data, trading):
            await communicator.disconnect()

    run(body)


def test_a_credential_revoked_during_its_check_is_not_held(stream_settings: Settings) -> None:
    """A check that read the key just before its revocation committed must not outlive it."""

    async def body() -> None:
        manager = fanout.manager()
        holder = object()
        started = manager.clock()
        manager.revoke(json.dumps({"revoke": ["key:PKRACE"]}))
        assert not manager.revocations.hold(("key:PKRACE", "user:1"), holder, checked_at=started)  # type: ignore[arg-type]
        assert manager.revocations.holders == {}
        assert manager.revocations.hold(("key:PKRACE", "user:1"), holder, checked_at=manager.clock())  # type: ignore[arg-type]

    run(body)


# --- Subscriptions: listed symbols only, validated before anything changes -----------------------


def test_a_subscription_holds_only_listed_symbols_and_its_reply_stays_small(
    credentials: tuple[str, str],
) -> None:
    """The amplification: thousands of made-up 32-character symbols on three channels, then the
    same one-symbol subscribe again and again. Unknown symbols are left out, so every reply is
    as small as the real subscription."""
    list_symbols("AAPL", "MSFT")
    made_up = [f"{number:032d}" for number in range(2000)]

    async def body() -> None:
        ws = await open_stream()
        await say(ws, auth_message(credentials))
        for channel in ("trades", "quotes", "bars"):
            reply = await say(ws, {"action": "subscribe", channel: [*made_up, "AAPL"]})
            assert reply[0][channel] == ["AAPL"]
        await ws.send_to(text_data=json.dumps({"action": "subscribe", "trades": ["AAPL"]}))
        frame = await ws.receive_from(TIMEOUT)
        assert len(frame) < 300, frame
        assert decode(frame)[0] == {
            "T": "subscription",
            "trades": ["AAPL"], "quotes": ["AAPL"], "bars": ["AAPL"], "updatedBars": [],
            "dailyBars": [], "statuses": [], "corrections": ["AAPL"], "cancelErrors": ["AAPL"],
        }  # fmt: skip
        assert set(fanout.manager().by_symbol) == {"AAPL"}  # nothing routed for made-up names
        publish(window(1, made_up[0], "MSFT", "AAPL"))
        assert {e["S"] for e in decode(await ws.receive_from(TIMEOUT))} == {"AAPL"}
        await ws.disconnect()

    run(body)


def test_a_subscription_whose_reply_would_not_fit_a_frame_is_refused_and_changes_nothing(
    credentials: tuple[str, str], settings: Settings
) -> None:
    settings.STREAM_MAX_FRAME_BYTES = 300
    symbols = [f"S{number:02d}" for number in range(40)]
    list_symbols(*symbols)

    async def body() -> None:
        ws = await open_stream()
        await say(ws, auth_message(credentials))
        assert (await say(ws, {"action": "subscribe", "trades": ["S00"]}))[0]["trades"] == ["S00"]
        assert await say(ws, {"action": "subscribe", "trades": symbols}) == error(
            405, "symbol limit exceeded"
        )
        publish(window(1, "S05", "S00"))
        assert [e["S"] for e in decode(await ws.receive_from(TIMEOUT)) if e["T"] == "t"] == ["S00"]
        reply = await say(ws, {"action": "subscribe", "quotes": ["S01"]})
        assert (reply[0]["trades"], reply[0]["quotes"]) == (["S00"], ["S01"])
        await ws.disconnect()

    run(body)


def test_the_symbol_budget_spans_all_of_an_accounts_keys(
    credentials: tuple[str, str], settings: Settings, make_account: Callable[..., Account]
) -> None:
    settings.STREAM_MAX_SYMBOLS_PER_ACCOUNT = 5
    symbols = [f"S{number}" for number in range(10)]
    list_symbols(*symbols)
    second_key = new_key(Account.objects.get(api_keys__key_id=credentials[0]).pk)
    strangers_key = new_key(make_account().pk)

    async def body() -> None:
        first = await open_stream()
        await say(first, auth_message(credentials))
        assert (await say(first, {"action": "subscribe", "trades": symbols[:3]}))[0]["trades"] == symbols[:3]
        second = await open_stream()
        await say(second, auth_message(second_key))
        refused = await say(second, {"action": "subscribe", "trades": symbols[3:6], "quotes": ["*"]})
        assert refused == error(405, "symbol limit exceeded")
        assert (await say(second, {"action": "subscribe", "quotes": ["*"]}))[0]["quotes"] == ["*"]
        assert (await say(second, {"action": "subscribe", "trades": symbols[3:5]}))[0]["trades"] == symbols[
            3:5
        ]
        stranger = await open_stream()
        await say(stranger, auth_message(strangers_key))
        assert len((await say(stranger, {"action": "subscribe", "trades": symbols[:5]}))[0]["trades"]) == 5
        # A closed connection gives its symbols back.
        await first.disconnect()
        reply = await say(second, {"action": "subscribe", "trades": symbols[5:8]})
        assert reply[0]["trades"] == symbols[3:8]
        for ws in (second, stranger):
            await ws.disconnect()

    run(body)
