"""Orders gain a class and legs (trading's ``*_order_class_legs`` migration): every order placed
before it is a simple order without legs, and reversing it keeps every order."""

from __future__ import annotations

import datetime as dt

from django.apps.registry import Apps

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migration_before,
    migration_named,
    models_at,
)
from trading.models import Order

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_order_class_legs"
PLACED = dt.datetime(2026, 1, 2, 14, 30, tzinfo=dt.UTC)


def _orders_before(old: Apps) -> list[str]:
    user = old.get_model("auth", "User").objects.create(username="migr", password="x")
    account = old.get_model("trading", "Account").objects.create(
        user=user, account_number="PAMIGR", cash_cents=1_000_000
    )
    asset = old.get_model("trading", "Asset").objects.create(symbol="MIGR", name="Migr", sector="Tech")
    order = old.get_model("trading", "Order")
    ids = []
    for n, status in enumerate(("new", "filled", "canceled")):
        row = order.objects.create(
            account=account, client_order_id=f"c{n}", asset=asset, side="buy", type="limit",
            time_in_force="gtc", qty=10**9, limit_price_units=990_000, status=status, submitted_at=PLACED,
        )  # fmt: skip
        ids.append(str(row.pk))
    return ids


def test_orders_before_are_simple_and_without_legs_and_reversing_keeps_them() -> None:
    before = migration_before(NAME_SUFFIX)
    migrate([before])
    ids = _orders_before(models_at(before))

    migrate([migration_named(NAME_SUFFIX)])

    orders = Order.objects.filter(pk__in=ids).order_by("client_order_id")
    assert [(o.status, o.order_class, o.parent_id) for o in orders] == [
        ("new", "simple", None),
        ("filled", "simple", None),
        ("canceled", "simple", None),
    ]

    migrate([before])

    old = models_at(before).get_model("trading", "Order")
    assert sorted(str(pk) for pk in old.objects.values_list("pk", flat=True)) == sorted(ids)
