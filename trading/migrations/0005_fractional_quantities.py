"""Fractional shares: quantities become integer units of 1/10^9 share (docs/architecture.md,
Units of money and quantities), orders gain a notional in cents and fills their value in cents.

Every stored quantity (order qty and filled_qty, fill qty, position qty and qty_held) is
multiplied by 10^9 in one UPDATE per table, so every balance is kept: a position of 10 shares
becomes 10,000,000,000 units, which the API still shows as "10". Each fill's value is computed
from its price and its quantity as the ledger moved it (price x qty / 100, half-even, as
trading/units.py does), so the portfolio's sums read it instead of multiplying in SQL.

Reversing divides by 10^9 and refuses to run if any quantity is fractional by then: a fractional
position cannot be represented in whole shares, and silently rounding it would change balances.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.db.models import F, Q

QTY_SCALE = 1_000_000_000
UNITS_PER_CENT = 100

SCALED = (
    ("Order", ("qty", "filled_qty")),
    ("Fill", ("qty",)),
    ("Position", ("qty", "qty_held")),
)


def _half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    if 2 * remainder > denominator or (2 * remainder == denominator and quotient % 2):
        quotient += 1
    return quotient


def scale_up(apps: Any, schema_editor: Any) -> None:
    alias = schema_editor.connection.alias
    fill_model = apps.get_model("trading", "Fill")
    # Values first, from whole-share quantities (price units x shares / 100 cents).
    for pk, price, qty in fill_model.objects.using(alias).values_list("pk", "price_units", "qty").iterator():
        fill_model.objects.using(alias).filter(pk=pk).update(
            value_cents=_half_even(price * qty, UNITS_PER_CENT)
        )
    for model_name, fields in SCALED:
        model = apps.get_model("trading", model_name)
        model.objects.using(alias).update(**{field: F(field) * QTY_SCALE for field in fields})


def scale_down(apps: Any, schema_editor: Any) -> None:
    alias = schema_editor.connection.alias
    for model_name, fields in SCALED:
        model = apps.get_model("trading", model_name)
        fractional = Q()
        for field in fields:
            # x % 10^9 in SQL: x - (x / 10^9) * 10^9 with integer division on both backends.
            fractional |= ~Q(**{field: F(field) / QTY_SCALE * QTY_SCALE})
        if model.objects.using(alias).filter(fractional).exists():
            raise RuntimeError(
                f"{model_name} rows hold fractional quantities; whole shares cannot represent them"
            )
        model.objects.using(alias).update(**{field: F(field) / QTY_SCALE for field in fields})


class Migration(migrations.Migration):
    dependencies = [("trading", "0004_order_auction_time_in_force")]

    operations = [
        migrations.AddField(
            model_name="order",
            name="notional_cents",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.AddConstraint(
            model_name="order",
            constraint=models.CheckConstraint(
                condition=Q(notional_cents__isnull=True) | Q(notional_cents__gt=0),
                name="order_notional_positive",
            ),
        ),
        migrations.AddField(
            model_name="fill",
            name="value_cents",
            field=models.BigIntegerField(default=0),
            preserve_default=False,
        ),
        migrations.RunPython(scale_up, scale_down, elidable=False),
    ]
