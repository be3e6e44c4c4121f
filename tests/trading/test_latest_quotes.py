"""The latest quotes the market publishes to Redis (trading/quotes.py): a copy of the newest
stored ticks, which must never outlive the ticks it copies. Retention keeps each symbol's newest
tick, and a database flush or migration drops the hash, so no read prices from a tick that is gone
and a market closed or stopped for days still has a price for every symbol."""

from __future__ import annotations

import datetime as dt
import select
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import redis_pools
from config.redis_pools import redis_client
from jobs.retention import retention_cleanup
from tests.builders import tick_row
from tests.trading.api_support import key_client
from trading.models import Account, Asset, StockPriceHistory
from trading.quotes import _QUOTES_CONNECTION, LatestQuote, latest_quotes, latest_quotes_store
from trading.units import price_to_units


def _publish(symbol: str) -> None:
    """The symbol's newest stored tick, published as the market does after a window."""
    tick = StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").first()
    assert tick is not None
    latest_quotes_store(quotes=[LatestQuote.from_tick(tick)])


@pytest.mark.django_db
def test_a_market_closed_past_the_tick_retention_still_prices_every_symbol(
    settings: Any, make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    """A weekend: no tick for two days, the hourly cleanup run, Redis emptied (restarted). The
    newest tick of each symbol survives retention, so reads and orders still have its price."""
    settings.TICK_RETENTION_HOURS = 24
    make_asset("AAPL", price="100.00")
    last = StockPriceHistory.objects.filter(symbol="AAPL").order_by("-seq").first()
    assert last is not None
    StockPriceHistory.objects.create(
        symbol="AAPL", seq=last.seq + 1, recorded_at=last.recorded_at + dt.timedelta(seconds=1),
        price_units=price_to_units("101.00"), size=10, bid_units=price_to_units("100.99"), bid_size=500,
        ask_units=price_to_units("101.01"), ask_size=500,
    )  # fmt: skip
    _publish("AAPL")
    assert redis_client().ttl(settings.LATEST_QUOTES_KEY) == -1  # no expiry: retention keeps its ticks

    deleted = retention_cleanup(now=last.recorded_at + dt.timedelta(days=2))
    assert deleted["ticks"] >= 1
    assert list(StockPriceHistory.objects.filter(symbol="AAPL").values_list("seq", flat=True)) == [
        last.seq + 1
    ]
    redis_client().delete(settings.LATEST_QUOTES_KEY)

    assert latest_quotes(symbols=["AAPL"])["AAPL"].price == price_to_units("101.00")
    client: Client = key_client(make_account())
    answer = client.post(
        "/v2/orders",
        {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"},
        content_type="application/json",
    )
    assert answer.status_code == 200, answer.content


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


def _quote(symbol: str, price: str, seq: int = 1) -> LatestQuote:
    at = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.UTC)
    return LatestQuote.from_tick(tick_row(symbol, seq=seq, price_units=price_to_units(price), at=at))


@pytest.mark.django_db
def test_a_send_that_fails_is_retried_once_on_a_fresh_connection() -> None:
    """The reads' own connection (config/redis_pools.py, PinnedConnection) closed for writing, as
    when Redis dropped it while idle: the send fails, nothing was sent, and the same read goes out
    again on a fresh connection, so it is Redis' quote, not the database's (which has none)."""
    latest_quotes_store(quotes=[_quote("ZZQ", "10.00")])
    assert latest_quotes(symbols=["ZZQ"])["ZZQ"].price == price_to_units("10.00")
    pinned = _QUOTES_CONNECTION._connection
    assert pinned is not None and pinned._sock is not None
    pinned._sock.shutdown(socket.SHUT_WR)
    latest_quotes_store(quotes=[_quote("ZZQ", "11.00", seq=2)])
    assert latest_quotes(symbols=["ZZQ"]) == {"ZZQ": _quote("ZZQ", "11.00", seq=2)}
    assert _QUOTES_CONNECTION._connection is pinned  # reconnected in place, still pinned


@pytest.mark.django_db
def test_a_reply_that_cannot_be_read_drops_the_connection_and_reads_the_database() -> None:
    """Redis dropped the connection while idle and the close has reached it, but nothing has been
    sent on it since. Over TCP the send goes out and the reply cannot be read: part of a reply may
    be unread, so that connection is dropped, this read takes the stored ticks (none for ZZQ), and
    the next is Redis' again on a new connection. Over a unix socket (the embedded Redis) the send
    itself fails (EPIPE), so nothing was sent and the read is retried at once, as above."""
    latest_quotes_store(quotes=[_quote("ZZQ", "10.00")])
    assert latest_quotes(symbols=["ZZQ"])["ZZQ"].price == price_to_units("10.00")
    pinned = _QUOTES_CONNECTION._connection
    assert pinned is not None and pinned._sock is not None
    pinned.send_command("CLIENT", "ID")
    assert redis_client().client_kill_filter(_id=pinned.read_response()) == 1
    # Readable: Redis' close has arrived (an end of stream, nothing else is pending).
    assert select.select([pinned._sock], [], [], 30)[0]
    if isinstance(pinned, redis.UnixDomainSocketConnection):
        assert latest_quotes(symbols=["ZZQ"]) == {"ZZQ": _quote("ZZQ", "10.00")}
        assert _QUOTES_CONNECTION._connection is pinned
        return
    assert latest_quotes(symbols=["ZZQ"]) == {}
    assert _QUOTES_CONNECTION._connection is None
    assert latest_quotes(symbols=["ZZQ"]) == {"ZZQ": _quote("ZZQ", "10.00")}
    assert _QUOTES_CONNECTION._connection is not None


@pytest.mark.django_db
def test_an_unreachable_redis_answers_from_the_database(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
) -> None:
    """Redis at an address nobody listens on (a real connection failure, not a mock): the latest
    trade and the account still answer 200, priced from the stored ticks."""
    make_asset("AAPL", price="100.00")
    account = make_account()
    client: Client = key_client(account)
    assert (
        client.post(
            "/v2/orders",
            {"symbol": "AAPL", "qty": "2", "side": "buy", "type": "market", "time_in_force": "day"},
            content_type="application/json",
        ).status_code
        == 200
    )
    latest_quotes_store(quotes=[_quote("AAPL", "500.00", seq=10**9)])  # what Redis would say
    # Retries off: redis-py's default backs off for seconds before giving up.
    dead = redis.Redis(unix_socket_path=str(tmp_path / "nobody.sock"), retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(redis_pools, "_client", dead)
    monkeypatch.setattr(_QUOTES_CONNECTION, "_connection", None)

    trade = client.get("/v2/stocks/AAPL/trades/latest")
    assert trade.status_code == 200, trade.content
    assert trade.json()["trade"]["p"] == 100.0
    answer = client.get("/v2/account")
    assert answer.status_code == 200, answer.content
    assert Decimal(answer.json()["long_market_value"]) == Decimal("200")
    assert _QUOTES_CONNECTION._connection is None


@pytest.mark.django_db
def test_a_busy_quotes_connection_sends_other_threads_through_the_pool() -> None:
    latest_quotes_store(quotes=[_quote("ZZQ", "10.00")])
    with _QUOTES_CONNECTION._lock:  # another thread is mid-read on it
        assert latest_quotes(symbols=["ZZQ", "NOPE"]) == {"ZZQ": _quote("ZZQ", "10.00")}


@pytest.mark.django_db
def test_a_rewritten_quote_is_read_as_written() -> None:
    """Each symbol's last parsed quote is reused only while Redis holds the same bytes."""
    latest_quotes_store(quotes=[_quote("ZZQ", "10.00"), _quote("ZZR", "20.00")])
    assert latest_quotes(symbols=["ZZQ", "ZZR"]) == {
        "ZZQ": _quote("ZZQ", "10.00"),
        "ZZR": _quote("ZZR", "20.00"),
    }
    latest_quotes_store(quotes=[_quote("ZZQ", "10.50", seq=2)])
    assert latest_quotes(symbols=["ZZQ", "ZZR"]) == {
        "ZZQ": _quote("ZZQ", "10.50", seq=2),
        "ZZR": _quote("ZZR", "20.00"),
    }
