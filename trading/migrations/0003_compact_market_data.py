"""Ticks and minute bars keep their times as integer microseconds; the ticks' time-only index goes.

``recorded_at`` (ticks) and ``start`` (minute bars) become ``EpochMicrosecondsField``s: whole
microseconds since the Unix epoch in a 64-bit integer, read and written as aware datetimes
(trading/fields.py). Every stored time is converted exactly, fractions of a second included:
nothing is lost, and reversing converts them back. ``tick_time_idx`` is dropped: retention deletes
ticks symbol by symbol along ``tick_symbol_time_idx`` (docs/architecture.md, Storage).

Each table gets a new column filled from the old one by one UPDATE, then the old column goes and
the new one takes its name and its indexes. On SQLite two steps rebuild the table (Django's
remake of a column's nullability): on a database holding a day of ticks expect minutes. The
file keeps the space the old layout used as free pages, which new rows fill first; ``VACUUM``
gives it back to the file system at once.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

import trading.fields

# (model, old column, new column) per converted time.
COLUMNS = (("stockpricehistory", "recorded_at", "recorded_us"), ("minutebar", "start", "start_us"))

# Text as Django's SQLite backend stores a datetime (UTC, "YYYY-MM-DD HH:MM:SS[.ffffff]") to
# microseconds and back; PostgreSQL's timestamptz likewise. Whole seconds and the microseconds are
# converted separately, as integers, so no value goes through a float (SQLite's strftime('%s')
# rounds a fraction of a second: it is given the whole seconds only).
TO_MICROS = {
    "sqlite": (
        "CAST(strftime('%%s', substr({old}, 1, 19)) AS INTEGER) * 1000000"
        " + CASE WHEN length({old}) > 19 THEN CAST(substr({old} || '00000', 21, 6) AS INTEGER) ELSE 0 END"
    ),
    "postgresql": (
        "CAST(extract(epoch FROM date_trunc('second', {old})) AS bigint) * 1000000"
        " + CAST(extract(microseconds FROM {old}) AS bigint) %% 1000000"
    ),
}
FROM_MICROS = {
    "sqlite": (
        "strftime('%%Y-%%m-%%d %%H:%%M:%%S', {new} / 1000000, 'unixepoch')"
        " || CASE WHEN {new} %% 1000000 = 0 THEN '' ELSE printf('.%%06d', {new} %% 1000000) END"
    ),
    "postgresql": "to_timestamp({new} / 1000000) + ({new} %% 1000000) * interval '1 microsecond'",
}


def _convert(schema_editor: Any, apps: Any, expressions: dict[str, str], *, forward: bool) -> None:
    vendor = schema_editor.connection.vendor
    if vendor not in expressions:
        raise RuntimeError(f"no conversion of market-data times written for {vendor}")
    quote = schema_editor.quote_name
    for model_name, old, new in COLUMNS:
        table = quote(apps.get_model("trading", model_name)._meta.db_table)
        target, source = (new, old) if forward else (old, new)
        value = expressions[vendor].format(old=quote(old), new=quote(new))
        schema_editor.execute(
            f"UPDATE {table} SET {quote(target)} = {value} WHERE {quote(source)} IS NOT NULL"
        )


def to_micros(apps: Any, schema_editor: Any) -> None:
    _convert(schema_editor, apps, TO_MICROS, forward=True)


def from_micros(apps: Any, schema_editor: Any) -> None:
    _convert(schema_editor, apps, FROM_MICROS, forward=False)


class Migration(migrations.Migration):
    dependencies = [("trading", "0002_username_skeleton")]

    operations = [
        migrations.RemoveIndex(model_name="stockpricehistory", name="tick_time_idx"),
        migrations.RemoveIndex(model_name="stockpricehistory", name="tick_symbol_time_idx"),
        migrations.RemoveIndex(model_name="minutebar", name="minute_bar_start_idx"),
        migrations.RemoveConstraint(model_name="minutebar", name="minute_bar_unique"),
        migrations.AddField(
            model_name="stockpricehistory",
            name="recorded_us",
            field=trading.fields.EpochMicrosecondsField(null=True),
        ),
        migrations.AddField(
            model_name="minutebar", name="start_us", field=trading.fields.EpochMicrosecondsField(null=True)
        ),
        # The old columns may hold NULL while reversing, between re-adding and refilling them.
        migrations.AlterField(
            model_name="stockpricehistory", name="recorded_at", field=models.DateTimeField(null=True)
        ),
        migrations.AlterField(model_name="minutebar", name="start", field=models.DateTimeField(null=True)),
        migrations.RunPython(to_micros, from_micros, elidable=False),
        migrations.RemoveField(model_name="stockpricehistory", name="recorded_at"),
        migrations.RemoveField(model_name="minutebar", name="start"),
        migrations.RenameField(
            model_name="stockpricehistory", old_name="recorded_us", new_name="recorded_at"
        ),
        migrations.RenameField(model_name="minutebar", old_name="start_us", new_name="start"),
        migrations.AlterField(
            model_name="stockpricehistory", name="recorded_at", field=trading.fields.EpochMicrosecondsField()
        ),
        migrations.AlterField(
            model_name="minutebar", name="start", field=trading.fields.EpochMicrosecondsField()
        ),
        migrations.AddIndex(
            model_name="stockpricehistory",
            index=models.Index(fields=["symbol", "recorded_at"], name="tick_symbol_time_idx"),
        ),
        migrations.AddConstraint(
            model_name="minutebar",
            constraint=models.UniqueConstraint(fields=("symbol", "start"), name="minute_bar_unique"),
        ),
        migrations.AddIndex(
            model_name="minutebar", index=models.Index(fields=["start"], name="minute_bar_start_idx")
        ),
    ]
