"""Analytics' ``*_game_board_standings`` migration forward and back on each backend: a game's
boards (live and final) move from entry rows into one row's ``standings``, and going back
restores the entry rows with every field they had (rank, username, account, equity, starting
cash, return, Sharpe ratio, drawdown), a player whose account is gone left out as the old
layout's cascade left it out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.apps.registry import Apps

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

NAME_SUFFIX = "_game_board_standings"
AT = dt.datetime(2026, 3, 2, 15, tzinfo=dt.UTC)
# The model the migration removes, by a name the type checker does not resolve (it knows today's models).
ENTRY_MODEL: str = "GameBoardEntry"
ENTRY_FIELDS = (
    "board_id",
    "rank",
    "username",
    "account_id",
    "equity_cents",
    "baseline_cents",
    "return_pct",
    "sharpe",
    "max_drawdown",
)


def _entries(models: Apps) -> list[tuple[Any, ...]]:
    rows = models.get_model("analytics", ENTRY_MODEL).objects.values_list(*ENTRY_FIELDS)
    return sorted(rows, key=lambda row: (row[0], row[1]))


def test_standings_go_back_to_the_entry_rows_they_came_from(make_account: Callable[..., Account]) -> None:
    organiser = make_account(username="teacher").user
    rules = services.GameRules(
        name="g", starts_at=AT, ends_at=AT + dt.timedelta(days=2), starting_cash_cents=1_000_000
    )
    game = services.game_create(organiser=organiser, rules=rules, now=AT - dt.timedelta(days=1))
    players = [
        services.game_join(game_id=game.pk, user=make_account(username=name).user, now=AT).account
        for name in ("ann", "bob", "cy")
    ]
    before, after = (
        migration_before(NAME_SUFFIX, app="analytics"),
        migration_named(NAME_SUFFIX, app="analytics"),
    )
    migrate([before])
    old = models_at(before)
    boards = old.get_model("analytics", "GameBoard").objects
    entry = old.get_model("analytics", ENTRY_MODEL).objects
    live = boards.create(game_id=game.pk, as_of=AT + dt.timedelta(hours=1), final=False, player_count=3)
    final = boards.create(game_id=game.pk, as_of=AT + dt.timedelta(days=2), final=True, player_count=2)
    rows: dict[int, list[tuple[Account, int, float, float | None, float | None]]] = {
        live.pk: [(players[1], 1_020_000, 0.02, 1.25, -0.01), (players[0], 990_000, -0.01, None, None),
                  (players[2], 950_000, -0.05, -0.5, -0.07)],
        final.pk: [(players[0], 1_100_000, 0.1, 2.0, 0.0), (players[2], 1_000_000, 0.0, None, -0.02)],
    }  # fmt: skip
    for board_id, ranked in rows.items():
        for rank, (account, equity, gain, sharpe, drawdown) in enumerate(ranked, start=1):
            entry.create(
                board_id=board_id, rank=rank, account_id=account.pk, username=account.user.username,
                equity_cents=equity, baseline_cents=1_000_000, return_pct=gain, sharpe=sharpe,
                max_drawdown=drawdown,
            )  # fmt: skip
    stored = _entries(old)
    assert len(stored) == 5

    migrate([after])
    new_boards = models_at(after).get_model("analytics", "GameBoard").objects
    assert new_boards.get(pk=live.pk).standings == [
        ["bob", 1_020_000, 0.02, 1.25, -0.01],
        ["ann", 990_000, -0.01, None, None],
        ["cy", 950_000, -0.05, -0.5, -0.07],
    ]
    assert new_boards.get(pk=final.pk).baseline_cents == 1_000_000

    migrate([before])
    assert _entries(models_at(before)) == stored
    assert sorted(boards.values_list("pk", "final", "player_count")) == sorted(
        [(live.pk, False, 3), (final.pk, True, 2)]
    )


def test_going_back_leaves_out_a_player_whose_account_is_gone(make_account: Callable[..., Account]) -> None:
    organiser = make_account(username="teacher").user
    rules = services.GameRules(
        name="g", starts_at=AT, ends_at=AT + dt.timedelta(days=2), starting_cash_cents=1_000_000
    )
    game = services.game_create(organiser=organiser, rules=rules, now=AT - dt.timedelta(days=1))
    stays = services.game_join(game_id=game.pk, user=make_account(username="ann").user, now=AT).account
    leaves = services.game_join(game_id=game.pk, user=make_account(username="bob").user, now=AT).account
    after = migration_named(NAME_SUFFIX, app="analytics")
    board = models_at(after).get_model("analytics", "GameBoard").objects.create(
        game_id=game.pk, as_of=AT + dt.timedelta(days=2), final=True, player_count=2, baseline_cents=1_000_000,
        standings=[["bob", 1_050_000, 0.05, None, None], ["ann", 1_000_000, 0.0, None, None]],
    )  # fmt: skip
    Account.objects.filter(pk=leaves.pk).delete()  # the frozen standings keep bob

    before = migration_before(NAME_SUFFIX, app="analytics")
    migrate([before])
    assert _entries(models_at(before)) == [
        (board.pk, 2, "ann", stays.pk, 1_000_000, 1_000_000, 0.0, None, None)
    ]
