"""The reads an alpaca-py bot polls: account, positions, open orders, latest trade and quote,
snapshot (docs/architecture.md, The polled reads).

- The statements each read takes, pinned: what they cost is behaviour (a constant number of
  statements whatever the holdings is Property 2; here the exact number), their time is not
  asserted. Quotes come from Redis, as while the market runs.
- Property 34 for these reads: none is cached, so after every write (a fill, a cancel, a reset, a
  configuration change, a game's end, a new quote) the very next read shows it. These tests keep
  that true for whatever copy a later change adds.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from alpaca.trading.models import Order as AlpacaOrder, Position as AlpacaPosition, TradeAccount
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.builders import add_minute_bar_ramps, class_game, set_quote
from tests.clock import ManualClock
from tests.trading.api_support import MakeAccount, buy, key_client, post_order
from trading import selectors, services
from trading.api.serializers import OrdersQuerySerializer
from trading.api.views_orders import _ORDERS_QUERY_DEFAULTS
from trading.models import Account, Asset, DailyBar, StockPriceHistory
from trading.quotes import LatestQuote, latest_quotes_store

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]
# The instant the tests that depend on the day read at (11:00 New York, a Tuesday): the clock is
# stopped there, so they pass at any hour, on any day and in any time zone.
AT = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.UTC)


def _quotes_in_redis(*symbols: str) -> None:
    """Each symbol's newest stored tick published to Redis, as the market does after a window."""
    for symbol in symbols:
        tick = StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").first()
        assert tick is not None
        latest_quotes_store(quotes=[LatestQuote.from_tick(tick)])


def _statements(client, path: str) -> int:
    client.get(path)  # warms the API-key cache: the count is the read's own
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    return len(captured)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        # the account (with its game) and its book (trading/book.py), one statement
        ("/v2/account", 1),
        ("/v2/positions", 1),
        ("/v2/positions/AAPL", 1),
        # the account and its open orders, one statement
        ("/v2/orders?status=open", 1),
        ("/v2/orders", 1),
        # the latest quotes in Redis: no statement
        ("/v2/stocks/AAPL/trades/latest", 0),
        ("/v2/stocks/trades/latest?symbols=AAPL,MSFT", 0),
        ("/v2/stocks/AAPL/quotes/latest", 0),
        ("/v2/stocks/quotes/latest?symbols=AAPL,MSFT", 0),
        # the newest minute bar and the two newest daily bars, one statement
        ("/v2/stocks/AAPL/snapshot", 1),
        ("/v2/stocks/snapshots?symbols=AAPL,MSFT", 1),
    ],
)
def test_each_polled_read_takes_its_pinned_statements(
    l1_clock: ManualClock, make_asset, account: Account, path: str, expected: int
) -> None:
    with time_machine.travel(AT, tick=False):
        make_asset("AAPL", price="100.00")
        make_asset("MSFT", price="200.00")
        client = key_client(account)
        buy(client, "AAPL", 3)
        buy(client, "MSFT", 2)
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
        services.account_grant_cash(account_id=account.pk, amount_cents=5_000, memo="bonus")
        add_minute_bar_ramps(
            {"AAPL": 1_000_000, "MSFT": 2_000_000}, start=AT - dt.timedelta(minutes=5), minutes=3
        )
        _quotes_in_redis("AAPL", "MSFT")

        assert _statements(client, path) == expected


