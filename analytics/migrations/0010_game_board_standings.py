"""A game's board becomes one row: its ranked players move from GameBoardEntry rows into
GameBoard.standings (username, equity, return, sharpe, max drawdown, best first), and the entry
table, whose account key deleted frozen standings with the account, goes. A global board gets the
digest of its ranking, so the job can tell an unchanged one without reading its entries."""

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
    # Backwards: entries need an account, which the standings no longer name; the boards are
    # recomputed (live) by the next job run, so the live ones are dropped and finals kept empty.
    GameBoard = apps.get_model("analytics", "GameBoard")
    GameBoard.objects.filter(final=False).delete()


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
