"""The polled account reads joined onto the account's row (``PreparedQuery.run_joined``): an
API key's GET /v2/account, /v2/positions, /v2/positions/{symbol} and its open orders read the
account (with its game) and the read in one statement, and answer, byte for byte, what the
two-statement path (the account loaded first, then the read; a session's path) answers, in every
state an account can be in (docs/architecture.md, The polled reads). Property 34 for them is in
tests/trading/test_polled_reads.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.builders import class_game
from tests.clock import ManualClock
from tests.trading.api_support import (
    KeyClient,
    MakeAccount,
    MakeAsset,
    assert_alpaca_error,
    buy,
    key_client,
    post_order,
)
from trading import services
from trading.api import views_base
from trading.models import OPEN_ORDER_STATUSES, Account, Order, StockPriceHistory
from trading.quotes import LatestQuote, latest_quotes_store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]
# 11:00 New York, a Tuesday: the market is open.
AT = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.UTC)
READS = (
    "/v2/account",
    "/v2/positions",
    "/v2/positions/AAPL",
    "/v2/positions/TSLA",
    "/v2/orders",
    "/v2/orders?status=open",
    "/v2/orders?status=all&direction=asc",
)


@contextmanager
def _two_statement_path() -> Iterator[None]:
    """Every read takes the path before this change: the account loaded, then the read."""
    with mock.patch.object(views_base, "request_account_joined", lambda request, *, part: None):
        yield


def _assert_joined_answers_as_before(client: KeyClient) -> None:
    joined = [(client.get(path).status_code, client.get(path).content) for path in READS]
    with _two_statement_path():
        before = [(client.get(path).status_code, client.get(path).content) for path in READS]
    assert joined == before


def _quotes_in_redis(*symbols: str) -> None:
    """Each symbol's newest stored tick published to Redis, as the market does after a window."""
    for symbol in symbols:
        tick = StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").first()
        assert tick is not None
        latest_quotes_store(quotes=[LatestQuote.from_tick(tick)])


def _statements(client: KeyClient, path: str) -> int:
    client.get(path)  # warms the in-process API-key cache: the count is the read's own
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return len(captured)


def test_the_joined_reads_answer_as_the_two_statement_path_in_every_state(
    l1_clock: ManualClock, make_asset: MakeAsset, account: Account
) -> None:
    with time_machine.travel(AT, tick=False):
        make_asset("AAPL", price="100.00")
        make_asset("MSFT", price="200.00")
        make_asset("TSLA", price="300.00")
        services.account_configure(account_id=account.pk, no_shorting=False)
        client = key_client(account)
        _assert_joined_answers_as_before(client)  # no position, no order
        buy(client, "AAPL", 3)
        buy(client, "MSFT", 2)
        response = post_order(client, symbol="TSLA", qty=2, side="sell")  # a short
        assert response.status_code == 200, response.content
        _assert_joined_answers_as_before(client)  # long and short positions, fills today
        for body in (
            {"type": "limit", "limit_price": "50"},
            {"type": "stop", "stop_price": "150", "side": "buy"},
            {"type": "stop_limit", "stop_price": "150", "limit_price": "151"},
            {"type": "trailing_stop", "trail_percent": "5", "side": "sell"},
            {"type": "trailing_stop", "trail_price": "4", "side": "sell"},
            {"type": "limit", "limit_price": "60", "time_in_force": "gtc"},
            {
                "type": "limit",
                "limit_price": "70",
                "order_class": "bracket",
                "take_profit": {"limit_price": "130"},
                "stop_loss": {"stop_price": "60"},
            },
        ):
            response = post_order(client, symbol="AAPL", qty=1, **body)
            assert response.status_code == 200, response.content
        assert Order.objects.filter(account=account, status__in=["new", "held", "accepted"]).count() >= 7
        _assert_joined_answers_as_before(client)  # open orders of every type
        # A reset today: the day's figures start from it.
        assert client.post("/v2/account/reset").status_code == 200
        _assert_joined_answers_as_before(client)
    with time_machine.travel(AT + dt.timedelta(minutes=30), tick=False):
        buy(client, "AAPL", 1)
        post_order(client, symbol="MSFT", qty=1, type="limit", limit_price="10")
        _assert_joined_answers_as_before(client)  # fills and orders since the reset


