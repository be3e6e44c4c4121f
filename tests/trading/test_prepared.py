"""Querysets compiled once (trading/prepared.py, a framework bypass): each prepared read returns
what the ORM's own evaluation of the same queryset returns, related objects included, and a
shape it cannot reproduce is refused rather than answered wrongly."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from tests.builders import class_game
from tests.trading.api_support import MakeAccount, buy, key_client, post_order
from trading import selectors, services
from trading.api.serializers import AccountSerializer, OrderSerializer
from trading.models import Account, Asset, CashEntry, Fill, Order, Position
from trading.prepared import SHAPES_KEPT, NotPreparable, PreparedQuery, PreparedStatement

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
    game = class_game(organiser=organiser, start=start)
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


# --- Writes compiled once -------------------------------------------------------------------------


def _row(model: type[Any], pk: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    values = model.objects.filter(pk=pk).values().get()
    return {name: value for name, value in values.items() if name not in ("id", *skip)}


def test_a_prepared_order_insert_writes_what_save_writes(asset: Asset, account: Account) -> None:
    """``PreparedInsert.save`` sends ``save(force_insert=True)``'s very statement, adapted values
    included, and leaves the instance saved."""
    now = dt.datetime(2025, 6, 2, 14, 30, 15, 123456, tzinfo=dt.UTC)

    def order(client_order_id: str) -> Order:
        return Order(
            account_id=account.pk, client_order_id=client_order_id, asset=asset, side="buy",
            position_intent="buy_to_open", type="limit", time_in_force="gtc", qty=5_000_000_000,
            limit_price_units=1_234_500, extended_hours=True, submitted_at=now, created_at=now,
            updated_at=now, expires_at=None, filled_at=now, filled_qty=2_500_000_000,
            filled_avg_price_units=1_230_000, reserved_cents=77, status="partially_filled",
        )  # fmt: skip

    by_orm, by_prepared = order("orm"), order("prepared")
    with CaptureQueriesContext(connection) as orm_sql:
        by_orm.save(force_insert=True)
    with CaptureQueriesContext(connection) as prepared_sql:
        services._ORDER_INSERT.save(by_prepared)
    assert [q["sql"] for q in prepared_sql.captured_queries] == [
        q["sql"]
        .replace(str(by_orm.pk.hex), str(by_prepared.pk.hex))
        .replace(str(by_orm.pk), str(by_prepared.pk))
        .replace("'orm'", "'prepared'")
        for q in orm_sql.captured_queries
    ]
    assert not by_prepared._state.adding and by_prepared._state.db == "default"
    assert _row(Order, by_prepared.pk, skip=("client_order_id",)) == _row(
        Order, by_orm.pk, skip=("client_order_id",)
    )


def test_prepared_fill_entry_and_position_inserts_write_what_the_orm_writes(
    make_asset: Any, account: Account
) -> None:
    first, second = make_asset("AAPL"), make_asset("MSFT")
    now = dt.datetime(2025, 6, 2, 14, 30, 15, 123456, tzinfo=dt.UTC)
    order = Order.objects.create(
        account=account, client_order_id="o", asset=first, side="sell", position_intent="sell_to_open",
        type="market", time_in_force="day", qty=3, submitted_at=now,
    )  # fmt: skip
    fill_values = {
        "order_id": order.pk, "account_id": account.pk, "asset_id": first.pk, "side": "sell",
        "qty": 3, "price_units": 1_000_001, "value_cents": 300, "commission_cents": 7,
        "realized_pl_cents": -12, "tick_seq": None, "filled_at": now,
    }  # fmt: skip
    orm_fill = Fill.objects.create(**fill_values)
    prepared_fill = uuid.uuid4()
    services._FILL_INSERT.run([services._FILL_INSERT.row(id=prepared_fill, **fill_values)])
    assert _row(Fill, prepared_fill) == _row(Fill, orm_fill.pk)

    def entry(fill_id: Any, kind: Any, amount: int) -> dict[str, Any]:
        return {"account_id": account.pk, "kind": kind, "fill_id": fill_id, "created_at": now,
                "amount_cents": amount, "memo": f"{kind} 3 AAPL"}  # fmt: skip

    kinds = ((CashEntry.Kind.SELL, 300), (CashEntry.Kind.COMMISSION, -7))
    orm_entries = CashEntry.objects.bulk_create([CashEntry(**entry(orm_fill.pk, *k)) for k in kinds])
    prepared_ids = [uuid.uuid4() for _ in kinds]
    services._CASH_ENTRY_INSERT.run(
        [
            services._CASH_ENTRY_INSERT.row(id=pk, **entry(prepared_fill, *k))
            for pk, k in zip(prepared_ids, kinds, strict=True)
        ]
    )
    for orm_entry, prepared_id in zip(orm_entries, prepared_ids, strict=True):
        assert _row(CashEntry, prepared_id, skip=("fill_id",)) == _row(
            CashEntry, orm_entry.pk, skip=("fill_id",)
        )
    assert CashEntry.objects.filter(fill_id=prepared_fill).count() == 2

    position = {"account_id": account.pk, "qty": -3, "qty_held": 1, "cost_basis_cents": -300}
    Position.objects.create(asset_id=first.pk, **position, updated_at=now)
    services._POSITION_INSERT.run(
        [services._POSITION_INSERT.row(asset_id=second.pk, **position, updated_at=now)]
    )
    # The ORM's create stamps updated_at itself (auto_now); the prepared INSERT writes what it is given.
    assert _row(Position, Position.objects.get(asset=second).pk, skip=("asset_id", "updated_at")) == _row(
        Position, Position.objects.get(asset=first).pk, skip=("asset_id", "updated_at")
    )
    assert Position.objects.get(asset=second).updated_at == now
    with pytest.raises(TypeError):
        services._POSITION_INSERT.row(asset_id=second.pk, **position)  # a value missing


def test_prepared_fill_updates_send_the_orms_statements(make_asset: Any, make_account: MakeAccount) -> None:
    """The position's write and the account's conditional cash move: the ORM's own SQL and
    parameters, the same rows changed, and the same refusal (no row) when the cash is short."""
    asset = make_asset("AAPL")
    later = dt.datetime(2025, 6, 3, 15, 0, 1, 5, tzinfo=dt.UTC)
    accounts = [make_account(username=name) for name in ("orm", "prepared")]
    for each in accounts:
        Position.objects.create(account=each, asset=asset, qty=10, qty_held=0, cost_basis_cents=1_000)
    orm, prepared = accounts
    position: dict[str, Any] = {"qty": 4, "cost_basis_cents": 400, "qty_held": 2, "updated_at": later}
    with CaptureQueriesContext(connection) as orm_sql:
        changed = Position.objects.filter(account_id=orm.pk, asset_id=asset.pk).update(**position)
    with CaptureQueriesContext(connection) as prepared_sql:
        prepared_changed = services._POSITION_WRITE.run(account_id=prepared.pk, asset_id=asset.pk, **position)
    assert changed == prepared_changed == 1
    assert prepared_sql.captured_queries[0]["sql"] == orm_sql.captured_queries[0]["sql"].replace(
        orm.pk.hex, prepared.pk.hex
    ).replace(str(orm.pk), str(prepared.pk))
    assert _row(Position, Position.objects.get(account=prepared).pk, skip=("account_id",)) == _row(
        Position, Position.objects.get(account=orm).pk, skip=("account_id",)
    )

    for cash_change, reserved_change in ((-1_000, 50), (-(10**12), 0), (2_500, -50)):
        with CaptureQueriesContext(connection) as orm_sql:
            orm_moved = Account.objects.filter(
                pk=orm.pk, cash_cents__gte=F("reserved_cents") + reserved_change - cash_change
            ).update(
                cash_cents=F("cash_cents") + cash_change, reserved_cents=F("reserved_cents") + reserved_change
            )
        with CaptureQueriesContext(connection) as prepared_sql:
            prepared_moved = services._ACCOUNT_FILL_MOVE.run(
                account_id=prepared.pk, cash_change=cash_change, reserved_change=reserved_change
            )
        assert orm_moved == prepared_moved == (0 if cash_change == -(10**12) else 1)
        assert prepared_sql.captured_queries[0]["sql"] == orm_sql.captured_queries[0]["sql"].replace(
            orm.pk.hex, prepared.pk.hex
        ).replace(str(orm.pk), str(prepared.pk))
        assert Account.objects.values_list("cash_cents", "reserved_cents").get(pk=prepared.pk) == (
            Account.objects.values_list("cash_cents", "reserved_cents").get(pk=orm.pk)
        )


def test_a_statement_whose_value_is_not_a_parameter_is_refused(account: Account) -> None:
    statement = PreparedStatement(
        lambda account_id: (Account.objects.filter(pk=account.pk), {"reserved_cents": 0}),
        account_id=Account._meta.get_field("id"),
    )
    with pytest.raises(NotPreparable):
        statement.run(account_id=account.pk)


@pytest.mark.django_db(transaction=True)
def test_the_prepared_account_lock_is_the_orms_locking_read(account: Account) -> None:
    """PostgreSQL: the ORM's ``SELECT ... FOR NO KEY UPDATE`` of the account, and refused outside
    a transaction as the ORM refuses it; SQLite: nothing (its BEGIN IMMEDIATE serialises writers)."""
    with transaction.atomic():
        with CaptureQueriesContext(connection) as prepared_sql:
            services._lock_account(account.pk)
        with CaptureQueriesContext(connection) as orm_sql:
            list(
                Account.objects.select_for_update(no_key=True)
                .filter(pk=account.pk)
                .values_list("pk", flat=True)
            )
    if not connection.features.has_select_for_update:
        assert prepared_sql.captured_queries == []
        return
    assert [q["sql"] for q in prepared_sql.captured_queries] == [q["sql"] for q in orm_sql.captured_queries]
    with pytest.raises(TransactionManagementError):
        services._lock_account(account.pk)


@pytest.mark.usefixtures("asset")
def test_without_compiled_statements_a_fill_writes_the_same_rows(
    settings: Any, make_account: MakeAccount
) -> None:
    """``PREPARED_QUERIES=false``, the benchmarks' baseline, writes a fill through the ORM's own
    path: the same orders, fills, cash entries, positions and balances."""

    def ledger(account: Account) -> list[Any]:
        account.refresh_from_db()
        return [
            (account.cash_cents, account.reserved_cents),
            list(Position.objects.filter(account=account).values_list("qty", "qty_held", "cost_basis_cents")),
            list(Order.objects.filter(account=account).order_by("submitted_at").values_list(
                "side", "status", "qty", "filled_qty", "filled_avg_price_units", "reserved_cents"
            )),
            sorted(Fill.objects.filter(account=account).values_list(
                "side", "qty", "price_units", "value_cents", "commission_cents", "realized_pl_cents"
            )),
            sorted(CashEntry.objects.filter(account=account).values_list("kind", "amount_cents", "memo")),
        ]  # fmt: skip

    services.CommissionPlan.objects.create(name="flat", per_order_cents=100)  # two cash entries a fill
    ledgers = []
    for prepared in (True, False):
        settings.PREPARED_QUERIES = prepared
        account = make_account()
        client = key_client(account)
        buy(client, "AAPL", 3)
        assert post_order(client, symbol="AAPL", qty=2, side="sell").status_code == 200
        ledgers.append(ledger(account))
    assert ledgers[0] == ledgers[1]
    assert ledgers[0][1] == [(1_000_000_000, 0, ledgers[0][1][0][2])]
    assert [kind for kind, _, _ in ledgers[0][4]].count("commission") == 2
