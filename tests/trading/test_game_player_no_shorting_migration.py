"""Trading's ``*_game_player_no_shorting`` migration from its predecessor's state on each backend:
a player whose account had shorts off in a game allowing them had tightened, and keeps it; in a
game forbidding shorts the choice was never stored, so the player follows the game's rule."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.contrib.auth.models import User

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migration_before,
    migration_named,
    models_at,
)
from trading import services
from trading.models import Account

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_game_player_no_shorting"
BEFORE = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)


def test_a_tightening_the_account_shows_becomes_the_players_own(make_account: Callable[..., Account]) -> None:
    organiser: User = make_account(username="teacher").user

    def game(*, shorting_allowed: bool) -> str:
        rules = services.GameRules(
            name="g",
            starts_at=BEFORE + dt.timedelta(days=1),
            ends_at=BEFORE + dt.timedelta(days=2),
            starting_cash_cents=100_000,
            shorting_allowed=shorting_allowed,
        )
        return str(services.game_create(organiser=organiser, rules=rules, now=BEFORE).pk)

    def join(game_id: str) -> Account:
        return services.game_join(game_id=game_id, user=make_account().user, now=BEFORE).account

    shorts, no_shorts = game(shorting_allowed=True), game(shorting_allowed=False)
    follower, tightener, under_ceiling = join(shorts), join(shorts), join(no_shorts)
    Account.objects.filter(pk=tightener.pk).update(shorting_enabled=False)

    migrate([migration_before(NAME_SUFFIX)])
    migrate([migration_named(NAME_SUFFIX)])

    players = models_at(migration_named(NAME_SUFFIX)).get_model("trading", "GamePlayer").objects
    assert dict(players.values_list("account_id", "no_shorting")) == {
        follower.pk: False,
        tightener.pk: True,
        under_ceiling.pk: False,
    }
