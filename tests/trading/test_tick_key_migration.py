"""Ticks keyed by (symbol, seq) without a row id (trading's ``*_tick_composite_key`` migration;
docs/architecture.md, Storage): a database migrated from the id-keyed layout keeps every row and
value, the table is WITHOUT ROWID on SQLite (and stays so at the latest migration: a later
migration that remakes the table would silently drop it), and reversing gives every row an id
back, on each backend."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migration_before,
    migration_named,
    models_at,
)
from trading.models import StockPriceHistory

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_tick_composite_key"
TABLE = StockPriceHistory._meta.db_table
BASE = dt.datetime(2026, 3, 5, 14, 30, 0, 1, tzinfo=dt.UTC)
# Two symbols with interleaved seqs and times, one of them with a tick at the same microsecond as
# another symbol's, and seqs past 32 bits.
ROWS = [
    ("MIGA", 1, BASE),
    ("MIGB", 1, BASE),
    ("MIGA", 2, BASE + dt.timedelta(microseconds=1)),
    ("MIGB", 2**33, BASE + dt.timedelta(seconds=5)),
    ("MIGA", 3, BASE + dt.timedelta(days=1)),
]


def _values(symbol: str, seq: int, at: dt.datetime) -> dict[str, object]:
    return {
        "symbol": symbol, "seq": seq, "price_units": 1_000_000 + seq % 1000, "size": 7 + seq % 1000,
        "bid_units": 999_900, "bid_size": 300 + seq % 1000, "ask_units": 1_000_100, "ask_size": 400 + seq % 1000,
        "recorded_at": at,
    }  # fmt: skip


def _stored(model: Any) -> list[dict[str, object]]:
    return list(
        model.objects.filter(symbol__startswith="MIG")
        .order_by("symbol", "seq")
        .values(*_values("", 0, BASE).keys())
    )


def _expected() -> list[dict[str, object]]:
    return [_values(*row) for row in sorted(ROWS, key=lambda row: (row[0], row[1]))]


def _without_rowid() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [TABLE])
        return str(cursor.fetchone()[0]).rstrip().upper().endswith("WITHOUT ROWID")


def _key_columns() -> list[str]:
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    return next(list(c["columns"]) for c in constraints.values() if c["primary_key"])


def _column_names() -> list[str]:
    with connection.cursor() as cursor:
        return [column.name for column in connection.introspection.get_table_description(cursor, TABLE)]


def test_the_tick_table_is_keyed_by_symbol_and_seq_without_a_row_id() -> None:
    """The guard: at the latest migration, whatever later migrations did to the table."""
    assert _key_columns() == ["symbol", "seq"]
    assert "id" not in _column_names()
    if connection.vendor == "sqlite":
        assert _without_rowid()
        with pytest.raises(DatabaseError, match="rowid"), connection.cursor() as cursor:
            cursor.execute(f"SELECT rowid FROM {TABLE}")
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    # The key replaced the unique (symbol, seq) index; (symbol, recorded_at) serves time ranges.
    assert "tick_symbol_seq_unique" not in constraints
    assert constraints["tick_symbol_time_idx"]["columns"] == ["symbol", "recorded_at"]


def test_migrating_keeps_every_row_and_value() -> None:
    before = migration_before(NAME_SUFFIX)
    migrate([before])
    old = models_at(before).get_model("trading", "StockPriceHistory")
    for row in ROWS:
        old.objects.create(**_values(*row))

    migrate([migration_named(NAME_SUFFIX)])

    assert _stored(StockPriceHistory) == _expected()
    assert _key_columns() == ["symbol", "seq"] and "id" not in _column_names()
    assert connection.vendor != "sqlite" or _without_rowid()
    tick = StockPriceHistory.objects.get(pk=("MIGB", 2**33))
    assert tick.recorded_at == BASE + dt.timedelta(seconds=5)
    # The key still refuses a second (symbol, seq), as the unique index did.
    with pytest.raises(IntegrityError), transaction.atomic():
        StockPriceHistory.objects.create(**_values("MIGA", 2, BASE))
    assert StockPriceHistory.objects.filter(symbol="MIGA", recorded_at__gt=BASE).count() == 2


def test_reversing_gives_every_row_an_id_back() -> None:
    before = migration_before(NAME_SUFFIX)
    migrate([before])
    old: Any = models_at(before).get_model("trading", "StockPriceHistory")
    for row in ROWS:
        old.objects.create(**_values(*row))
    migrate([migration_named(NAME_SUFFIX)])

    migrate([before])

    old = models_at(before).get_model("trading", "StockPriceHistory")
    assert _stored(old) == _expected()
    assert _key_columns() == ["id"]
    assert connection.vendor != "sqlite" or not _without_rowid()
    ids = list(old.objects.values_list("id", flat=True))
    assert len(set(ids)) == len(ROWS) and all(isinstance(value, int) for value in ids)
    # New rows get ids after the existing ones, and (symbol, seq) is unique again.
    added = old.objects.create(**_values("MIGC", 1, BASE))
    assert added.id > max(ids)
    with pytest.raises(IntegrityError), transaction.atomic():
        old.objects.create(**_values("MIGA", 2, BASE))
