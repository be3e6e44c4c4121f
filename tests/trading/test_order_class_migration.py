"""Orders gain a class and legs (trading's ``*_order_class_legs`` migration): every order placed
before it is a simple order without legs, and reversing it keeps every order."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from trading.models import Order

pytestmark = [pytest.mark.db_backend, pytest.mark.django_db(transaction=True)]

NAME_SUFFIX = "_order_class_legs"
PLACED = dt.datetime(2026, 1, 2, 14, 30, tzinfo=dt.UTC)


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connection)


def _migration() -> tuple[str, str]:
    names = [
        key for key in _executor().loader.graph.nodes if key[0] == "trading" and key[1].endswith(NAME_SUFFIX)
    ]
    assert len(names) == 1, names
    return names[0]


def _before() -> tuple[str, str]:
    (parent,) = [
        parent
        for parent in _executor().loader.graph.node_map[_migration()].parents
        if parent.key[0] == "trading"
    ]
    return parent.key


def _migrate(targets: Sequence[tuple[str, str]]) -> None:
    _executor().migrate(list(targets))


def _models_at(target: tuple[str, str]) -> Apps:
    return _executor().loader.project_state([target]).apps


@pytest.fixture(autouse=True)
def _back_to_the_latest() -> Iterator[None]:
    yield
    _migrate(list(_executor().loader.graph.leaf_nodes()))


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
    before = _before()
    _migrate([before])
    ids = _orders_before(_models_at(before))

    _migrate([_migration()])

    orders = Order.objects.filter(pk__in=ids).order_by("client_order_id")
    assert [(o.status, o.order_class, o.parent_id) for o in orders] == [
        ("new", "simple", None),
        ("filled", "simple", None),
        ("canceled", "simple", None),
    ]

    _migrate([before])

    old = _models_at(before).get_model("trading", "Order")
    assert sorted(str(pk) for pk in old.objects.values_list("pk", flat=True)) == sorted(ids)
