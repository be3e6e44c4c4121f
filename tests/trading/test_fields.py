"""EpochMicrosecondsField: instants stored as integer microseconds, read back exactly."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.db import connection

from trading.fields import EpochMicrosecondsField, datetime_from_micros, micros_from_datetime
from trading.models import StockPriceHistory

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def test_conversion_is_exact_both_ways_and_ignores_the_zone_it_was_given_in() -> None:
    instant = dt.datetime(2026, 11, 2, 9, 30, 0, 999_999, tzinfo=NEW_YORK)
    micros = micros_from_datetime(instant)
    assert datetime_from_micros(micros) == instant
    assert micros == micros_from_datetime(instant.astimezone(dt.UTC))
    assert micros_from_datetime(dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) == 0


def test_other_values_are_refused_not_stored_as_numbers() -> None:
    field = EpochMicrosecondsField()
    field.set_attributes_from_name("at")
    with pytest.raises(TypeError, match="takes a datetime"):
        field.get_prep_value(dt.date(2026, 1, 1))
    with pytest.raises(TypeError, match="takes a datetime"):
        field.get_prep_value(True)


@pytest.mark.django_db
def test_rows_store_an_integer_and_read_an_aware_datetime() -> None:
    instant = dt.datetime(2026, 3, 8, 7, 0, 0, 1, tzinfo=dt.UTC)
    tick = StockPriceHistory.objects.create(
        symbol="FLD", seq=1, price_units=1, size=1, bid_units=1, bid_size=1, ask_units=1, ask_size=1,
        recorded_at=instant,
    )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT recorded_at FROM {StockPriceHistory._meta.db_table} WHERE symbol = %s AND seq = %s",
            [tick.symbol, tick.seq],
        )
        assert cursor.fetchone()[0] == micros_from_datetime(instant)
    stored = StockPriceHistory.objects.get(pk=tick.pk).recorded_at
    assert stored == instant and stored.tzinfo is not None
    assert StockPriceHistory.objects.filter(recorded_at__gte=instant).count() == 1
    assert StockPriceHistory.objects.filter(recorded_at__gt=instant).count() == 0
