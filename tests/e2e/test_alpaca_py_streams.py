"""The real alpaca-py stream clients against a live daphne: StockDataStream (msgpack) and
TradingStream, with market windows published to Redis as the market process publishes them and
orders placed and filled through the trading services (what the web and market processes do)."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from alpaca.data.live import StockDataStream
from alpaca.data.models import Bar, Quote, Trade
from alpaca.trading.stream import TradingStream
from django.conf import settings
from pytest_django.fixtures import Settings

from config.redis_pools import redis_client
from realtime.bars import MINUTE_NS
from realtime.market import MarketConfig, MarketProcess
from realtime.wire import Window, WireTick
from tests.builders import list_symbols, shares
from tests.realtime.servers import DaphneProcess, daphne_server
from trading import calendar, services
from trading.models import Account, Asset
from trading.units import PRICE_SCALE

pytestmark = [pytest.mark.live, pytest.mark.slow]


@pytest.fixture
def server(stream_settings: Settings, transactional_db: None, tmp_path: Path) -> Iterator[DaphneProcess]:
    with daphne_server(tmp_path) as running:
        yield running


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account(cash=10_000_000)


@pytest.fixture
def credentials(account: Account) -> tuple[str, str]:
    key, secret = services.api_key_create(account_id=account.pk, label="streams")
    return key.key_id, secret


class Running:
    """An alpaca-py stream's own event loop in a thread, stopped cleanly at the end."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.thread = threading.Thread(target=lambda: asyncio.run(stream._run_forever()), daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.stop()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the SDK stream did not stop"


