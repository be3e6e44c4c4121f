"""Migration trading ``*_games`` from its predecessor's state on each backend: a database with
accounts upgrades with every account kept and none of them in a game, a game and its player can
be stored at once, and going back drops the game tables and keeps the accounts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migration_before,
    migration_named,
    models_at,
)

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_games"
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def _accounts(models: Apps) -> list[tuple[object, ...]]:
    return sorted(
        models.get_model("trading", "Account").objects.values_list(
            "pk", "user_id", "is_default", "account_number", "cash_cents"
        ),
        key=str,
    )


def test_accounts_survive_and_games_can_be_stored() -> None:
    migrate([migration_before(NAME_SUFFIX)])
    old = models_at(migration_before(NAME_SUFFIX))
    user = get_user_model().objects.create_user("gamemigr", password="pw-123456!")
    account_model = old.get_model("trading", "Account")
    for n, default in enumerate((True, False)):
        account_model.objects.create(
            user_id=user.pk, is_default=default, account_number=f"PAGAME{n:04d}", cash_cents=500_000 + n
        )
    before = _accounts(old)

    migrate([migration_named(NAME_SUFFIX)])
    new = models_at(migration_named(NAME_SUFFIX))
    assert _accounts(new) == before
    game = new.get_model("trading", "Game").objects.create(
        name="g", organiser_id=user.pk, starts_at=AT, ends_at=AT + dt.timedelta(days=1),
        starting_cash_cents=100, invite_code="code-one",
    )  # fmt: skip
    further = new.get_model("trading", "Account").objects.get(is_default=False)
    player_model = new.get_model("trading", "GamePlayer")
    player_model.objects.create(game_id=game.pk, account_id=further.pk, user_id=user.pk, joined_at=AT)
    with pytest.raises(IntegrityError), transaction.atomic():
        # One place per user in a game.
        default_account = new.get_model("trading", "Account").objects.get(is_default=True)
        player_model.objects.create(
            game_id=game.pk, account_id=default_account.pk, user_id=user.pk, joined_at=AT
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        new.get_model("trading", "Game").objects.create(
            name="backwards", organiser_id=user.pk, starts_at=AT, ends_at=AT,
            starting_cash_cents=100, invite_code="code-two",
        )  # fmt: skip

    migrate([migration_before(NAME_SUFFIX)])
    assert _accounts(models_at(migration_before(NAME_SUFFIX))) == before
    assert "trading_game" not in connection.introspection.table_names()