def test_a_game_accounts_reads_join_while_it_runs_and_close_its_orders_once_it_is_over(
    l1_clock: ManualClock, make_asset: MakeAsset, make_account: MakeAccount
) -> None:
    start = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
    during = start + dt.timedelta(hours=1)
    make_asset("AAPL", price="100.00")
    make_asset("TSLA", price="300.00")
    organiser: User = make_account(username="teacher").user
    game = class_game(organiser=organiser, start=start)
    player = make_account()
    client = key_client(services.game_join(game_id=game.pk, user=player.user, now=start).account)
    with time_machine.travel(during, tick=False):
        buy(client, "AAPL", 2)
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
        _quotes_in_redis("AAPL", "TSLA")  # as while the market runs: no quote read from the database
        _assert_joined_answers_as_before(client)
        for path in ("/v2/account", "/v2/positions", "/v2/orders"):
            assert _statements(client, path) == 1
        services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=during)
        # The first read after the end closes the open order before it answers (close on read).
        account = client.get("/v2/account").json()
        assert account["trading_blocked"] is True
        assert client.get("/v2/orders").json() == []
        _assert_joined_answers_as_before(client)


def test_the_first_read_after_a_games_end_closes_its_open_orders(
    l1_clock: ManualClock, make_asset: MakeAsset, make_account: MakeAccount
) -> None:
    """Whichever joined read comes first sees the orders closed, and the account's reservation
    released by the close (the account read again after it)."""
    start = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
    during = start + dt.timedelta(hours=1)
    make_asset("AAPL", price="100.00")
    organiser: User = make_account(username="teacher").user
    game = class_game(organiser=organiser, start=start)
    clients: dict[str, KeyClient] = {}
    for path in ("/v2/account", "/v2/orders", "/v2/positions"):
        player = make_account()
        client = key_client(services.game_join(game_id=game.pk, user=player.user, now=start).account)
        with time_machine.travel(during, tick=False):
            post_order(client, symbol="AAPL", qty=10, type="limit", limit_price="50")
            before = client.get("/v2/account").json()
            assert before["buying_power"] != before["cash"]  # the order's reservation
        clients[path] = client
    # The game ends by its clock, no job run since: the orders are still open in the database.
    after = game.ends_at + dt.timedelta(hours=1)
    for path, client in clients.items():
        with time_machine.travel(after, tick=False):
            assert Order.objects.filter(account=client.account, status__in=OPEN_ORDER_STATUSES).count() == 1
            first = client.get(path)
            assert first.status_code == 200, first.content
            assert not Order.objects.filter(account=client.account, status__in=OPEN_ORDER_STATUSES).exists()
            if path == "/v2/account":
                assert first.json()["buying_power"] == first.json()["cash"]
            if path == "/v2/orders":
                assert first.json() == []


def _refused_in_one_statement(client: KeyClient) -> None:
    """Every read answers 403 in Alpaca's shape (code and message, no data), in one statement: the
    account's row (joined onto the read, where the read is joined) that the key no longer finds."""
    for path in READS:
        with CaptureQueriesContext(connection) as captured:
            response = client.get(path)
        assert_alpaca_error(response, 403)
        assert len(captured) == 1, (path, [query["sql"] for query in captured])
        if path in ("/v2/account", "/v2/positions", "/v2/positions/AAPL", "/v2/orders"):
            assert "ON 1 = 1" in captured[0]["sql"], path  # the joined path's statement


def _key_client_with_its_key_cached(make_asset: MakeAsset, account: Account) -> KeyClient:
    """A key client of ``account``, holding one AAPL share, that has made every read once: the
    key and its owner are cached in-process (no TSLA position: 404)."""
    make_asset("AAPL", price="100.00")
    client = key_client(account)
    buy(client, "AAPL", 1)
    for path in READS:
        assert client.get(path).status_code == (404 if path.endswith("TSLA") else 200)
    return client


def test_a_cached_key_whose_account_was_deleted_is_refused_on_the_joined_path(
    l1_clock: ManualClock, make_asset: MakeAsset, account: Account
) -> None:
    client = _key_client_with_its_key_cached(make_asset, account)
    Account.objects.filter(pk=account.pk).delete()  # its key with it, still in the cache
    _refused_in_one_statement(client)


def test_a_cached_key_whose_account_changed_owner_is_refused_on_the_joined_path(
    l1_clock: ManualClock, make_asset: MakeAsset, account: Account
) -> None:
    client = _key_client_with_its_key_cached(make_asset, account)
    other = User.objects.create_user(username="someone-else", password="pw-123456!")  # no account of its own
    Account.objects.filter(pk=account.pk).update(user=other)  # the key's cached user no longer owns it
    _refused_in_one_statement(client)
