"""Short selling: every asset shortable and easy to borrow, and each order's position intent
(docs/architecture.md, Short selling).

Orders placed before carry the intent they had: every buy opened or added to a long, every sell
closed one, since no asset could be sold short (none was shortable)."""

from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def infer_intents(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    order = apps.get_model("trading", "Order")
    order.objects.filter(side="buy").update(position_intent="buy_to_open")
    order.objects.filter(side="sell").update(position_intent="sell_to_close")


def make_shortable(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("trading", "Asset").objects.update(shortable=True, easy_to_borrow=True)


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0007_order_accepted_status"),
    ]

    operations = [
        migrations.AlterField(
            model_name="asset",
            name="shortable",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="asset",
            name="easy_to_borrow",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="order",
            name="position_intent",
            field=models.CharField(
                choices=[
                    ("buy_to_open", "Buy To Open"),
                    ("buy_to_close", "Buy To Close"),
                    ("sell_to_open", "Sell To Open"),
                    ("sell_to_close", "Sell To Close"),
                ],
                default="buy_to_open",
                max_length=16,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(infer_intents, migrations.RunPython.noop, elidable=False),
        migrations.RunPython(make_shortable, migrations.RunPython.noop, elidable=False),
    ]
