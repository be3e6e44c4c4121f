"""Partial fills, IOC and FOK (docs/architecture.md, Partial fills): an execution takes at most
the size shown at the touch, the rest rests and fills at the following quotes, one
``partial_fill`` event per execution and ``fill`` for the last; reservations are released in
proportion to each execution.

Events are read from the real order-events channel on Redis, as the stream consumers read them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from pytest_django.fixtures import Settings
from redis.client import PubSub

from tests.builders import set_quote, shares
from tests.trading.api_support import key_client
from tests.trading.test_order_lifecycle import channel, committed, published, states
from tests.trading.test_services import assert_books_balance
from trading import services
from trading.errors import NotCancelable
from trading.models import Account, Asset, CashEntry, Fill, Order, Position
from trading.services import OrderRequest
from trading.units import trade_value_cents

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

__all__ = ["channel"]  # the order-events fixture, shared with the lifecycle tests

NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
ASK, BID = 1_000_100, 999_900  # AAPL at $100.00: ask $100.01 for 400 shares, bid $99.99 for 300


@pytest.fixture
def rich(make_account: Callable[..., Account]) -> Account:
    return make_account(cash=100_000_000)  # $1,000,000


def place(account: Account, **fields: object) -> Order:
    values: dict[str, object] = {"symbol": "AAPL", "qty": 1000, "side": "buy", "type": "market"}
    values.setdefault("time_in_force", "day")
    values.update(fields)
    values["qty"] = shares(values["qty"])  # type: ignore[arg-type]
    return services.order_place(account_id=account.pk, request=OrderRequest(**values), now=NOW)  # type: ignore[arg-type]


def fresh(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def fill(order: Order, *, price_units: int, qty: int) -> Order:
    """The market fills ``qty`` shares of the order at a following quote."""
    filled = services.order_fill(order_id=order.pk, price_units=price_units, qty=shares(qty), now=NOW)
    assert filled is not None
    return filled


def test_a_market_buy_larger_than_the_ask_fills_the_touch_then_the_rest_at_following_quotes(
    asset: Asset, rich: Account, channel: PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    order = committed(django_capture_on_commit_callbacks, lambda: place(rich))
    first = published(channel)
    assert states(first) == [("new", "new", "0"), ("partial_fill", "partially_filled", "400")]
    assert first[1]["qty"] == shares(400) and first[1]["price_units"] == ASK
    row = fresh(order)
    assert (row.status, row.filled_qty, row.filled_avg_price_units) == ("partially_filled", shares(400), ASK)
    assert row.filled_at is None
    # The rest holds buying power at the ask it was placed at: the whole order's, less what filled.
    assert row.reserved_cents == trade_value_cents(price_units=ASK, qty=shares(600))
    assert_books_balance(rich)

    # The next quotes: 400 more at $100.21, then the last 200 at $99.91.
    second = committed(
        django_capture_on_commit_callbacks,
        lambda: fill(order, price_units=1_002_100, qty=400),
    )
    assert second.status == "partially_filled"
    assert_books_balance(rich)
    last = committed(
        django_capture_on_commit_callbacks,
        lambda: fill(order, price_units=999_100, qty=400),
    )
    assert last.status == "filled"
    events = published(channel)
    assert states(events) == [("partial_fill", "partially_filled", "800"), ("fill", "filled", "1000")]
    assert [e["qty"] for e in events] == [shares(400), shares(200)]
    executions = list(Fill.objects.filter(order=order).order_by("filled_at", "qty"))
    # Every execution has its own id, its Fill's.
    assert {e["execution_id"] for e in [first[1], *events]} == {str(f.pk) for f in executions}
    row = fresh(order)
    # The average weighs each execution by its quantity: (400 x 100.01 + 400 x 100.21 + 200 x 99.91) / 1000.
    assert row.filled_avg_price_units == 1_000_700
    assert (row.filled_qty, row.reserved_cents, row.filled_at) == (shares(1000), 0, NOW)
    account = assert_books_balance(rich)
    assert account.reserved_cents == 0
    paid = sum(
        trade_value_cents(price_units=p, qty=shares(q))
        for p, q in [(ASK, 400), (1_002_100, 400), (999_100, 200)]
    )
    assert account.cash_cents == 100_000_000 - paid
    assert Position.objects.get(account=rich).qty == shares(1000)


def test_a_market_sell_larger_than_the_bid_releases_held_shares_per_execution(
    asset: Asset, rich: Account
) -> None:
    set_quote("AAPL", price="100.00", ask_size=2000)
    place(rich, qty=1000)
    set_quote("AAPL", price="100.00")  # the bid shows 300
    order = place(rich, qty=700, side="sell")
    row = fresh(order)
    assert (row.status, row.filled_qty) == ("partially_filled", shares(300))
    position = Position.objects.get(account=rich)
    assert (position.qty, position.qty_held) == (shares(700), shares(400))
    services.order_fill(order_id=order.pk, price_units=BID, qty=shares(300), now=NOW)
    assert Position.objects.get(account=rich).qty_held == shares(100)
    assert_books_balance(rich)
    services.order_cancel(account_id=rich.pk, order_id=order.pk, now=NOW)
    row = fresh(order)
    assert (row.status, row.filled_qty) == ("canceled", shares(600))
    position = Position.objects.get(account=rich)
    assert (position.qty, position.qty_held) == (shares(400), 0)
    assert_books_balance(rich)


def test_ioc_fills_what_the_touch_shows_and_cancels_the_rest(
    asset: Asset, rich: Account, channel: PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    order = committed(django_capture_on_commit_callbacks, lambda: place(rich, time_in_force="ioc"))
    assert states(published(channel)) == [
        ("new", "new", "0"),
        ("partial_fill", "partially_filled", "400"),
        ("canceled", "canceled", "400"),
    ]
    row = fresh(order)
    assert (row.status, row.filled_qty, row.reserved_cents) == ("canceled", shares(400), 0)
    account = assert_books_balance(rich)
    assert account.reserved_cents == 0
    assert account.cash_cents == 100_000_000 - trade_value_cents(price_units=ASK, qty=shares(400))
    # An IOC the touch can fill whole fills, as any order.
    assert place(rich, qty=400, time_in_force="ioc").status == "filled"
    # A marketable IOC limit takes the touch too.
    limit = place(rich, qty=500, type="limit", limit_price_units=1_001_000, time_in_force="ioc")
    assert (fresh(limit).status, fresh(limit).filled_qty) == ("canceled", shares(400))


def test_fok_fills_whole_or_is_canceled_unfilled(
    asset: Asset, rich: Account, channel: PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    order = committed(django_capture_on_commit_callbacks, lambda: place(rich, qty=401, time_in_force="fok"))
    assert states(published(channel)) == [("new", "new", "0"), ("canceled", "canceled", "0")]
    row = fresh(order)
    assert (row.status, row.filled_qty) == ("canceled", 0)
    assert not Fill.objects.filter(order=order).exists()
    assert assert_books_balance(rich).cash_cents == 100_000_000
    whole = place(rich, qty=400, time_in_force="fok")
    assert (fresh(whole).status, fresh(whole).filled_qty) == ("filled", shares(400))
    assert Fill.objects.filter(order=whole).count() == 1


def test_a_partially_filled_order_pays_the_commission_of_one_whole_fill(
    asset: Asset, rich: Account, settings: Settings
) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 100
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 7  # 0.07 cent a share
    settings.COMMISSION_MINIMUM_CENTS = 150
    order = place(rich, qty=1001)
    services.order_fill(order_id=order.pk, price_units=ASK, qty=shares(333), now=NOW)
    services.order_fill(order_id=order.pk, price_units=ASK, now=NOW)
    assert fresh(order).status == "filled"
    commissions = CashEntry.objects.filter(account=rich, kind=CashEntry.Kind.COMMISSION)
    assert sum(c.amount_cents for c in commissions) == -services.commission_cents(qty=shares(1001))
    assert sum(f.commission_cents for f in Fill.objects.filter(order=order)) == services.commission_cents(
        qty=shares(1001)
    )
    assert assert_books_balance(rich).reserved_cents == 0


def test_a_fill_never_takes_more_than_is_left(asset: Asset, rich: Account) -> None:
    order = place(rich)
    filled = services.order_fill(order_id=order.pk, price_units=ASK, qty=shares(5000), now=NOW)
    assert filled is not None and filled.status == "filled"
    assert fresh(order).filled_qty == shares(1000)
    assert services.order_fill(order_id=order.pk, price_units=ASK, qty=shares(1), now=NOW) is None
    assert_books_balance(rich)


def test_replacing_a_partially_filled_order_replaces_what_is_left(asset: Asset, rich: Account) -> None:
    order = place(rich, type="limit", limit_price_units=900_000, time_in_force="gtc")
    services.order_fill(order_id=order.pk, price_units=899_000, qty=shares(250), now=NOW)
    replacement = services.order_replace(
        account_id=rich.pk, order_id=order.pk, limit_price_units=910_000, now=NOW
    )
    assert replacement.qty == shares(750) and replacement.status == "new"
    old = fresh(order)
    assert (old.status, old.filled_qty, old.reserved_cents) == ("replaced", shares(250), 0)
    account = assert_books_balance(rich)
    assert account.reserved_cents == trade_value_cents(price_units=910_000, qty=shares(750))


def test_a_partially_filled_order_cannot_be_canceled_twice(asset: Asset, rich: Account) -> None:
    order = place(rich)
    services.order_cancel(account_id=rich.pk, order_id=order.pk, now=NOW)
    with pytest.raises(NotCancelable):
        services.order_cancel(account_id=rich.pk, order_id=order.pk, now=NOW)
    assert (fresh(order).status, fresh(order).filled_qty) == ("canceled", shares(400))
    assert assert_books_balance(rich).reserved_cents == 0


def test_activities_show_each_execution_as_it_was(asset: Asset, rich: Account) -> None:
    """GET /v2/account/activities: every execution of a partially filled order is an activity with
    the cum_qty and leaves_qty of its moment, `partial_fill` until the last one, `fill` then."""
    order = place(rich)
    later = NOW + dt.timedelta(seconds=5)
    services.order_fill(order_id=order.pk, price_units=ASK, qty=shares(400), now=later)
    services.order_fill(order_id=order.pk, price_units=ASK, now=later + dt.timedelta(seconds=5))
    response = key_client(rich).get("/v2/account/activities/FILL", {"direction": "asc"})
    assert response.status_code == 200, response.content
    shown = [(a["type"], a["qty"], a["cum_qty"], a["leaves_qty"], a["order_status"]) for a in response.json()]
    assert shown == [
        ("partial_fill", "400", "400", "600", "filled"),
        ("partial_fill", "400", "800", "200", "filled"),
        ("fill", "200", "1000", "0", "filled"),
    ]
