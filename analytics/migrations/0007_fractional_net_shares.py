"""Symbol statistics count net shares held in quantity units (1/10^9 share), like the trading
tables since trading's 0005; stored rows are rescaled so none holds whole shares meanwhile."""

from __future__ import annotations

from typing import Any

from django.db import migrations
from django.db.models import F

QTY_SCALE = 1_000_000_000


def scale_up(apps: Any, schema_editor: Any) -> None:
    model = apps.get_model("analytics", "SymbolStats")
    model.objects.using(schema_editor.connection.alias).update(net_shares_held=F("net_shares_held") * QTY_SCALE)


def scale_down(apps: Any, schema_editor: Any) -> None:
    # Recomputed by the next statistics run; integer division only drops fractions of a share.
    model = apps.get_model("analytics", "SymbolStats")
    model.objects.using(schema_editor.connection.alias).update(net_shares_held=F("net_shares_held") / QTY_SCALE)


class Migration(migrations.Migration):
    dependencies = [("analytics", "0006_frontend_sample_renderer"), ("trading", "0005_fractional_quantities")]

    operations = [migrations.RunPython(scale_up, scale_down, elidable=False)]
