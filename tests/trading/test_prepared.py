"""Querysets compiled once (trading/prepared.py, a framework bypass): each prepared read returns
what the ORM's own evaluation of the same queryset returns, related objects included, and a
shape it cannot reproduce is refused rather than answered wrongly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.trading.api_support import MakeAccount, buy, key_client, post_order
from trading import selectors, services
from trading.api.serializers import AccountSerializer, OrderSerializer
from trading.models import Account, Asset, Order
from trading.prepared import SHAPES_KEPT, NotPreparable, PreparedQuery

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]


def _state(instance: Any) -> dict[str, Any]:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("status", ["open", "closed", "all"])
def test_a_prepared_order_list_is_the_orms(
    asset: Asset, account: Account, status: str, direction: str, nested: bool
) -> None:
    client = key_client(account)
    buy(client, "AAPL", 2)
    first = post_order(
        client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc"
    ).json()
    client.patch(f"/v2/orders/{first['id']}", {"qty": 3}, format="json")  # links replaced_by
    post_order(
        client,
        symbol="AAPL",
        qty=1,
        type="limit",
        limit_price="90",
        order_class="bracket",
        take_profit={"limit_price": "120"},
        stop_loss={"stop_price": "80"},
    )
    for limit in (1, 50):
        shape = {
            "account_id": account.pk,
            "status": status,
            "limit": limit,
            "direction": direction,
            "nested": nested,
        }
        prepared = selectors._ORDERS_POLL.run(
            shape={key: value for key, value in shape.items() if key != "account_id"}, account_id=account.pk
        )
        orm = list(selectors._orders_page(**shape))  # type: ignore[arg-type]
        assert [_state(order) for order in prepared] == [_state(order) for order in orm]
        assert [OrderSerializer.shape(order, legs=False) for order in prepared] == [
            OrderSerializer.shape(order, legs=False) for order in orm
        ]
        # The joined rows came with the orders: shaping them reads nothing more.
        with CaptureQueriesContext(connection) as shaping:
            [OrderSerializer.shape(order, legs=False) for order in prepared]
        assert len(shaping) == 0


def test_a_prepared_key_account_is_the_orms_with_or_without_a_game(
    asset: Asset, account: Account, make_account: MakeAccount
) -> None:
    from trading.api.authentication import _KEY_ACCOUNT

    start = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
    organiser = make_account(username="teacher").user
    game = services.game_create(
        organiser=organiser,
        rules=services.GameRules(
            name="Class", starts_at=start, ends_at=start + dt.timedelta(days=5), starting_cash_cents=1_000_000
        ),
        now=start - dt.timedelta(hours=1),
    )
    game_account = services.game_join(game_id=game.pk, user=account.user, now=start).account
    for owned in (account, game_account):
        (prepared,) = _KEY_ACCOUNT.run(pk=owned.pk, user_id=owned.user_id)
        orm = Account.objects.select_related("game_player__game").get(pk=owned.pk)
        assert _state(prepared) == _state(orm)
        with CaptureQueriesContext(connection) as shaping:
            shaped = AccountSerializer.shape(selectors.AccountSummary(prepared, start, 0, 0, 0))
        assert len(shaping) == 0
        assert shaped == AccountSerializer.shape(selectors.AccountSummary(orm, start, 0, 0, 0))
    assert _KEY_ACCOUNT.run(pk=account.pk, user_id=organiser.pk) == []  # another user's: nothing


def test_a_shape_it_cannot_reproduce_is_refused(account: Account) -> None:
    with pytest.raises(NotPreparable):
        PreparedQuery(
            lambda account_id: Order.objects.filter(account_id=account_id).prefetch_related("fills"),
            account_id=Account._meta.get_field("id"),
        ).run(account_id=account.pk)
    with pytest.raises(NotPreparable):
        # The parameter never reaches the SQL: nothing to substitute.
        PreparedQuery(lambda account_id: Order.objects.all(), account_id=Account._meta.get_field("id")).run(
            account_id=account.pk
        )


def test_each_thread_keeps_a_bounded_number_of_shapes_and_answers_past_the_bound(account: Account) -> None:
    """A caller whose shapes come from a request (a limit) cannot grow a thread's compiled queries
    without end: past SHAPES_KEPT the oldest goes, and a shape asked again is compiled again."""
    key_client(account)
    query = PreparedQuery(
        lambda account_id, limit: Order.objects.filter(account_id=account_id).order_by("-submitted_at")[
            :limit
        ],
        account_id=Account._meta.get_field("id"),
    )
    for limit in range(1, SHAPES_KEPT + 10):
        assert query.run(shape={"limit": limit}, account_id=account.pk) == []
    kept = query._local.compiled
    assert len(kept) == SHAPES_KEPT
    assert (("limit", 1),) not in kept and (("limit", SHAPES_KEPT + 9),) in kept
    assert query.run(shape={"limit": 1}, account_id=account.pk) == []
    assert len(kept) == SHAPES_KEPT


def test_an_order_list_at_an_unpolled_limit_takes_the_orms_path(asset: Asset, account: Account) -> None:
    client = key_client(account)
    placed = post_order(
        client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc"
    ).json()
    before = dict(getattr(selectors._ORDERS_POLL._local, "compiled", {}))
    listed = selectors.orders_list(account_id=account.pk, limit=7)
    assert [str(order.pk) for order in listed] == [placed["id"]]
    assert dict(getattr(selectors._ORDERS_POLL._local, "compiled", {})) == before


@pytest.mark.parametrize("symbol", ["AAPL", "MSFT"])
def test_the_prepared_placement_read_is_the_orms(asset: Asset, account: Account, symbol: str) -> None:
    """Order placement's one read (trading.services._placement_read), with a position, open
    orders and a commission plan, and for a symbol the account never traded."""
    client = key_client(account)
    buy(client, "AAPL", 2)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc")
    services.CommissionPlan.objects.create(name="flat", per_order_cents=100)
    prepared = services._PLACEMENT.run(account_id=account.pk, symbol=symbol)
    orm = list(services._placement_queryset(account.pk, symbol))
    assert len(prepared) == len(orm) == 1
    placement = {key: value for key, value in prepared[0].__dict__.items() if key.startswith("placement_")}
    assert placement == {key: value for key, value in orm[0].__dict__.items() if key.startswith("placement_")}
    assert (placement["placement_position_qty"] is not None) == (symbol == "AAPL")
    assert (placement["placement_asset_symbol"] is not None) == (symbol == "AAPL")


@pytest.mark.parametrize("path", ["/v2/account", "/v2/positions", "/v2/orders?status=open"])
def test_without_compiled_querysets_the_polled_reads_answer_the_same(
    settings: Any, asset: Asset, account: Account, path: str
) -> None:
    """``PREPARED_QUERIES=false``, `benchmark api --cpu`'s baseline, runs the same querysets
    through the ORM's own path: the same answers, compiled per call."""
    client = key_client(account)
    buy(client, "AAPL", 2)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc")
    compiled = client.get(path)
    assert compiled.status_code == 200, compiled.content
    settings.PREPARED_QUERIES = False
    before = dict(getattr(selectors._ORDERS_POLL._local, "compiled", {}))
    plain = client.get(path)
    assert plain.json() == compiled.json()
    assert dict(getattr(selectors._ORDERS_POLL._local, "compiled", {})) == before  # nothing compiled
