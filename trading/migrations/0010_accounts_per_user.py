"""A user may hold several trading accounts: ``Account.user`` becomes a foreign key and each
user's existing account becomes its default one (one default per user, a conditional unique
constraint). Going back refuses while any user holds more than one account."""

import django.db.models.deletion
from django.apps.registry import Apps
from django.conf import settings
from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def _forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    """Nothing to move: every account stays its user's, as the default one."""


def _refuse_several(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    account = apps.get_model("trading", "Account")
    several = (
        account.objects.values("user_id").annotate(n=models.Count("pk")).filter(n__gt=1).values_list("user_id")
    )
    count = len(several)
    if count:
        raise RuntimeError(
            f"{count} user(s) hold more than one trading account: a one-to-one user cannot keep them"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0009_tick_composite_key"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # Existing rows are their user's only account, hence its default one; new rows say.
        migrations.AddField(
            model_name="account",
            name="is_default",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="account",
            name="is_default",
            field=models.BooleanField(default=False),
        ),
        migrations.AlterField(
            model_name="account",
            name="user",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="accounts",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(_forwards, _refuse_several),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(
                condition=models.Q(("is_default", True)), fields=("user",), name="account_one_default_per_user"
            ),
        ),
    ]
