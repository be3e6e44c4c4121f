"""Trading's ``*_short_selling`` migration from its predecessor's state on each backend: every
asset becomes shortable and easy to borrow, and every order gets the position intent it had (buys
opened, sells closed), and a short from before holds its initial margin; going back drops the
intents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from pytest_django.fixtures import Settings

from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.db_backend, pytest.mark.django_db(transaction=True)]

NAME_SUFFIX = "_short_selling"
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connection)


def _migration() -> tuple[str, str]:
    names = [
        key for key in _executor().loader.graph.nodes if key[0] == "trading" and key[1].endswith(NAME_SUFFIX)
    ]
    assert len(names) == 1, names
    return names[0]


def _before() -> tuple[str, str]:
    (parent,) = [p for p in _executor().loader.graph.node_map[_migration()].parents if p.key[0] == "trading"]
    return parent.key


def _models_at(target: tuple[str, str]) -> Apps:
    return _executor().loader.project_state([target]).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest() -> Iterator[None]:
    yield
    executor = _executor()
    executor.migrate(list(executor.loader.graph.leaf_nodes()))


def test_assets_become_shortable_and_orders_get_their_intent(make_account: Callable[..., Account]) -> None:
    account = make_account()
    _executor().migrate([_before()])
    old = _models_at(_before())
    asset = old.get_model("trading", "Asset").objects.create(
        symbol="MIGR", name="Migr", sector="Technology", shortable=False, easy_to_borrow=False
    )
    order_model = old.get_model("trading", "Order")
    common = {"account_id": account.pk, "asset_id": asset.pk, "submitted_at": AT, "time_in_force": "gtc"}
    buy = order_model.objects.create(client_order_id="b", side="buy", type="market", qty=7 * 10**9,
                                     filled_qty=7 * 10**9, status="filled", **common)  # fmt: skip
    sell = order_model.objects.create(client_order_id="s", side="sell", type="limit", qty=2 * 10**9,
                                      limit_price_units=2_500_000, status="new", **common)  # fmt: skip

    _executor().migrate([_migration()])

    migrated = Asset.objects.get(pk=asset.pk)
    assert (migrated.shortable, migrated.easy_to_borrow) == (True, True)
    # Orders as the migration left them: later migrations add columns today's model reads.
    migrated_orders = _models_at(_migration()).get_model("trading", "Order").objects
    assert migrated_orders.get(pk=buy.pk).position_intent == "buy_to_open"
    assert migrated_orders.get(pk=sell.pk).position_intent == "sell_to_close"

    _executor().migrate([_before()])
    back = _models_at(_before()).get_model("trading", "Order")
    assert sorted(back.objects.values_list("client_order_id", flat=True)) == ["b", "s"]


def test_a_short_from_before_holds_its_initial_margin_and_covers(
    make_account: Callable[..., Account], make_asset: Callable[..., Asset], settings: Settings
) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0
    make_asset("AAPL", price="100.00")
    account = make_account(cash=100_000)
    _executor().migrate([_before()])
    old = _models_at(_before())
    # A short of 10 at $99.99 opened under the old rules: its proceeds in cash, nothing held.
    old.get_model("trading", "Position").objects.create(
        account_id=account.pk,
        asset_id=Asset.objects.get(symbol="AAPL").pk,
        qty=-10 * 10**9,
        cost_basis_cents=-99_990,
    )
    old.get_model("trading", "Account").objects.filter(pk=account.pk).update(cash_cents=199_990)

    _executor().migrate([_migration()])
    _executor().migrate(list(_executor().loader.graph.leaf_nodes()))

    migrated = Account.objects.get(pk=account.pk)
    assert (migrated.cash_cents, migrated.reserved_cents) == (199_990, 149_985)
    services.account_configure(account_id=account.pk, no_shorting=False)
    cover = services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=10 * 10**9, side="buy", type="market", time_in_force="day"
        ),
    )
    assert (cover.status, cover.position_intent) == ("filled", "buy_to_close")
    covered = Account.objects.get(pk=account.pk)
    assert (covered.cash_cents, covered.reserved_cents) == (199_990 - 100_010, 0)
