"""A dashboard session's reads of its account and book see one moment (trading/api/views_base.py,
``request_account_read``): the account loaded first (by the rate limiter, and a finished game's
orders closed then), its row read again with the book. An account reset committed by another
connection right after the load leaves the answer wholly after the reset, never cash from before
it with positions from after it; the path before this (the loaded row, then the book) gives that
torn equity. Real threads and connections, on SQLite (WAL) and PostgreSQL, as
tests/analytics/test_book_snapshot.py does for the book."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from realtime.selectors import account_snapshot_get
from tests.builders import class_game, set_quote
from tests.snapshot_support import reset_after_account_selects
from tests.trading.api_support import MakeAccount, MakeAsset, buy, key_client, post_order
from trading import selectors, services
from trading.api import views_base
from trading.models import OPEN_ORDER_STATUSES, Account, Order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("no_commission")]
# 11:00 New York, a Tuesday: the market is open.
AT = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.UTC)
READS = ("/v2/account", "/v2/positions", "/v2/positions/AAPL", "/v2/dashboard/bootstrap")


def _session(account: Account) -> APIClient:
    client = APIClient()
    client.force_login(account.user)
    session = client.session
    session[selectors.SESSION_ACCOUNT_KEY] = str(account.pk)
    session.save()
    return client


@pytest.fixture
def holder(make_asset: MakeAsset, account: Account) -> Iterator[Account]:
    """An account holding 10 AAPL bought at 100.00, now quoted at 50.00: a reset changes its
    equity. The clock stopped (the answers carry no wall-clock time)."""
    with time_machine.travel(AT, tick=False):
        make_asset("AAPL", price="100.00")
        buy(_session(account), "AAPL", 10)
        set_quote("AAPL", price="50.00")
        yield account


@contextmanager
def _path_before() -> Iterator[None]:
    """A session's read as before this change: the row it loaded, then the read alone."""
    with mock.patch.object(views_base, "account_read_with_row", lambda account, read: read.alone(account)):
        yield


def _balances(body: dict[str, Any]) -> tuple[str, str, str]:
    account = body.get("account", body)  # the bootstrap's, or GET /v2/account's
    return account["cash"], account["long_market_value"], account["equity"]


@pytest.mark.parametrize("path", ["/v2/account", "/v2/dashboard/bootstrap"])
def test_a_reset_between_the_load_and_the_read_is_not_half_seen(holder: Account, path: str) -> None:
    client = _session(holder)
    with time_machine.travel(AT, tick=False):
        before = _balances(client.get(path).json())
        with reset_after_account_selects(holder):
            during = client.get(path)
        after = client.get(path)
    assert during.status_code == after.status_code == 200, during.content
    assert _balances(after.json())[1] == "0.00" and _balances(after.json()) != before  # the reset is real
    assert _balances(during.json()) == _balances(after.json())
    if path == "/v2/account":
        assert during.content == after.content  # wholly after the reset, byte for byte
    else:
        assert during.json()["positions"] == after.json()["positions"] == []


@pytest.mark.parametrize("path", ["/v2/account", "/v2/dashboard/bootstrap"])
def test_without_the_snapshot_the_same_read_is_torn(holder: Account, path: str) -> None:
    """The control: the row loaded before the reset with the book read after it, an equity the
    account never had."""
    client = _session(holder)
    with time_machine.travel(AT, tick=False):
        before = _balances(client.get(path).json())
        with _path_before(), reset_after_account_selects(holder):
            torn = _balances(client.get(path).json())
        after = _balances(client.get(path).json())
    assert torn[0] == before[0] and torn[1] == "0.00"  # cash from before, holdings from after
    assert torn[2] not in (before[2], after[2])


def test_not_joined_the_row_and_the_book_are_read_in_one_snapshot(
    holder: Account, settings: Settings
) -> None:
    """``PREPARED_QUERIES`` off (no joined statement): the row read again and the book in one
    snapshot; a reset committed between the two is not seen by the book."""
    settings.PREPARED_QUERIES = False
    client = _session(holder)
    with time_machine.travel(AT, tick=False):
        before = client.get("/v2/account")
        with reset_after_account_selects(holder, count=2):
            during = client.get("/v2/account")
        after = client.get("/v2/account")
    assert _balances(after.json()) != _balances(before.json())
    assert during.content == before.content


