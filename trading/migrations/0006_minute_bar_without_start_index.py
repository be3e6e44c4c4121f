"""Minute bars lose their index on start alone (docs/architecture.md, Storage).

Every read of minute bars names its symbols and runs on (symbol, start) (``minute_bar_unique``),
and retention deletes them symbol by symbol along it, so the start index only cost about a fifth
of each row's bytes. Reversing builds it again.
"""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("trading", "0005_fractional_quantities")]

    operations = [
        migrations.RemoveIndex(model_name="minutebar", name="minute_bar_start_idx"),
    ]
