"""The polled reads built from plain rows (docs/architecture.md, The polled reads): an order list
shaped from ``selectors.orders_list_rows`` answers, to the byte, what the model-instance path
(``selectors.orders_list`` and ``OrderSerializer.shape``) answers for the same orders, on either
backend; statements on SQLite take named parameters (``trading.prepared.named_placeholders``) and
answer what the ORM answers, a literal ``%`` included; the day boundary kept between reads is the
one computed afresh."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from tests.trading.api_support import MakeAccount, buy, key_client, post_order
from trading import calendar, selectors
from trading.api.serializers import OrderSerializer
from trading.models import (
    Account,
    Asset,
    Order,
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionIntent,
    TimeInForce,
)
from trading.prepared import NotPreparable, PreparedQuery, PreparedRows, named_placeholders

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

T0 = dt.datetime(2025, 6, 2, 14, 30, tzinfo=dt.UTC)


def _model_answer(account: Account, **query: Any) -> str:
    orders = selectors.orders_list(account_id=account.pk, nested=False, **query)
    return json.dumps([OrderSerializer.shape(order, legs=False) for order in orders])


def _rows_answer(account: Account, **query: Any) -> str:
    rows = selectors.orders_list_rows(account_id=account.pk, **query)
    return json.dumps([OrderSerializer.shape_row(row) for row in rows])


QUERIES: list[dict[str, Any]] = [
    {"status": status, "direction": direction, "limit": limit}
    for status in ("open", "closed", "all")
    for direction in ("asc", "desc")
    for limit in (selectors.ORDERS_LIMIT_DEFAULT, selectors.ORDERS_LIMIT_MAX, 3)
] + [
    {"status": "all", "side": "sell"},
    {"status": "all", "symbols": ["msft"]},
    {"status": "all", "after": T0 - dt.timedelta(seconds=1), "until": T0 + dt.timedelta(days=2)},
]


def _times(draw: st.DrawFn) -> dt.datetime | None:
    if draw(st.booleans()):
        return None
    return T0 + dt.timedelta(microseconds=draw(st.integers(min_value=0, max_value=86_400_000_000)))


@st.composite
def order_fields(draw: st.DrawFn) -> dict[str, Any]:
    """One order's stored fields, any type, class and state the table allows."""
    kind = draw(st.sampled_from(OrderType.values))
    qty = draw(st.integers(min_value=1, max_value=50 * 10**9))  # fractional quantities too
    prices = st.one_of(st.none(), st.integers(min_value=1, max_value=10**10))
    fields: dict[str, Any] = {
        "client_order_id": str(uuid.uuid4()),
        "side": draw(st.sampled_from(OrderSide.values)),
        "position_intent": draw(st.sampled_from(PositionIntent.values)),
        "type": kind,
        "time_in_force": draw(st.sampled_from(TimeInForce.values)),
        "qty": qty,
        "notional_cents": draw(st.one_of(st.none(), st.integers(min_value=1, max_value=10**9))),
        "limit_price_units": draw(prices),
        "stop_price_units": draw(prices),
        "high_water_mark_units": draw(prices),
        "status": draw(st.sampled_from(OrderStatus.values)),
        "filled_qty": draw(st.integers(min_value=0, max_value=qty)),
        "filled_avg_price_units": draw(prices),
        "extended_hours": draw(st.booleans()),
        "order_class": draw(st.sampled_from(OrderClass.values)),
        "submitted_at": T0 + dt.timedelta(microseconds=draw(st.integers(min_value=0, max_value=10**11))),
        "expires_at": _times(draw),
        "filled_at": _times(draw),
        "canceled_at": _times(draw),
        "expired_at": _times(draw),
        "failed_at": _times(draw),
        "replaced_at": _times(draw),
    }
    if kind == OrderType.TRAILING_STOP:
        # A trailing stop trails by a price or a percentage, from its water mark if it has one.
        if draw(st.booleans()):
            fields["trail_price_units"] = draw(st.integers(min_value=1, max_value=10**8))
        else:
            fields["trail_percent_units"] = draw(st.integers(min_value=1, max_value=500_000))
    return fields


