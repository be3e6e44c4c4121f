"""A game player's own no_shorting, kept apart from the account's shorting_enabled (the choice
under the game's ceiling), so a rule edit before the start keeps a player's tightening.

In a game allowing shorts, a player whose account has them off tightened. In a game forbidding
them the choice was never stored: such players follow the game's rule (False), as a new player does.
"""

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def players_tightenings_keep(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    GamePlayer = apps.get_model("trading", "GamePlayer")
    GamePlayer.objects.filter(game__shorting_allowed=True, account__shorting_enabled=False).update(
        no_shorting=True
    )


class Migration(migrations.Migration):
    dependencies = [("trading", "0013_game_announcements")]

    operations = [
        migrations.AddField(
            model_name="gameplayer",
            name="no_shorting",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(players_tightenings_keep, migrations.RunPython.noop),
    ]
