"""Ticks' and minute bars' times become integer microseconds (trading's ``*_compact_market_data``
migration): a database migrated from the layout before it keeps every row and every instant to
the microsecond, and reversing gives the old columns back with the same values, on each backend."""

from __future__ import annotations

import datetime as dt

from django.apps.registry import Apps
from django.db import connection

from tests.trading.migration_steps import (
    MIGRATION_TEST_MARKS,
    migrate,
    migration_before,
    migration_named,
    models_at,
)
from trading.models import MinuteBar, StockPriceHistory

pytestmark = MIGRATION_TEST_MARKS

NAME_SUFFIX = "_compact_market_data"
# Whole seconds, fractions of a second, the last microsecond of a second and of a day, a leap
# day, an instant before 2001 and one past 2038 (past 32-bit seconds).
INSTANTS = [
    dt.datetime(2026, 1, 2, 14, 30, tzinfo=dt.UTC),
    dt.datetime(2026, 1, 2, 14, 30, 0, 1, tzinfo=dt.UTC),
    dt.datetime(2026, 3, 5, 9, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(2028, 2, 29, 23, 59, 59, 999_999, tzinfo=dt.UTC),
    dt.datetime(1999, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC),
    dt.datetime(2040, 7, 1, 0, 0, 0, 123_456, tzinfo=dt.UTC),
]


def _fill_old_layout(old: Apps) -> None:
    tick = old.get_model("trading", "StockPriceHistory")
    bar = old.get_model("trading", "MinuteBar")
    for seq, instant in enumerate(INSTANTS, start=1):
        tick.objects.create(
            symbol="MIGR", seq=seq, price_units=1_000_000 + seq, size=seq, bid_units=999_900,
            bid_size=300 + seq, ask_units=1_000_100, ask_size=400 + seq, recorded_at=instant,
        )  # fmt: skip
        bar.objects.create(
            symbol="MIGR", start=instant, open_units=1, high_units=2, low_units=1, close_units=2,
            volume=seq, trade_count=seq, vwap_units=2,
        )  # fmt: skip


def test_migrating_keeps_every_row_and_instant_to_the_microsecond() -> None:
    before = migration_before(NAME_SUFFIX)
    migrate([before])
    _fill_old_layout(models_at(before))

    migrate([migration_named(NAME_SUFFIX)])

    ticks = list(StockPriceHistory.objects.filter(symbol="MIGR").order_by("seq"))
    assert [(t.seq, t.recorded_at) for t in ticks] == list(enumerate(INSTANTS, start=1))
    assert [(t.size, t.bid_size, t.ask_size) for t in ticks] == [(s, 300 + s, 400 + s) for s in range(1, 7)]
    bars = MinuteBar.objects.filter(symbol="MIGR").order_by("volume")
    assert [(b.volume, b.start) for b in bars] == list(enumerate(INSTANTS, start=1))
    # Stored as integers, found by datetime through the index that stayed.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT recorded_at FROM {StockPriceHistory._meta.db_table} WHERE seq = 2")
        assert cursor.fetchone()[0] == 1_767_364_200_000_001
    assert StockPriceHistory.objects.filter(symbol="MIGR", recorded_at__lt=INSTANTS[1]).count() == 2
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, StockPriceHistory._meta.db_table)
    assert "tick_symbol_time_idx" in constraints and "tick_time_idx" not in constraints


def test_reversing_gives_the_old_columns_their_values_back() -> None:
    before = migration_before(NAME_SUFFIX)
    migrate([before])
    _fill_old_layout(models_at(before))
    migrate([migration_named(NAME_SUFFIX)])

    migrate([before])

    old = models_at(before)
    ticks = old.get_model("trading", "StockPriceHistory").objects.filter(symbol="MIGR").order_by("seq")
    assert [(t.seq, t.recorded_at) for t in ticks] == list(enumerate(INSTANTS, start=1))
    bars = old.get_model("trading", "MinuteBar").objects.filter(symbol="MIGR").order_by("volume")
    assert [(b.volume, b.start) for b in bars] == list(enumerate(INSTANTS, start=1))