@hypothesis_settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(orders=st.lists(order_fields(), min_size=1, max_size=6), links=st.lists(st.integers(0, 5), max_size=4))
def test_an_order_list_from_plain_rows_is_the_model_paths_to_the_byte(
    make_asset: Callable[..., Asset],
    make_account: MakeAccount,
    orders: list[dict[str, Any]],
    links: list[int],
) -> None:
    """Any orders (every type and class, fractional and notional, trailing stops with their water
    marks, legs of an advanced order and orders replaced by others), every list a client can ask
    for: the same answer from plain rows as from model instances."""
    assets = [
        Asset.objects.filter(symbol=symbol).first() or make_asset(symbol, price="100.00")
        for symbol in ("AAPL", "MSFT")
    ]
    account = make_account()
    created = [
        Order.objects.create(account=account, asset=assets[index % 2], **fields)
        for index, fields in enumerate(orders)
    ]
    # Links between them: a leg under its advanced order, an order replaced by the next one.
    for step, index in enumerate(links):
        order, other = created[index % len(created)], created[(index + 1) % len(created)]
        if order.pk == other.pk:
            continue
        if step % 2:
            Order.objects.filter(pk=other.pk, parent__isnull=True).exclude(
                pk=order.parent_id or order.pk
            ).update(parent=order)
        elif not Order.objects.filter(replaces=order).exists() and other.replaces_id is None:
            Order.objects.filter(pk=other.pk).update(replaces=order)
            other.replaces_id = order.pk
    for query in QUERIES:
        assert _rows_answer(account, **query) == _model_answer(account, **query), query


def test_the_api_answers_a_poll_from_plain_rows_as_the_model_path_would(
    make_asset: Callable[..., Asset], account: Account
) -> None:
    """Through the API, orders placed as a client places them (a replaced limit, a bracket and
    its legs, a trailing stop, a notional buy, a fractional sell): the lists not nested are the
    model path's answers, every byte; the nested list still nests the legs."""
    make_asset("AAPL", price="100.00")
    make_asset("MSFT", price="200.00")
    client = key_client(account)
    buy(client, "AAPL", 3)
    first = post_order(
        client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc"
    ).json()
    client.patch(f"/v2/orders/{first['id']}", {"qty": 2}, format="json")
    post_order(
        client,
        symbol="MSFT",
        qty=1,
        type="limit",
        limit_price="150",
        order_class="bracket",
        take_profit={"limit_price": "250"},
        stop_loss={"stop_price": "120"},
    )
    post_order(client, symbol="AAPL", qty=1, side="sell", type="trailing_stop", trail_percent="2.5")
    post_order(client, symbol="MSFT", notional="123.45", side="buy", type="market", time_in_force="day")
    post_order(client, symbol="AAPL", qty="0.125", side="sell", type="market", time_in_force="day")
    polls: list[tuple[str, dict[str, Any]]] = [
        ("/v2/orders", {"status": "open"}),
        ("/v2/orders?status=open", {"status": "open"}),
        ("/v2/orders?status=all&direction=asc", {"status": "all", "direction": "asc"}),
        ("/v2/orders?status=closed&limit=2", {"status": "closed", "limit": 2}),
        ("/v2/orders?status=all&symbols=MSFT", {"status": "all", "symbols": ["MSFT"]}),
    ]
    for path, query in polls:
        response = client.get(path)
        assert response.status_code == 200, response.content
        assert json.dumps(response.json()) == _model_answer(account, **query), path
    nested = client.get("/v2/orders?status=all&nested=true").json()
    assert any(order["legs"] for order in nested)


def test_a_poll_from_plain_rows_takes_one_statement_with_the_account(asset: Asset, account: Account) -> None:
    client = key_client(account)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc")
    client.get("/v2/orders?status=open")
    with CaptureQueriesContext(connection) as captured:
        client.get("/v2/orders?status=open")
    assert len(captured) == 1  # the account with its game, joined onto the orders


def test_a_rows_query_it_cannot_reproduce_is_refused(account: Account) -> None:
    flat = PreparedRows(
        lambda account_id: Order.objects.filter(account_id=account_id).values_list("id", flat=True),
        account_id=Account._meta.get_field("id"),
    )
    with pytest.raises(NotPreparable):
        flat.run(account_id=account.pk)
    annotated = PreparedRows(
        lambda account_id: (
            Order.objects.filter(account_id=account_id)
            .annotate(left=F("qty") - F("filled_qty"))
            .values_list("id", "left")
        ),
        account_id=Account._meta.get_field("id"),
    )
    with pytest.raises(NotPreparable):
        annotated.run(account_id=account.pk)


