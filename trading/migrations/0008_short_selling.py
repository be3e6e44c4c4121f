"""Short selling: every asset shortable and easy to borrow, and each order's position intent
(docs/architecture.md, Short selling).

Orders placed before carry the intent they had: every buy opened or added to a long, every sell
closed one (assets were not shortable unless an operator marked them so).

A short opened before, in an asset an operator had marked shortable, now holds its initial
margin (150 % of its entry value) in its account's reserved_cents, as a new short does: covering
it gives that hold back. Where the account's cash cannot hold all of it (account_reserved_within_cash),
the hold is what the cash allows."""

from django.db import migrations, models
from django.db.models import F
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps


def infer_intents(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    order = apps.get_model("trading", "Order")
    order.objects.filter(side="buy").update(position_intent="buy_to_open")
    order.objects.filter(side="sell").update(position_intent="sell_to_close")


# trading/margin.py's INITIAL_MARGIN_PERCENT at the time of this migration, copied so later
# changes to the app's rules do not change what this migration did.
INITIAL_MARGIN_PERCENT = 150


def _holds(apps: StateApps) -> dict[object, int]:
    holds: dict[object, int] = {}
    shorts = apps.get_model("trading", "Position").objects.filter(qty__lt=0)
    for account_id, cost_basis_cents in shorts.values_list("account_id", "cost_basis_cents"):
        hold = -(-abs(cost_basis_cents) * INITIAL_MARGIN_PERCENT // 100)
        holds[account_id] = holds.get(account_id, 0) + hold
    return holds


def hold_short_margin(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    accounts = apps.get_model("trading", "Account").objects
    for account_id, hold in _holds(apps).items():
        cash, reserved = accounts.filter(pk=account_id).values_list("cash_cents", "reserved_cents").get()
        accounts.filter(pk=account_id).update(reserved_cents=F("reserved_cents") + min(hold, cash - reserved))


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
        migrations.RunPython(hold_short_margin, migrations.RunPython.noop, elidable=False),
    ]
