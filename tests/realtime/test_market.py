"""The market process's window path in-process, with real database and Redis: scripted prices
through ``MarketProcess.submit_window`` (persist, publish, then the trigger engine, exactly as the
simulator's windows go), and the session clock injected to place "now" inside or outside an NYSE
session.

Stop-limit and trailing-stop tracking need prices that cross chosen levels in a chosen order,
which the random simulator of a real ``run_market`` cannot be asked for; the process's own
window path with scripted ticks is the closest faithful setting (DESIGN 7: real processes where
feasible).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from zoneinfo import ZoneInfo

import pytest
from django.db.models import Count, Max, Min
from django.utils import timezone
from pytest_django.fixtures import Settings

from realtime.market import MarketConfig, MarketProcess
from realtime.wire import WireTick
from trading import services
from trading.models import OPEN_ORDER_STATUSES, Account, Asset, Fill, Order, OrderStatus, StockPriceHistory
from trading.units import price_to_units

pytestmark = pytest.mark.django_db(transaction=True)

NEW_YORK = ZoneInfo("America/New_York")
TIMEOUT = 10.0


@pytest.fixture
def start_market(stream_settings: Settings) -> Iterator[Callable[..., MarketProcess]]:
    started: list[MarketProcess] = []

    def start(*, triggers: bool = True, clock: Callable[[], dt.datetime] = timezone.now) -> MarketProcess:
        config = MarketConfig(seed=3, symbols=0, window_ms=50, tick_interval_s=0.05)
        market = MarketProcess(config, triggers=triggers, clock=clock)
        market.setup()
        started.append(market)
        return market

    yield start
    for market in started:
        market.shutdown()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"not reached within {TIMEOUT}s: {what}")


class Tape:
    """Scripted prices for one symbol, one tick per window, seqs continuing the stored ones."""

    def __init__(self, market: MarketProcess, symbol: str) -> None:
        self.market = market
        self.symbol = symbol
        self.seq = StockPriceHistory.objects.filter(symbol=symbol).aggregate(m=Max("seq"))["m"] or 0

    def trade(self, last: str, *, bid: str | None = None, ask: str | None = None) -> int:
        """One window with this trade; returns once it is stored, published and acted on."""
        last_units = price_to_units(last)
        bid_units = price_to_units(bid) if bid else last_units - 100
        ask_units = price_to_units(ask) if ask else last_units + 100
        self.seq += 1
        tick = WireTick(
            self.symbol, self.seq, last_units, 100, bid_units, 300, ask_units, 400, time.time_ns()
        )
        self.window([tick])
        return self.seq

    def window(self, ticks: list[WireTick]) -> None:
        done = self.market.windows_done
        self.market.submit_window(ticks)
        wait_until(lambda: self.market.windows_done > done, "the window was handled")

    def until_resting(self, order: Order) -> None:
        """Empty windows until the order's "new" event has reached the market's trigger book."""
        engine = self.market.engine
        assert engine is not None
        deadline = time.monotonic() + TIMEOUT
        while str(order.pk) not in engine.book:
            assert time.monotonic() < deadline, "the order never reached the trigger book"
            self.window([])


def place(
    account: Account,
    symbol: str,
    side: str,
    type_: str,
    qty: int = 10,
    *,
    limit_price: str | None = None,
    stop_price: str | None = None,
    trail_price: str | None = None,
    trail_percent_units: int | None = None,
) -> Order:
    def units(price: str | None) -> int | None:
        return price_to_units(price) if price is not None else None

    request = services.OrderRequest(
        symbol=symbol,
        qty=qty,
        side=side,
        type=type_,
        time_in_force="gtc",
        limit_price_units=units(limit_price),
        stop_price_units=units(stop_price),
        trail_price_units=units(trail_price),
        trail_percent_units=trail_percent_units,
    )
    return services.order_place(account_id=account.pk, request=request)


def fresh(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def test_stop_limit_becomes_a_limit_when_its_stop_is_crossed_and_fills_only_when_marketable(
    make_asset: Callable[..., Asset], account: Account, start_market: Callable[..., MarketProcess]
) -> None:
    make_asset("AAPL", price="100.00")
    place(account, "AAPL", "buy", "market")  # 10 shares to protect
    market = start_market()
    tape = Tape(market, "AAPL")
    protect = place(account, "AAPL", "sell", "stop_limit", stop_price="95.00", limit_price="94.50")
    chase = place(account, "AAPL", "buy", "stop_limit", qty=5, stop_price="105.00", limit_price="105.50")
    tape.until_resting(protect)
    tape.until_resting(chase)

    tape.trade("96.00")  # above the stop: nothing
    assert fresh(protect).stop_triggered_at is None

    tape.trade("94.00", bid="93.99")  # stop crossed, but the bid is under the limit: rests as a limit
    triggered = fresh(protect)
    assert triggered.stop_triggered_at is not None and triggered.status in OPEN_ORDER_STATUSES
    assert not Fill.objects.filter(order=protect).exists()

    tape.trade("94.30", bid="94.29")  # still under the limit
    assert fresh(protect).status in OPEN_ORDER_STATUSES

    # Back above the stop: a stop_limit whose stop had not fired would do nothing here; this one is a
    # sell limit at 94.50 now, and the bid is above it.
    filled_seq = tape.trade("95.50", bid="95.49")
    wait_until(lambda: fresh(protect).status == OrderStatus.FILLED, "the triggered stop_limit filled")
    fill = Fill.objects.get(order=protect)
    assert (fill.price_units, fill.tick_seq, fill.qty) == (price_to_units("95.49"), filled_seq, 10)

    # Stop crossed with the limit marketable in the same tick: filled at once, at the ask.
    assert fresh(chase).status != OrderStatus.FILLED
    seq = tape.trade("105.10", bid="105.09", ask="105.20")
    wait_until(lambda: fresh(chase).status == OrderStatus.FILLED, "the buy stop_limit filled")
    fill = Fill.objects.get(order=chase)
    assert (fill.price_units, fill.tick_seq) == (price_to_units("105.20"), seq)
    assert fresh(chase).stop_triggered_at is None  # never rested as a limit


def test_trailing_sell_stop_follows_the_high_and_fires_on_the_trail(
    make_asset: Callable[..., Asset], account: Account, start_market: Callable[..., MarketProcess]
) -> None:
    make_asset("MSFT", price="100.00")
    place(account, "MSFT", "buy", "market")
    market = start_market()
    tape = Tape(market, "MSFT")
    trailing = place(account, "MSFT", "sell", "trailing_stop", trail_price="1.00")
    assert trailing.high_water_mark_units == price_to_units("100.00")  # the last trade at placement
    tape.until_resting(trailing)

    marks = []
    for last in ("100.50", "101.20", "100.80", "100.90"):
        tape.trade(last)
        marks.append(fresh(trailing).high_water_mark_units)
    # The mark follows new highs only (order_track_water_mark), and 100.80 is above 101.20 - 1.00.
    assert marks == [price_to_units(p) for p in ("100.50", "101.20", "101.20", "101.20")]
    assert fresh(trailing).status != OrderStatus.FILLED

    # 100.20 is the trail under the high, far above where the order started (99.00).
    seq = tape.trade("100.20", bid="100.19")
    wait_until(lambda: fresh(trailing).status == OrderStatus.FILLED, "the trailing stop fired")
    fill = Fill.objects.get(order=trailing)
    assert (fill.price_units, fill.tick_seq) == (price_to_units("100.19"), seq)


def test_trailing_buy_stop_by_percent_follows_the_low(
    make_asset: Callable[..., Asset], account: Account, start_market: Callable[..., MarketProcess]
) -> None:
    make_asset("NVDA", price="100.00")
    market = start_market()
    tape = Tape(market, "NVDA")
    trailing = place(account, "NVDA", "buy", "trailing_stop", qty=5, trail_percent_units=10_000)  # 1 %
    tape.until_resting(trailing)

    tape.trade("99.00")
    tape.trade("98.00")  # low 98.00: the trail is 0.98 above it
    tape.trade("98.90")  # under 98.98: nothing
    assert fresh(trailing).high_water_mark_units == price_to_units("98.00")
    assert fresh(trailing).status != OrderStatus.FILLED
    seq = tape.trade("99.00", ask="99.02")
    wait_until(lambda: fresh(trailing).status == OrderStatus.FILLED, "the trailing buy fired")
    fill = Fill.objects.get(order=trailing)
    assert (fill.price_units, fill.tick_seq) == (price_to_units("99.02"), seq)


def at_new_york(year: int, month: int, day: int, hour: int, minute: int) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def test_xnys_hours_no_ticks_while_the_session_is_closed(
    make_asset: Callable[..., Asset], stream_settings: Settings, start_market: Callable[..., MarketProcess]
) -> None:
    stream_settings.MARKET_HOURS = "xnys"
    for symbol in ("AAA", "BBB"):
        make_asset(symbol, price="100.00")
    now = [at_new_york(2025, 11, 19, 9, 0)]
    market = start_market(triggers=False, clock=lambda: now[0])

    def windows(count: int) -> int:
        """Ticks produced over ``count`` windows (every symbol ticks in every open window)."""
        return sum(len(market.run_window(poll=True).ticks) for _ in range(count))

    moments = [
        (at_new_york(2025, 11, 19, 9, 29), False),  # a Wednesday, before the open
        (at_new_york(2025, 11, 19, 10, 0), True),  # in session
        (at_new_york(2025, 11, 19, 16, 0), False),  # at the close
        (at_new_york(2025, 11, 22, 12, 0), False),  # Saturday
        (at_new_york(2025, 11, 27, 11, 0), False),  # Thanksgiving
        (at_new_york(2025, 11, 28, 12, 30), True),  # the day after: open until 13:00
        (at_new_york(2025, 11, 28, 13, 30), False),  # early close
    ]
    produced = 0
    for moment, in_session in moments:
        now[0] = moment
        ticks = windows(5)
        assert ticks == (10 if in_session else 0), moment
        produced += ticks
    market.shutdown()

    # What the open windows produced is stored, seqs continuing from the stored tick, no gaps.
    spans = StockPriceHistory.objects.values("symbol").annotate(n=Count("id"), lo=Min("seq"), hi=Max("seq"))
    assert {row["symbol"]: (row["lo"], row["hi"], row["n"]) for row in spans} == {
        "AAA": (1, 11, 11),
        "BBB": (1, 11, 11),
    }
    assert produced == 20