def test_without_redis_quotes_the_latest_values_take_one_statement(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    """No market running: the latest trade comes from the newest stored tick, one statement for
    any number of symbols; positions add that one to theirs."""
    client = key_client(account)
    buy(client, "AAPL", 1)
    assert _statements(client, "/v2/stocks/AAPL/trades/latest") == 1
    assert _statements(client, "/v2/positions") == 2


def test_the_latest_trade_from_redis_is_the_stored_tick(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    """The same answer, to the byte, whether the newest tick is read from the database or from
    the market's copy in Redis."""
    client = key_client(account)
    set_quote("AAPL", price="123.45", at=dt.datetime(2025, 6, 2, 14, 0, 0, 123_456, tzinfo=dt.UTC))
    paths = [
        "/v2/stocks/AAPL/trades/latest",
        "/v2/stocks/quotes/latest?symbols=AAPL",
        "/v2/stocks/AAPL/snapshot",
    ]
    from_database = [client.get(path).content for path in paths]
    _quotes_in_redis("AAPL")
    assert [client.get(path).content for path in paths] == from_database


# --- Property 34: every write is visible on the next read -----------------------------------------


def _account(client) -> TradeAccount:
    return TradeAccount(**client.get("/v2/account").json())


def _positions(client) -> dict[str, AlpacaPosition]:
    return {p["symbol"]: AlpacaPosition(**p) for p in client.get("/v2/positions").json()}


def _open_orders(client) -> list[str]:
    return [AlpacaOrder(**order).id.hex for order in client.get("/v2/orders?status=open").json()]


def test_property_34_a_fill_shows_on_the_next_reads(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    client = key_client(account)
    _quotes_in_redis("AAPL")
    assert _positions(client) == {} and _account(client).cash == "100000.00"

    buy(client, "AAPL", 10)  # fills at the ask, $100.01
    assert _positions(client)["AAPL"].qty == "10"
    assert _account(client).cash == "98999.90"

    post_order(client, symbol="AAPL", qty=4, side="sell")
    assert _positions(client)["AAPL"].qty == "6"
    assert _account(client).cash == f"{98_999.90 + 4 * 99.99:.2f}"


def test_property_34_a_new_quote_shows_on_the_next_reads(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    client = key_client(account)
    buy(client, "AAPL", 10)
    _quotes_in_redis("AAPL")
    assert _positions(client)["AAPL"].current_price == "100.00"
    set_quote("AAPL", price="110.00")
    _quotes_in_redis("AAPL")
    assert _positions(client)["AAPL"].current_price == "110.00"
    assert _account(client).long_market_value == "1100.00"
    assert client.get("/v2/stocks/AAPL/trades/latest").json()["trade"]["p"] == 110.0


def test_property_34_placing_and_canceling_show_on_the_next_reads(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    client = key_client(account)
    _quotes_in_redis("AAPL")
    placed = post_order(client, symbol="AAPL", qty=2, type="limit", limit_price="50").json()
    assert _open_orders(client) == [placed["id"].replace("-", "")]
    assert _account(client).buying_power == "99900.00"  # $100 reserved

    assert client.delete(f"/v2/orders/{placed['id']}").status_code == 204
    assert _open_orders(client) == []
    assert _account(client).buying_power == "100000.00"


def test_property_34_a_reset_and_a_grant_show_on_the_next_reads(
    l1_clock: ManualClock, asset: Asset, account: Account
) -> None:
    client = key_client(account)
    _quotes_in_redis("AAPL")
    buy(client, "AAPL", 10)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")

    assert client.post("/v2/account/reset").status_code == 200
    assert _positions(client) == {} and _open_orders(client) == []
    assert _account(client).cash == "100000.00"

    services.account_grant_cash(account_id=account.pk, amount_cents=12_345, memo="bonus")
    assert _account(client).cash == "100123.45"


def test_property_34_a_configuration_change_shows_on_the_next_read(
    l1_clock: ManualClock, account: Account
) -> None:
    client = key_client(account)
    assert _account(client).trade_suspended_by_user is False
    client.patch("/v2/account/configurations", {"suspend_trade": True, "no_shorting": True}, format="json")
    body = client.get("/v2/account").json()
    assert (body["trade_suspended_by_user"], body["trading_blocked"], body["shorting_enabled"]) == (
        True,
        True,
        False,
    )


def test_property_34_a_games_end_shows_on_the_next_reads(
    l1_clock: ManualClock, asset: Asset, make_account: MakeAccount
) -> None:
    start = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
    during = start + dt.timedelta(hours=1)
    organiser: User = make_account(username="teacher").user
    game = class_game(organiser=organiser, start=start)
    player = make_account()
    game_account = services.game_join(game_id=game.pk, user=player.user, now=start).account
    client = key_client(game_account)
    with time_machine.travel(during, tick=False):
        post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
        assert len(_open_orders(client)) == 1 and _account(client).trading_blocked is False
        services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=during)
        assert _open_orders(client) == []
        assert _account(client).trading_blocked is True


def test_the_book_matches_yesterdays_close_and_todays_flows(
    l1_clock: ManualClock, asset: Asset, make_account: MakeAccount
) -> None:
    """The one-statement book prices the day as the separate reads did: yesterday's close for
    shares held since, today's trades at their price."""
    DailyBar.objects.create(
        symbol="AAPL",
        start=selectors.day_boundary(AT) - dt.timedelta(days=1),
        open_units=900_000,
        high_units=900_000,
        low_units=900_000,
        close_units=950_000,
        volume=1,
        trade_count=1,
        vwap_units=950_000,
    )
    with time_machine.travel(AT - dt.timedelta(hours=1), tick=False):
        client = key_client(make_account())  # opened today, before its trades
    with time_machine.travel(AT, tick=False):
        buy(client, "AAPL", 10)  # today, at $100.01
        position = _positions(client)["AAPL"]
        account_read = _account(client)
    assert (position.lastday_price, position.current_price) == ("95.00", "100.00")
    assert position.unrealized_intraday_pl == "-0.10"  # bought today: measured from the fill
    assert account_read.last_equity == "100000.00"


@pytest.mark.parametrize("status", ["", "open", "closed", "all"])
def test_an_order_poll_answers_as_the_full_query_does(asset: Asset, account: Account, status: str) -> None:
    """A query naming at most a status skips the serializer: its answer is the one the
    serializer's path gives (here forced by a parameter at its default value)."""
    client = key_client(account)
    buy(client, "AAPL", 1)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
    query = f"?status={status}" if status else "?"
    polled = client.get(f"/v2/orders{query}")
    full = client.get(f"/v2/orders{query}&direction=desc")
    assert polled.status_code == full.status_code == 200
    assert polled.content == full.content and polled.json()
    assert client.get("/v2/orders?status=bogus").status_code == 422


def test_the_order_polls_defaults_are_what_the_serializer_gives() -> None:
    """Guards the bypass (docs/architecture.md, Framework bypasses): the defaults read from DRF's
    fields (``field.default``, ``empty``) are what the serializer validates an empty query to."""
    serializer = OrdersQuerySerializer(data={})
    assert serializer.is_valid(), serializer.errors
    assert dict(serializer.validated_data) == _ORDERS_QUERY_DEFAULTS
