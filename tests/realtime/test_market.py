"""The market process's window path in-process, with real database and Redis: scripted prices
through ``MarketProcess.submit_window`` (persist, publish, then the trigger engine, exactly as the
simulator's windows go), and the session clock injected to place "now" inside or outside an NYSE
session.

Stop-limit and trailing-stop tracking need prices that cross chosen levels in a chosen order,
which the random simulator of a real ``run_market`` cannot be asked for; the process's own
window path with scripted ticks is the closest faithful setting (behaviour of the running system
is tested through real processes where that is feasible, docs/properties.md).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db.models import Count, Max, Min
from django.utils import timezone
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient
from websockets.sync.client import connect

from realtime.bars import MINUTE_NS
from realtime.market import MarketConfig, MarketProcess
from realtime.wire import WireTick
from tests.builders import shares
from tests.realtime.servers import daphne_server
from trading import calendar, services
from trading.models import (
    OPEN_ORDER_STATUSES,
    Account,
    Asset,
    DailyBar,
    Fill,
    MinuteBar,
    Order,
    OrderStatus,
    StockPriceHistory,
)
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
        qty=shares(qty),
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
    assert (fill.price_units, fill.tick_seq, fill.qty) == (price_to_units("95.49"), filled_seq, shares(10))

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
    spans = StockPriceHistory.objects.values("symbol").annotate(n=Count("seq"), lo=Min("seq"), hi=Max("seq"))
    assert {row["symbol"]: (row["lo"], row["hi"], row["n"]) for row in spans} == {
        "AAA": (1, 11, 11),
        "BBB": (1, 11, 11),
    }
    assert produced == 20


# --- Bars on Alpaca's cadence -----------------------------------------------------------------------

SECOND = 1_000_000_000


def next_minute_ns(*, ahead: int = 2) -> int:
    """A whole minute ``ahead`` minutes after the current one: later than every stored tick, so
    scripted windows stamped there are the newest the market has seen."""
    now = time.time_ns()
    return now - now % MINUTE_NS + ahead * MINUTE_NS


def scripted(symbol: str, seq: int, price: str, at_ns: int, size: int = 100) -> WireTick:
    units = price_to_units(price)
    return WireTick(symbol, seq, units, size, units - 100, 300, units + 100, 400, at_ns)


def submit(market: MarketProcess, ticks: list[WireTick], at_ns: int) -> None:
    done = market.windows_done
    market.submit_window(ticks, at_ns=at_ns)
    wait_until(lambda: market.windows_done > done, "the window was handled")


def utc(at_ns: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(at_ns // SECOND, tz=dt.UTC)


def test_a_restarted_market_closes_the_minute_its_predecessor_left_forming(
    make_asset: Callable[..., Asset], start_market: Callable[..., MarketProcess]
) -> None:
    make_asset("AAPL", price="100.00")
    minute = next_minute_ns()
    first = start_market(triggers=False)
    submit(first, [], minute)  # closes the minute of the asset's first tick
    closed = set(MinuteBar.objects.values_list("start", flat=True))
    submit(first, [scripted("AAPL", 2, "101.00", minute + 10 * SECOND)], minute + 10 * SECOND)
    submit(first, [scripted("AAPL", 3, "99.00", minute + 50 * SECOND, size=300)], minute + 50 * SECOND)
    first.shutdown()  # stopped before its minute ended: the ticks are stored, no bar is
    assert StockPriceHistory.objects.filter(symbol="AAPL").count() == 3
    assert set(MinuteBar.objects.values_list("start", flat=True)) == closed

    second = start_market(triggers=False)
    after = minute + MINUTE_NS + SECOND
    submit(second, [scripted("AAPL", 4, "102.00", after)], after)
    bar = MinuteBar.objects.get(symbol="AAPL", start=utc(minute))
    assert (bar.open_units, bar.high_units, bar.low_units, bar.close_units, bar.volume, bar.trade_count) == (
        1_010_000, 1_010_000, 990_000, 990_000, 400, 2,
    )  # fmt: skip
    day = DailyBar.objects.get(symbol="AAPL", start=calendar.day_start(calendar.trading_day_of(utc(minute))))
    # The day held the asset's first trade (100.00, 100 shares) if that was the same day.
    first_trade = 1 if day.start <= min(closed) else 0
    assert (day.close_units, day.volume, day.trade_count) == (
        990_000,
        400 + 100 * first_trade,
        2 + first_trade,
    )


def test_the_market_clock_never_steps_back(
    make_asset: Callable[..., Asset], start_market: Callable[..., MarketProcess]
) -> None:
    """Ticks are stamped by the window's clock; a clock set back (NTP) must not stamp trades into a
    minute whose bar already went out."""
    make_asset("AAPL", price="100.00")
    minute = next_minute_ns()
    now = [utc(minute + MINUTE_NS) + dt.timedelta(milliseconds=100)]
    market = start_market(triggers=False, clock=lambda: now[0])
    ahead = market.run_window()
    now[0] = utc(minute) + dt.timedelta(seconds=59)  # the clock steps back into a closed minute
    behind = market.run_window()
    assert ahead.ticks and behind.ticks  # every symbol trades in every window here
    assert {t.at_ns for t in behind.ticks} == {t.at_ns for t in ahead.ticks}
    assert not [bar for bar in behind.bars.wire if bar.kind == "b"]


@pytest.mark.live
@pytest.mark.slow
def test_a_websocket_client_gets_each_minute_bar_once_when_its_minute_ends(
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
    start_market: Callable[..., MarketProcess],
    tmp_path: Path,
) -> None:
    """Through daphne, as a bot sees it: nothing while a minute forms, then the closed minute bar
    stamped with the minute's start and the daily bar stamped with the day's, and never an
    updated bar."""
    make_asset("AAPL", price="100.00")
    key, secret = services.api_key_create(account_id=make_account().pk, label="bars")
    market = start_market(triggers=False)
    minute = next_minute_ns()
    day_start = calendar.day_start(calendar.trading_day_of(utc(minute)))
    submit(market, [], minute)  # closes the minute of the asset's first tick, before subscribing
    opening_day = DailyBar.objects.get(symbol="AAPL")
    carried = (opening_day.volume, opening_day.trade_count) if opening_day.start == day_start else (0, 0)

    def receive(ws: Any) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = json.loads(ws.recv(TIMEOUT))
        return messages

    with daphne_server(tmp_path) as server, connect(f"{server.ws_url}/v2/iex", open_timeout=TIMEOUT) as ws:
        assert receive(ws) == [{"T": "success", "msg": "connected"}]
        ws.send(json.dumps({"action": "auth", "key": key.key_id, "secret": secret}))
        assert receive(ws) == [{"T": "success", "msg": "authenticated"}]
        channels = {"bars": ["AAPL"], "updatedBars": ["AAPL"], "dailyBars": ["AAPL"]}
        ws.send(json.dumps({"action": "subscribe", **channels}))
        assert receive(ws)[0]["T"] == "subscription"

        # A window straddling the minute's end: its ticks are stamped just before it.
        submit(market, [scripted("AAPL", 2, "101.00", minute + 20 * SECOND)], minute + 20 * SECOND)
        submit(market, [scripted("AAPL", 3, "103.00", minute + 59_950_000_000)], minute + 59_950_000_000)
        submit(
            market,
            [scripted("AAPL", 4, "102.00", minute + MINUTE_NS + 50_000_000)],
            minute + MINUTE_NS + 50_000_000,
        )
        first = receive(ws)
        submit(market, [], minute + 2 * MINUTE_NS)
        second = receive(ws)

    assert [(m["T"], m["S"], m["t"]) for m in first] == [
        ("b", "AAPL", utc(minute).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")),
        ("d", "AAPL", day_start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000000000Z")),
    ]
    assert (first[0]["o"], first[0]["h"], first[0]["c"], first[0]["v"], first[0]["n"]) == (
        101.0,
        103.0,
        103.0,
        200,
        2,
    )
    assert (first[1]["c"], first[1]["v"], first[1]["n"]) == (103.0, 200 + carried[0], 2 + carried[1])
    assert [(m["T"], m["t"][:16]) for m in second] == [
        ("b", utc(minute + MINUTE_NS).strftime("%Y-%m-%dT%H:%M")),
        ("d", day_start.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M")),
    ]
    assert (second[0]["o"], second[0]["v"]) == (102.0, 100)
    assert (second[1]["c"], second[1]["v"], second[1]["n"]) == (102.0, 300 + carried[0], 3 + carried[1])


def test_historical_bars_hold_only_closed_minutes_and_never_change_once_returned(
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
    start_market: Callable[..., MarketProcess],
) -> None:
    """The REST side of the same cadence, with the clock pinned inside a minute and moved across
    its end: a minute bar appears once its minute is over, and is the same on every later call;
    latest bar and snapshot follow the closed minutes; today's daily bar holds the closed minutes
    so far and grows with each one."""
    key, secret = services.api_key_create(account_id=make_account().pk, label="bars")
    api = APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
    minute = dt.datetime(2025, 11, 24, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York

    def get(path: str, **params: str) -> Any:
        response = api.get(path, {"symbols": "AAPL", **params})
        assert response.status_code == 200, response.content
        return response.json()

    def minute_bars() -> list[dict[str, Any]]:
        return list(get("/v2/stocks/bars", timeframe="1Min")["bars"].get("AAPL", []))

    def day_bars() -> list[dict[str, Any]]:
        return list(get("/v2/stocks/bars", timeframe="1Day")["bars"].get("AAPL", []))

    def reference(start: dt.datetime, end: dt.datetime) -> tuple[float, float, float, float, int, int]:
        ticks = list(
            StockPriceHistory.objects.filter(
                symbol="AAPL", recorded_at__gte=start, recorded_at__lt=end
            ).order_by("seq")
        )
        prices = [t.price_units / 10_000 for t in ticks]
        return prices[0], max(prices), min(prices), prices[-1], sum(t.size for t in ticks), len(ticks)

    def ohlcvn(bar: dict[str, Any]) -> tuple[float, float, float, float, int, int]:
        return bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["n"]

    with time_machine.travel(minute + dt.timedelta(seconds=20), tick=False) as clock:
        make_asset("AAPL", price="100.00")
        market = start_market(triggers=False)

        def window_at(moment: dt.datetime) -> None:
            clock.move_to(moment)
            done = market.windows_done
            market.run_window()
            wait_until(lambda: market.windows_done > done, "the window was handled")

        window_at(minute + dt.timedelta(seconds=20))
        assert minute_bars() == [] and day_bars() == []
        assert get("/v2/stocks/bars/latest")["bars"] == {}
        assert get("/v2/stocks/snapshots")["AAPL"]["minuteBar"] is None
        window_at(minute + dt.timedelta(seconds=40))
        assert minute_bars() == [] and get("/v2/stocks/bars/latest")["bars"] == {}

        window_at(minute + dt.timedelta(seconds=60, milliseconds=50))  # the minute is over
        closed = minute_bars()
        assert [bar["t"] for bar in closed] == ["2025-11-24T15:00:00Z"]
        assert ohlcvn(closed[0]) == reference(minute, minute + dt.timedelta(minutes=1))
        assert get("/v2/stocks/bars/latest")["bars"]["AAPL"] == closed[0]
        snapshot = get("/v2/stocks/snapshots")["AAPL"]
        assert snapshot["minuteBar"] == closed[0]
        today = day_bars()
        assert [bar["t"] for bar in today] == ["2025-11-24T05:00:00Z"]  # New York midnight
        assert ohlcvn(today[0]) == ohlcvn(closed[0]) and snapshot["dailyBar"] == today[0]

        window_at(minute + dt.timedelta(seconds=90))  # inside the next minute: nothing changes
        assert minute_bars() == closed and day_bars() == today
        assert get("/v2/stocks/bars/latest")["bars"]["AAPL"] == closed[0]

        window_at(minute + dt.timedelta(seconds=120, milliseconds=50))
        both = minute_bars()
        assert both[0] == closed[0] and [bar["t"] for bar in both] == [
            "2025-11-24T15:00:00Z",
            "2025-11-24T15:01:00Z",
        ]
        assert get("/v2/stocks/bars/latest")["bars"]["AAPL"] == both[1]
        grown = day_bars()
        assert ohlcvn(grown[0]) == reference(minute, minute + dt.timedelta(minutes=2))
        assert grown[0]["v"] > today[0]["v"]
