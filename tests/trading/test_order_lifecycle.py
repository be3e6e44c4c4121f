"""An order's lifecycle as Alpaca shows it (README, Order lifecycle): every order event carries the
order as it was at that event, POST /v2/orders answers the order as accepted, and closing an
order releases what its row holds under the lock, never what an earlier copy said.

Events are read from the real order-events channel on Redis, as the stream consumers read them.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import transaction
from django.db.models import F
from redis.client import PubSub

from config.redis_pools import redis_client
from tests.builders import shares
from trading import services
from trading.api.serializers import OrderSerializer
from trading.events import OrderState
from trading.models import Account, Asset, Fill, Order, Position
from trading.services import OrderRequest
from trading.units import qty_to_str

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

NOW = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)


@pytest.fixture
def channel() -> Iterator[PubSub]:
    pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(settings.ORDER_EVENTS_CHANNEL)
    yield pubsub
    pubsub.close()


def published(channel: PubSub) -> list[dict[str, Any]]:
    """What was published since the last call: read until the channel stays quiet for a while
    (get_message answers None for the ignored subscribe confirmation too)."""
    events = []
    quiet_until = time.monotonic() + 0.5
    while time.monotonic() < quiet_until:
        message = channel.get_message(timeout=0.1)
        if message is not None:
            events.append(json.loads(message["data"]))
            quiet_until = time.monotonic() + 0.5
    return events


def committed(django_capture_on_commit_callbacks: Any, call: Callable[[], Order]) -> Order:
    with django_capture_on_commit_callbacks(execute=True):
        return call()


def place(account: Account, **fields: object) -> Order:
    values: dict[str, object] = {"symbol": "AAPL", "qty": 2, "side": "buy", "type": "market"}
    values.setdefault("time_in_force", "day")
    values.update(fields)
    values["qty"] = shares(values["qty"])  # type: ignore[arg-type]
    return services.order_place(account_id=account.pk, request=OrderRequest(**values), now=NOW)  # type: ignore[arg-type]


def states(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    """Each event's name, status and filled shares (the payload carries quantity units)."""
    return [
        (e["event"], e["order_state"]["status"], qty_to_str(e["order_state"]["filled_qty"])) for e in events
    ]


def test_an_order_filling_on_placement_is_answered_and_announced_as_new_then_filled(
    asset: Asset, account: Account, channel: PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    order = committed(django_capture_on_commit_callbacks, lambda: place(account))
    new, fill = published(channel)
    assert states([new, fill]) == [("new", "new", "0"), ("fill", "filled", "2")]
    assert new["order_state"]["filled_at"] is None and new["order_state"]["filled_avg_price_units"] is None
    assert fill["order_state"]["filled_avg_price_units"] == 1_000_100
    # Each execution is named by its Fill (Alpaca's execution_id); other events carry none.
    assert fill["execution_id"] == str(Fill.objects.get(order_id=order.pk).pk)
    assert new["execution_id"] is None
    assert fill["order_state"]["filled_at"] == NOW.isoformat()

    row = Order.objects.select_related("asset").get(pk=order.pk)
    assert row.status == "filled"
    # What POST /v2/orders answers: the committed row as it was accepted.
    assert order.accepted_state == OrderState.from_payload(new["order_state"])
    answered = OrderSerializer.shape(row, order.accepted_state)
    assert (answered["status"], answered["filled_qty"], answered["filled_avg_price"]) == ("new", "0", None)
    assert answered["filled_at"] is None and answered["id"] == str(order.pk)
    shown = OrderSerializer.shape(row)
    assert (shown["status"], shown["filled_qty"], shown["filled_avg_price"]) == ("filled", "2", "100.01")


def test_every_event_shows_the_order_at_that_event(
    asset: Asset, account: Account, channel: PubSub, django_capture_on_commit_callbacks: Any
) -> None:
    # IOC that cannot fill: accepted, then canceled at once.
    committed(
        django_capture_on_commit_callbacks,
        lambda: place(account, type="limit", limit_price_units=900_000, time_in_force="ioc"),
    )
    ioc = published(channel)
    assert states(ioc) == [("new", "new", "0"), ("canceled", "canceled", "0")]
    assert ioc[0]["order_state"]["canceled_at"] is None and ioc[1]["order_state"]["canceled_at"] is not None

    # A resting limit, replaced: "replaced" names the replacement, which is then "new".
    resting = committed(
        django_capture_on_commit_callbacks,
        lambda: place(account, type="limit", limit_price_units=900_000, time_in_force="gtc"),
    )
    assert states(published(channel)) == [("new", "new", "0")]
    replacement = committed(
        django_capture_on_commit_callbacks,
        lambda: services.order_replace(
            account_id=account.pk, order_id=resting.pk, limit_price_units=910_000, now=NOW
        ),
    )
    replaced, new = published(channel)
    assert (replaced["event"], replaced["order_id"], replaced["order_state"]["status"]) == (
        "replaced",
        str(resting.pk),
        "replaced",
    )
    assert replaced["order_state"]["replaced_by"] == str(replacement.pk)
    assert (new["event"], new["order_id"], new["order_state"]["status"]) == (
        "new",
        str(replacement.pk),
        "new",
    )

    # Filled later by the market: the fill shows it filled, the earlier new event stays new.
    committed(
        django_capture_on_commit_callbacks,
        lambda: services.order_fill(order_id=replacement.pk, price_units=910_000, now=NOW) or replacement,
    )
    assert states(published(channel)) == [("fill", "filled", "2")]


def test_state_survives_the_wire(asset: Asset, account: Account) -> None:
    order = place(account, type="limit", limit_price_units=900_000, time_in_force="gtc")
    assert order.accepted_state is not None
    payload = json.loads(json.dumps(order.accepted_state.as_payload()))
    assert OrderState.from_payload(payload) == order.accepted_state


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_closing_releases_what_the_locked_row_holds_not_a_stale_copy(
    asset: Asset, account: Account, side: str
) -> None:
    """A copy of the order read before the close took its lock may hold figures a fill committed
    since has changed; the close must release the row's (here 6 of 10 shares, or their cash)."""
    if side == "sell":
        place(account, qty=10)
    order = place(account, side=side, qty=10, type="limit", limit_price_units=900_000 if side == "buy"
                  else 1_100_000, time_in_force="gtc")  # fmt: skip
    stale = Order.objects.select_related("asset").get(pk=order.pk)
    # What a partial fill of 4 does to what the order holds (cash for 4 at the limit, 4 shares).
    with transaction.atomic():
        if side == "buy":
            Order.objects.filter(pk=order.pk).update(reserved_cents=F("reserved_cents") - 36_000)
            Account.objects.filter(pk=account.pk).update(reserved_cents=F("reserved_cents") - 36_000)
        else:
            Order.objects.filter(pk=order.pk).update(filled_qty=shares(4))
            Position.objects.filter(account=account).update(qty_held=F("qty_held") - shares(4))
    assert services._order_close(order=stale, status="canceled", now=NOW)
    account.refresh_from_db()
    assert account.reserved_cents == 0
    if side == "sell":
        assert Position.objects.get(account=account).qty_held == 0
    # Closing twice releases nothing more.
    assert not services._order_close(order=stale, status="expired", now=NOW)
    account.refresh_from_db()
    assert account.reserved_cents == 0