def wait_for(
    condition: Callable[[], bool], *, timeout: float = 10, poke: Callable[[], None] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        if poke is not None:
            poke()
        time.sleep(0.1)


def test_stock_data_stream_receives_exactly_its_symbols_then_unsubscribes(
    server: DaphneProcess, credentials: tuple[str, str]
) -> None:
    list_symbols("AAPL", "MSFT", "NVDA")
    received: list[Trade | Quote] = []

    async def on_data(item: Trade | Quote) -> None:
        received.append(item)

    stream = StockDataStream(*credentials, url_override=f"{server.ws_url}/v2/iex")
    stream.subscribe_trades(on_data, "AAPL", "MSFT")
    stream.subscribe_quotes(on_data, "AAPL", "MSFT")
    numbers = iter(range(1, 1_000_000))
    seqs = iter(range(1, 1_000_000))

    def publish() -> None:
        ticks = [
            WireTick(symbol, next(seqs), 1_900_000, 10, 1_899_900, 300, 1_900_100, 400, time.time_ns())
            for symbol in ("AAPL", "MSFT", "NVDA")
        ]
        redis_client().publish(
            settings.MARKET_WINDOWS_CHANNEL, Window(number=next(numbers), ticks=ticks).encode()
        )

    with Running(stream):
        # The SDK connects, authenticates and subscribes on its own schedule: publish until data flows.
        wait_for(lambda: len({type(item) for item in received}) == 2 and len(received) >= 8, poke=publish)
        assert {item.symbol for item in received} == {"AAPL", "MSFT"}  # never NVDA
        trade = next(item for item in received if isinstance(item, Trade))
        assert trade.price == 190.0 and trade.exchange == "V" and trade.timestamp.tzinfo is not None
        quote = next(item for item in received if isinstance(item, Quote))
        assert (quote.bid_price, quote.ask_price, quote.ask_size) == (189.99, 190.01, 400)

        stream.unsubscribe_trades("AAPL", "MSFT")
        time.sleep(0.5)  # let the unsubscribe reach the server before the next windows
        received.clear()
        wait_for(lambda: len(received) >= 6, poke=publish)
        assert all(isinstance(item, Quote) for item in received)
        assert {item.symbol for item in received} == {"AAPL", "MSFT"}


def test_trading_stream_gets_new_and_fill_for_market_and_crossed_limit_orders(
    server: DaphneProcess, credentials: tuple[str, str], account: Account, make_asset: Callable[..., Asset]
) -> None:
    make_asset("AAPL", price="100.00")
    updates: list[Any] = []

    async def on_update(update: Any) -> None:
        updates.append(update)

    stream = TradingStream(*credentials, url_override=f"{server.ws_url}/stream")
    stream.subscribe_trade_updates(on_update)
    with Running(stream):
        wait_for(lambda: bool(stream._running))
        time.sleep(0.5)  # the SDK sends "listen" without waiting for the answer
        market = services.order_place(
            account_id=account.pk,
            request=services.OrderRequest(
                symbol="AAPL", qty=shares(2), side="buy", type="market", time_in_force="day"
            ),
        )
        wait_for(lambda: len(updates) >= 2)
        assert [(u.event, str(u.order.id)) for u in updates] == [
            ("new", str(market.pk)),
            ("fill", str(market.pk)),
        ]
        fill = updates[1]
        assert (fill.price, fill.qty, fill.position_qty) == (100.01, 2, 2)
        assert fill.order.status == "filled" and fill.timestamp.tzinfo is not None
        # Each update shows the order as it was at its event: new, then filled.
        assert (updates[0].order.status, updates[0].order.filled_qty) == ("new", "0")
        assert updates[0].order.filled_at is None and fill.order.filled_qty == "2"

        limit = services.order_place(
            account_id=account.pk,
            request=services.OrderRequest(
                symbol="AAPL",
                qty=shares(1),
                side="buy",
                type="limit",
                time_in_force="gtc",
                limit_price_units=95 * PRICE_SCALE,
            ),
        )
        wait_for(lambda: len(updates) >= 3)
        assert (updates[2].event, str(updates[2].order.id), updates[2].order.status) == (
            "new",
            str(limit.pk),
            "new",
        )
        # A tick crossing the limit: the market process fills resting orders exactly like this.
        services.order_fill(order_id=limit.pk, price_units=95 * PRICE_SCALE)
        wait_for(lambda: len(updates) >= 4)
        assert (updates[3].event, str(updates[3].order.id), updates[3].position_qty) == (
            "fill",
            str(limit.pk),
            3,
        )

        # A notional buy: $50 at the ask of $100.01 is 0.499950004 share, on the wire to 9 decimals.
        notional = services.order_place(
            account_id=account.pk,
            request=services.OrderRequest(
                symbol="AAPL", qty=None, notional_cents=5_000, side="buy", type="market", time_in_force="day"
            ),
        )
        wait_for(lambda: len(updates) >= 6)
        fill = updates[5]
        assert (fill.event, str(fill.order.id)) == ("fill", str(notional.pk))
        assert fill.qty == pytest.approx(0.499950004) and fill.position_qty == pytest.approx(3.499950004)
        assert fill.order.notional == "50.00" and fill.order.qty is None
        assert fill.order.filled_qty == "0.499950004"


def test_stock_data_stream_gets_each_minute_bar_once_when_its_minute_ends(
    server: DaphneProcess,
    credentials: tuple[str, str],
    make_asset: Callable[..., Asset],
    stream_settings: Settings,
) -> None:
    """The market's own bar path (in this process, publishing as run_market does) to alpaca-py's
    handlers: one closed minute bar per minute, stamped with its start, with the daily bar of the
    day so far, and no updated bars."""
    make_asset("AAPL", price="100.00")
    market = MarketProcess(
        MarketConfig(seed=3, symbols=0, window_ms=50, tick_interval_s=0.05), triggers=False
    )
    market.setup()
    minutes: list[Bar] = []
    updated: list[Bar] = []
    daily: list[Bar] = []

    async def on_minute(bar: Bar) -> None:
        minutes.append(bar)

    async def on_updated(bar: Bar) -> None:
        updated.append(bar)

    async def on_daily(bar: Bar) -> None:
        daily.append(bar)

    stream = StockDataStream(*credentials, url_override=f"{server.ws_url}/v2/iex")
    stream.subscribe_bars(on_minute, "AAPL")
    stream.subscribe_updated_bars(on_updated, "AAPL")
    stream.subscribe_daily_bars(on_daily, "AAPL")
    now = time.time_ns()
    first = now - now % MINUTE_NS + 2 * MINUTE_NS  # after the asset's stored tick
    market.submit_window([], at_ns=first - MINUTE_NS)  # closes that tick's minute before anyone listens
    prices: dict[dt.datetime, float] = {}
    minute_numbers = iter(range(1_000_000))

    def poke() -> None:
        """One window a minute later than the last, with one trade: it closes the last minute."""
        k = next(minute_numbers)
        start = first + k * MINUTE_NS
        price = 100 + k / 100
        prices[dt.datetime.fromtimestamp(start // 10**9, tz=dt.UTC)] = price
        units = round(price * PRICE_SCALE)
        done = market.windows_done
        tick = WireTick("AAPL", k + 2, units, 100, units - 100, 300, units + 100, 400, start + 10**9)
        market.submit_window([tick], at_ns=tick.at_ns)
        wait_for(lambda: market.windows_done > done)

    try:
        with Running(stream):
            wait_for(lambda: len(minutes) >= 3, poke=poke)
    finally:
        market.shutdown()
    assert updated == []
    assert len({bar.timestamp for bar in minutes}) == len(minutes)  # each minute once
    for bar in minutes:
        assert bar.symbol == "AAPL" and bar.timestamp.second == 0
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.trade_count) == (
            prices[bar.timestamp], prices[bar.timestamp], prices[bar.timestamp], prices[bar.timestamp], 100, 1,
        )  # fmt: skip
    # A daily bar with every closed minute, stamped with the trading day's start.
    assert len(daily) == len(minutes)
    for minute, day in zip(minutes, daily, strict=True):
        assert day.timestamp == calendar.day_start(calendar.trading_day_of(minute.timestamp))
        assert day.close == minute.close