def test_one_read_joined_in_two_orders_is_sent_with_each_ones_order(asset: Asset, account: Account) -> None:
    """The joined statement's text is kept per thread and part key; its ORDER BY is the part's
    ``order``, so the key holds it: the same read ordered two ways never shares a text."""
    client = key_client(account)
    for qty in (1, 2, 3):
        post_order(client, symbol="AAPL", qty=qty, type="limit", limit_price="50", time_in_force="gtc")
    account_id = Account._meta.get_field("id")
    head = PreparedQuery(lambda account_id: Account.objects.filter(pk=account_id), account_id=account_id)
    orders = PreparedRows(
        lambda account_id: Order.objects.filter(account_id=account_id).values_list("qty", "id"),
        account_id=account_id,
    )
    ascending = orders.part(order=((0, False),), account_id=account.pk)
    descending = orders.part(order=((0, True),), account_id=account.pk)
    assert ascending.key != descending.key
    with CaptureQueriesContext(connection) as captured:
        up = head.run_joined(part=ascending, account_id=account.pk)
        down = head.run_joined(part=descending, account_id=account.pk)
    assert up is not None and down is not None
    assert captured[0]["sql"] != captured[1]["sql"]
    quantities = sorted(row[0] for row in up[1])
    assert [row[0] for row in up[1]] == quantities
    assert [row[0] for row in down[1]] == quantities[::-1]


def test_a_prepared_statement_with_a_literal_percent_answers_what_the_orm_answers(
    asset: Asset, account: Account
) -> None:
    """The modulo operator is a literal ``%%`` in Django's SQL: named parameters on SQLite leave
    it the ``%`` the ORM's own statement sends."""
    client = key_client(account)
    for qty in (1, 2, 3, 4):
        post_order(client, symbol="AAPL", qty=qty, type="limit", limit_price="50", time_in_force="gtc")

    def build(account_id: uuid.UUID) -> Any:
        return (
            Order.objects.filter(account_id=account_id)
            .alias(odd=F("qty") % 2_000_000_000)
            .filter(odd__gt=0)
            .order_by("submitted_at", "id")
        )

    prepared = PreparedQuery(build, account_id=Account._meta.get_field("id"))
    rows = PreparedRows(
        lambda account_id: build(account_id).values_list("id", "qty"),
        account_id=Account._meta.get_field("id"),
    )
    orm = list(build(account.pk))
    assert len(orm) == 2
    assert [order.pk for order in prepared.run(account_id=account.pk)] == [order.pk for order in orm]
    assert rows.run(account_id=account.pk) == list(build(account.pk).values_list("id", "qty"))


def test_named_placeholders_name_each_format_placeholder_on_sqlite_only() -> None:
    sql = "SELECT a FROM t WHERE b = %s AND c %% 2 = %s"
    named, names = named_placeholders(sql, vendor="sqlite", count=2)
    assert named == "SELECT a FROM t WHERE b = %(p0)s AND c %% 2 = %(p1)s"
    assert names == ("p0", "p1")
    assert named % {"p0": ":p0", "p1": ":p1"} == "SELECT a FROM t WHERE b = :p0 AND c % 2 = :p1"
    assert named_placeholders(sql, vendor="postgresql", count=2) == (sql, None)
    with pytest.raises(NotPreparable):
        named_placeholders(sql, vendor="sqlite", count=3)
    # A lone percent would fail `%` formatting on SQLite only: refused when built, on SQLite.
    lone = "SELECT a FROM t WHERE s LIKE 'a%' AND b = %s"
    with pytest.raises(NotPreparable, match="lone %"):
        named_placeholders(lone, vendor="sqlite", count=1)
    assert named_placeholders(lone, vendor="postgresql", count=1) == (lone, None)


@given(
    moments=st.lists(
        st.datetimes(
            min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2026, 12, 31), timezones=st.just(dt.UTC)
        ),
        min_size=1,
        max_size=20,
    )
)
def test_the_day_boundary_kept_between_reads_is_the_one_computed_afresh(moments: list[dt.datetime]) -> None:
    """In any order, across days and daylight-saving changes: the kept day never answers for a
    moment outside it."""
    for moment in moments:
        assert selectors.day_boundary(moment) == calendar.day_start(calendar.trading_day_of(moment))


def test_the_day_boundary_follows_the_trading_time_zone(settings: Any) -> None:
    moment = dt.datetime(2025, 6, 3, 2, 0, tzinfo=dt.UTC)  # 22:00 the day before in New York
    new_york = selectors.day_boundary(moment)
    settings.TRADING_TIMEZONE = "Asia/Tokyo"
    assert selectors.day_boundary(moment) == calendar.day_start(calendar.trading_day_of(moment)) != new_york
