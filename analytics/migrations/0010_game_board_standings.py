"""A game's board becomes one row: its ranked players move from GameBoardEntry rows into
GameBoard.standings (username, equity, return, sharpe, max drawdown, best first), and the entry
table, whose account key deleted frozen standings with the account, goes. A global board gets the
digest of its ranking, so the job can tell an unchanged one without reading its entries. Going
back restores the entry rows from the standings."""

from typing import Any

from django.db import migrations, models


def entries_into_standings(apps: Any, schema_editor: Any) -> None:
    GameBoard = apps.get_model("analytics", "GameBoard")
    GameBoardEntry = apps.get_model("analytics", "GameBoardEntry")
    for board in GameBoard.objects.select_related("game").iterator(chunk_size=100):
        rows = list(
            GameBoardEntry.objects.filter(board=board)
            .order_by("rank")
            .values_list("username", "equity_cents", "return_pct", "sharpe", "max_drawdown", "baseline_cents")
        )
        board.standings = [list(row[:5]) for row in rows]
        board.baseline_cents = rows[0][5] if rows else board.game.starting_cash_cents
        board.save(update_fields=["standings", "baseline_cents"])


def standings_into_entries(apps: Any, schema_editor: Any) -> None:
    # Backwards: every board's standings back into entry rows, with every field they had. The
    # account the standings no longer name is the game's player of that username; a player whose
    # account is gone had its entry deleted with it under the old layout, so it has none here.
    GameBoard = apps.get_model("analytics", "GameBoard")
    GameBoardEntry = apps.get_model("analytics", "GameBoardEntry")
    GamePlayer = apps.get_model("trading", "GamePlayer")
    accounts: dict[Any, dict[str, Any]] = {}
    for board in GameBoard.objects.iterator(chunk_size=100):
        if board.game_id not in accounts:
            accounts[board.game_id] = dict(
                GamePlayer.objects.filter(game_id=board.game_id).values_list("user__username", "account_id")
            )
        players = accounts[board.game_id]
        GameBoardEntry.objects.bulk_create(
            [
                GameBoardEntry(
                    board_id=board.pk,
                    rank=rank,
                    account_id=players[username],
                    username=username,
                    equity_cents=equity_cents,
                    baseline_cents=board.baseline_cents,
                    return_pct=return_pct,
                    sharpe=sharpe,
                    max_drawdown=max_drawdown,
                )
                for rank, (username, equity_cents, return_pct, sharpe, max_drawdown) in enumerate(
                    board.standings, start=1
                )
                if username in players
            ],
            batch_size=1000,
        )


class Migration(migrations.Migration):
    dependencies = [("analytics", "0009_game_boards")]

    operations = [
        migrations.AddField(
            model_name="gameboard",
            name="baseline_cents",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="gameboard",
            name="standings",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="leaderboardsnapshot",
            name="fingerprint",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(entries_into_standings, standings_into_entries),
        migrations.DeleteModel(name="GameBoardEntry"),
    ]