def test_the_dashboards_stream_snapshot_reads_one_moment(holder: Account) -> None:
    """The account and positions the dashboard's stream pushes (realtime/selectors.py)."""
    with time_machine.travel(AT, tick=False):
        before = account_snapshot_get(account_id=str(holder.pk))
        with reset_after_account_selects(holder):
            during = account_snapshot_get(account_id=str(holder.pk))
        after = account_snapshot_get(account_id=str(holder.pk))
    assert before is not None and after is not None and before != after
    assert during == before


def test_without_the_snapshot_the_streams_snapshot_is_torn(holder: Account) -> None:
    """The control: the same statements, each in its own snapshot."""
    with time_machine.travel(AT, tick=False):
        before = account_snapshot_get(account_id=str(holder.pk))
        with (
            mock.patch("config.read_snapshot.read_snapshot", contextlib.nullcontext),
            reset_after_account_selects(holder),
        ):
            torn = account_snapshot_get(account_id=str(holder.pk))
        after = account_snapshot_get(account_id=str(holder.pk))
    assert before is not None and after is not None
    assert torn is not None and torn["account"]["equity"] not in (
        before["account"]["equity"],
        after["account"]["equity"],
    )


def _answers(client: APIClient) -> list[tuple[int, bytes]]:
    return [(response.status_code, response.content) for response in map(client.get, READS)]


def test_the_session_answers_as_before_in_as_many_statements(
    l1_clock: Any, make_asset: MakeAsset, account: Account
) -> None:
    """Byte for byte what the path before answered, in every state the book has (long, short, open
    orders, a reset today), and as many statements."""
    with time_machine.travel(AT, tick=False):
        make_asset("AAPL", price="100.00")
        make_asset("TSLA", price="300.00")
        services.account_configure(account_id=account.pk, no_shorting=False)
        client = _session(account)

        def as_before() -> None:
            now = _answers(client)
            with _path_before():
                assert now == _answers(client)
            for path in READS[:3]:
                with CaptureQueriesContext(connection) as new:
                    client.get(path)
                with _path_before(), CaptureQueriesContext(connection) as old:
                    client.get(path)
                assert len(new) == len(old), (path, [query["sql"] for query in new])

        as_before()  # nothing held
        buy(client, "AAPL", 3)
        assert post_order(client, symbol="TSLA", qty=2, side="sell").status_code == 200  # a short
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
        as_before()
        assert client.post("/v2/account/reset").status_code == 200
        buy(client, "AAPL", 1)
        as_before()


def test_a_finished_games_session_read_closes_its_orders_and_answers_as_its_key(
    make_asset: MakeAsset, make_account: MakeAccount
) -> None:
    """The settling write before the read, as before: the first session read after the game's end
    closes the open order and answers with the reservation released, as the key's read does."""
    start = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
    make_asset("AAPL", price="100.00")
    organiser: User = make_account(username="teacher").user
    game = class_game(organiser=organiser, start=start)
    player = make_account()
    game_account = services.game_join(game_id=game.pk, user=player.user, now=start).account
    session = _session(game_account)
    with time_machine.travel(start + dt.timedelta(hours=1), tick=False):
        buy(session, "AAPL", 2)
        assert post_order(session, symbol="AAPL", qty=10, type="limit", limit_price="50").status_code == 200
        open_before = session.get("/v2/account").json()
        assert open_before["buying_power"] != open_before["cash"]
    with time_machine.travel(game.ends_at + dt.timedelta(hours=1), tick=False):
        assert Order.objects.filter(account=game_account, status__in=OPEN_ORDER_STATUSES).count() == 1
        first = session.get("/v2/account")
        assert first.status_code == 200, first.content
        assert not Order.objects.filter(account=game_account, status__in=OPEN_ORDER_STATUSES).exists()
        body = first.json()
        assert body["buying_power"] == body["cash"] and body["trading_blocked"] is True
        assert body["long_market_value"] == open_before["long_market_value"]
        assert first.content == key_client(game_account).get("/v2/account").content
        assert session.get("/v2/account").content == first.content
