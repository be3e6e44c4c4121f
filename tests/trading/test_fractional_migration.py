"""Migration trading 0005 (and analytics 0007) from their predecessors' state on each backend:
every stored quantity becomes quantity units (x 10^9) keeping every balance, each fill gets its
value in cents, and going back refuses to round a fractional quantity away."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from analytics.models import SymbolStats
from tests.trading.migration_steps import MIGRATION_TEST_MARKS
from trading import selectors
from trading.models import Account, Fill, Order, Position

pytestmark = MIGRATION_TEST_MARKS

BEFORE: list[tuple[str, str]] = [
    ("trading", "0004_order_auction_time_in_force"),
    ("analytics", "0006_frontend_sample_renderer"),
]
AFTER: list[tuple[str, str]] = [
    ("trading", "0005_fractional_quantities"),
    ("analytics", "0007_fractional_net_shares"),
]
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def _migrate(targets: Sequence[tuple[str, str]]) -> None:
    MigrationExecutor(connection).migrate(list(targets))


def _models_at(targets: list[tuple[str, str]]) -> Apps:
    return MigrationExecutor(connection).loader.project_state(targets).apps


def _whole_share_rows(apps: Apps, account: Account) -> dict[str, uuid.UUID]:
    """An account that bought 7 shares at $187.1234 and sold 3 at $190.0001, and rests a sell of 2."""
    asset = apps.get_model("trading", "Asset").objects.create(symbol="MIGR", name="Migr", sector="Technology")
    order_model = apps.get_model("trading", "Order")
    fill_model = apps.get_model("trading", "Fill")
    common = {"account_id": account.pk, "asset_id": asset.pk, "submitted_at": AT, "time_in_force": "gtc"}
    buy = order_model.objects.create(client_order_id="b", side="buy", type="market", qty=7, filled_qty=7,
                                     status="filled", **common)  # fmt: skip
    sell = order_model.objects.create(client_order_id="s", side="sell", type="market", qty=3, filled_qty=3,
                                      status="filled", **common)  # fmt: skip
    resting = order_model.objects.create(client_order_id="r", side="sell", type="limit", qty=2, filled_qty=0,
                                         limit_price_units=2_500_000, status="new", **common)  # fmt: skip
    for order, price in ((buy, 1_871_234), (sell, 1_900_001)):
        fill_model.objects.create(order_id=order.pk, account_id=account.pk, asset_id=asset.pk, side=order.side,
                                  qty=order.qty, price_units=price, filled_at=AT)  # fmt: skip
    apps.get_model("trading", "Position").objects.create(
        account_id=account.pk, asset_id=asset.pk, qty=4, qty_held=2, cost_basis_cents=74_849
    )
    apps.get_model("analytics", "SymbolStats").objects.create(
        symbol="MIGR", as_of=AT, holders=1, net_shares_held=4
    )
    return {"buy": buy.pk, "sell": sell.pk, "resting": resting.pk}


def test_quantities_are_rescaled_keeping_every_balance(make_account: Callable[..., Account]) -> None:
    account = make_account()
    _migrate(BEFORE)
    ids = _whole_share_rows(_models_at(BEFORE), account)
    _migrate(AFTER)

    # Only the columns this migration knows: later ones add order columns it has not made yet.
    orders = Order.objects.values_list("qty", "filled_qty", "notional_cents")
    assert orders.get(pk=ids["buy"]) == (7 * 10**9, 7 * 10**9, None)
    assert orders.get(pk=ids["resting"]) == (2 * 10**9, 0, None)
    fills = {fill.side: fill for fill in Fill.objects.filter(asset__symbol="MIGR")}
    assert (fills["buy"].qty, fills["buy"].value_cents) == (7 * 10**9, 130_986)  # 1309.8638 -> 1309.86
    assert (fills["sell"].qty, fills["sell"].value_cents) == (3 * 10**9, 57_000)  # 570.0003 -> 570.00
    position = Position.objects.get(account=account, asset__symbol="MIGR")
    assert (position.qty, position.qty_held, position.cost_basis_cents) == (4 * 10**9, 2 * 10**9, 74_849)
    assert SymbolStats.objects.get(symbol="MIGR").net_shares_held == 4 * 10**9
    # The API still shows 4 shares, 2 of them held by the resting sell (read through today's
    # models, so at the latest state).
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    (value,) = selectors.portfolio_positions(account=Account.objects.get(pk=account.pk), now=AT)
    assert (value.qty, value.qty_available) == (4 * 10**9, 2 * 10**9)


def test_going_back_divides_and_refuses_fractions(make_account: Callable[..., Account]) -> None:
    account = make_account()
    _migrate(BEFORE)
    _whole_share_rows(_models_at(BEFORE), account)
    _migrate(AFTER)
    _migrate(BEFORE)
    old = _models_at(BEFORE)
    position = old.get_model("trading", "Position").objects.get(account_id=account.pk)
    assert (position.qty, position.qty_held) == (4, 2)
    assert sorted(old.get_model("trading", "Order").objects.values_list("qty", flat=True)) == [2, 3, 7]

    _migrate(AFTER)
    Position.objects.filter(account=account).update(qty=4 * 10**9 + 500_000_000)
    with pytest.raises(RuntimeError, match="fractional"):
        _migrate(BEFORE)
