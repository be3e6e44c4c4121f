"""Migration trading ``*_accounts_per_user`` from its predecessor's state on each backend: a
database where every user holds one account (``Account.user`` one-to-one) upgrades with every
balance, order, fill, position, ledger entry, watchlist and API key kept, each account its user's
default one, and the keys still authenticate on their accounts; going back refuses while a user
holds more than one account."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from rest_framework.test import APIClient

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migrate_to_latest,
    migration_before,
    migration_named,
    models_at,
)
from trading import selectors, services
from trading.models import Account, ApiKey

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_accounts_per_user"
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def _one_account_each(old: Apps, count: int) -> dict[str, Any]:
    """``count`` users with one account each (as the one-to-one layout allows), each with an
    order, a fill, a position, ledger entries, a watchlist and an API key whose secret is known."""
    users = [get_user_model().objects.create_user(f"migr{n}", password="pw-123456!") for n in range(count)]
    asset = old.get_model("trading", "Asset").objects.create(symbol="MIGR", name="Migr", sector="Technology")
    account_model = old.get_model("trading", "Account")
    secrets: dict[str, str] = {}
    for n, user in enumerate(users):
        account = account_model.objects.create(
            user_id=user.pk, account_number=f"PAMIGR{n:04d}", cash_cents=1_000_000 + n, reserved_cents=n
        )
        order = old.get_model("trading", "Order").objects.create(
            account_id=account.pk, asset_id=asset.pk, client_order_id=f"c{n}", side="buy", type="market",
            qty=(n + 1) * 10**9, filled_qty=(n + 1) * 10**9, status="filled", submitted_at=AT,
            time_in_force="day",
        )  # fmt: skip
        old.get_model("trading", "Fill").objects.create(
            order_id=order.pk, account_id=account.pk, asset_id=asset.pk, side="buy", qty=order.qty,
            price_units=1_000_000, value_cents=(n + 1) * 10_000, filled_at=AT,
        )  # fmt: skip
        old.get_model("trading", "Position").objects.create(
            account_id=account.pk, asset_id=asset.pk, qty=order.qty, cost_basis_cents=(n + 1) * 10_000
        )
        old.get_model("trading", "CashEntry").objects.create(
            account_id=account.pk,
            kind="deposit",
            amount_cents=1_000_000,
            memo="Opening deposit",
            created_at=AT,
        )
        old.get_model("trading", "Watchlist").objects.create(account_id=account.pk, name=f"w{n}")
        secret = f"secret-{n}-{'x' * 20}"
        old.get_model("trading", "ApiKey").objects.create(
            key_id=f"PKMIGR{n:014d}", account_id=account.pk, secret_hmac=services.api_key_secret_hmac(secret)
        )
        secrets[f"PKMIGR{n:014d}"] = secret
    return {"users": users, "secrets": secrets}


ROWS = {
    "Account": ("pk", "user_id", "account_number", "cash_cents", "reserved_cents"),
    "Order": ("pk", "account_id", "qty", "status"),
    "Fill": ("pk", "account_id", "qty", "value_cents"),
    "Position": ("account_id", "qty", "cost_basis_cents"),
    "CashEntry": ("pk", "account_id", "amount_cents"),
    "Watchlist": ("pk", "account_id", "name"),
    "ApiKey": ("key_id", "account_id", "secret_hmac", "revoked_at"),
}


def _rows(models: Apps) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the migration must keep, as plain values."""
    return {
        name: sorted(models.get_model("trading", name).objects.values_list(*fields))
        for name, fields in ROWS.items()
    }


def test_single_accounts_become_defaults_keeping_every_row() -> None:
    migrate([migration_before(NAME_SUFFIX)])
    old = models_at(migration_before(NAME_SUFFIX))
    made = _one_account_each(old, 3)
    before = _rows(old)

    migrate([migration_named(NAME_SUFFIX)])
    migrate_to_latest()

    assert _rows(django_apps) == before
    assert set(Account.objects.values_list("is_default", flat=True)) == {True}
    for user in made["users"]:
        (account,) = selectors.accounts_list(user_id=user.pk)
        assert selectors.account_for_session_get(user_id=user.pk, session={}) == account
    # Each key still authenticates, on its own account.
    for key_id, secret in made["secrets"].items():
        client = APIClient()
        client.credentials(HTTP_APCA_API_KEY_ID=key_id, HTTP_APCA_API_SECRET_KEY=secret)
        response = client.get("/v2/account")
        assert response.status_code == 200, response.content
        expected = ApiKey.objects.get(key_id=key_id).account.account_number
        assert response.json()["account_number"] == expected
    # Now a user may hold further accounts, but one default only.
    user = made["users"][0]
    further = services.account_create(user=user, cash_cents=5_000)
    assert (further.is_default, further.cash_cents) == (False, 5_000)
    with pytest.raises(IntegrityError), transaction.atomic():
        services.account_open(user=user)


def test_going_back_refuses_while_a_user_holds_several_accounts() -> None:
    migrate([migration_before(NAME_SUFFIX)])
    made = _one_account_each(models_at(migration_before(NAME_SUFFIX)), 2)
    migrate_to_latest()
    further = services.account_create(user=made["users"][0])

    with pytest.raises(RuntimeError, match="more than one trading account"):
        migrate([migration_before(NAME_SUFFIX)])

    # Through the models this migration knows: the refused reversal already took back every later
    # migration, whose tables the current models would cascade into.
    models_at(migration_named(NAME_SUFFIX)).get_model("trading", "Account").objects.filter(
        pk=further.pk
    ).delete()
    migrate([migration_before(NAME_SUFFIX)])
    old_accounts = models_at(migration_before(NAME_SUFFIX)).get_model("trading", "Account").objects
    assert sorted(old_accounts.values_list("user_id", "cash_cents")) == sorted(
        (user.pk, 1_000_000 + n) for n, user in enumerate(made["users"])
    )
