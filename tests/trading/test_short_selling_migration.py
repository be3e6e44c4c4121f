"""Trading's ``*_short_selling`` migration from its predecessor's state on each backend: every
asset becomes shortable and easy to borrow, and every order gets the position intent it had (buys
opened, sells closed), and a short from before holds its initial margin; going back drops the
intents."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from pytest_django.fixtures import Settings

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migrate_to_latest,
    migration_before,
    migration_named,
    models_at,
)
from trading import services
from trading.models import Account, Asset

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_short_selling"
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def test_assets_become_shortable_and_orders_get_their_intent(make_account: Callable[..., Account]) -> None:
    account = make_account()
    migrate([migration_before(NAME_SUFFIX)])
    old = models_at(migration_before(NAME_SUFFIX))
    asset = old.get_model("trading", "Asset").objects.create(
        symbol="MIGR", name="Migr", sector="Technology", shortable=False, easy_to_borrow=False
    )
    order_model = old.get_model("trading", "Order")
    common = {"account_id": account.pk, "asset_id": asset.pk, "submitted_at": AT, "time_in_force": "gtc"}
    buy = order_model.objects.create(client_order_id="b", side="buy", type="market", qty=7 * 10**9,
                                     filled_qty=7 * 10**9, status="filled", **common)  # fmt: skip
    sell = order_model.objects.create(client_order_id="s", side="sell", type="limit", qty=2 * 10**9,
                                      limit_price_units=2_500_000, status="new", **common)  # fmt: skip

    migrate([migration_named(NAME_SUFFIX)])

    migrated = Asset.objects.get(pk=asset.pk)
    assert (migrated.shortable, migrated.easy_to_borrow) == (True, True)
    # Orders as the migration left them: later migrations add columns today's model reads.
    migrated_orders = models_at(migration_named(NAME_SUFFIX)).get_model("trading", "Order").objects
    assert migrated_orders.get(pk=buy.pk).position_intent == "buy_to_open"
    assert migrated_orders.get(pk=sell.pk).position_intent == "sell_to_close"

    migrate([migration_before(NAME_SUFFIX)])
    back = models_at(migration_before(NAME_SUFFIX)).get_model("trading", "Order")
    assert sorted(back.objects.values_list("client_order_id", flat=True)) == ["b", "s"]


def test_a_short_from_before_holds_its_initial_margin_and_covers(
    make_account: Callable[..., Account], make_asset: Callable[..., Asset], settings: Settings
) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0
    make_asset("AAPL", price="100.00")
    account = make_account(cash=100_000)
    migrate([migration_before(NAME_SUFFIX)])
    old = models_at(migration_before(NAME_SUFFIX))
    # A short of 10 at $99.99 opened under the old rules: its proceeds in cash, nothing held.
    old.get_model("trading", "Position").objects.create(
        account_id=account.pk,
        asset_id=Asset.objects.get(symbol="AAPL").pk,
        qty=-10 * 10**9,
        cost_basis_cents=-99_990,
    )
    old.get_model("trading", "Account").objects.filter(pk=account.pk).update(cash_cents=199_990)

    migrate([migration_named(NAME_SUFFIX)])
    migrate_to_latest()

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
