"""The latest quotes the market publishes to Redis (trading/quotes.py): a copy of the newest
stored ticks, which must never outlive the ticks it copies. It expires after the market's last
write, and a database flush or migration drops it, so no read prices from a tick that is gone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from config.redis_pools import redis_client
from tests.trading.api_support import key_client
from trading.models import Account, Asset, StockPriceHistory
from trading.quotes import LatestQuote, latest_quotes, latest_quotes_store
from trading.units import price_to_units


def _publish(symbol: str) -> None:
    """The symbol's newest stored tick, published as the market does after a window."""
    tick = StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").first()
    assert tick is not None
    latest_quotes_store(quotes=[LatestQuote.from_tick(tick)])


@pytest.mark.django_db
def test_published_quotes_expire_after_the_markets_last_write(make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL", price="100.00")
    _publish("AAPL")
    ttl = redis_client().ttl(settings.LATEST_QUOTES_KEY)
    assert 0 < ttl <= settings.LATEST_QUOTES_TTL_S
    # Each write starts the hash's lifetime again.
    redis_client().expire(settings.LATEST_QUOTES_KEY, 5)
    _publish("AAPL")
    assert redis_client().ttl(settings.LATEST_QUOTES_KEY) > 5


@pytest.mark.django_db(transaction=True)
def test_a_flushed_database_leaves_no_quote_behind(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    """The market stopped, the database flushed and seeded again: the latest trade, and what an
    order would fill at, are the new database's, not the quote published before the flush."""
    make_asset("AAPL", price="100.00")
    _publish("AAPL")
    assert latest_quotes(symbols=["AAPL"])["AAPL"].price == price_to_units("100.00")

    call_command("flush", interactive=False, verbosity=0)

    assert not redis_client().exists(settings.LATEST_QUOTES_KEY)
    make_asset("AAPL", price="42.00")
    assert latest_quotes(symbols=["AAPL"])["AAPL"].price == price_to_units("42.00")
    client: Client = key_client(make_account())
    answer = client.get("/v2/stocks/AAPL/trades/latest")
    assert answer.status_code == 200, answer.content
    assert answer.json()["trade"]["p"] == 42.0


@pytest.mark.django_db(transaction=True)
def test_a_migration_drops_the_published_quotes(make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL", price="100.00")
    _publish("AAPL")
    call_command("migrate", interactive=False, verbosity=0)
    assert not redis_client().exists(settings.LATEST_QUOTES_KEY)
