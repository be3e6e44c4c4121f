"""``prices_at``: a symbol's last price known at a moment, which final game standings are priced at
(analytics/services.py, _prices_known_at)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from tests.builders import set_quote, tick_row
from trading.models import Asset, StockPriceHistory
from trading.quotes import prices_at
from trading.units import price_to_units

pytestmark = pytest.mark.django_db

AT = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)


def test_of_ticks_stored_at_the_same_moment_the_last_numbered_one_prices_the_symbol(
    make_asset: Callable[..., Asset],
) -> None:
    """A test pinning the clock, or a market writing a burst, stores several ticks of a symbol at
    one moment: the one stored last is the price, whatever plan the database picks (PostgreSQL's
    index on (symbol, recorded_at) does not order ties)."""
    make_asset("AAPL", price="90.00")
    make_asset("XOM", price="40.00")
    # Stored out of their order, as rows can land anywhere in a table with free space: the
    # physical order of equal index entries is not the ticks' order.
    StockPriceHistory.objects.bulk_create(
        tick_row("AAPL", seq=seq, price_units=price_to_units(price), at=AT)
        for seq, price in [(5, "120.00"), (2, "100.00"), (4, "105.00"), (3, "110.00")]
    )
    set_quote("AAPL", price="500.00", at=AT + dt.timedelta(microseconds=1))
    set_quote("XOM", price="45.00", at=AT - dt.timedelta(days=1))
    set_quote("XOM", price="46.00", at=AT - dt.timedelta(days=1))

    assert prices_at(symbols={"AAPL", "XOM", "MSFT"}, at=AT) == {
        "AAPL": price_to_units("120.00"),
        "XOM": price_to_units("46.00"),
    }
    assert prices_at(symbols=["AAPL"], at=AT - dt.timedelta(days=2)) == {}
