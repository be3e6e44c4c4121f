"""Roll ticks into 1-minute and daily bars, as rows to store and as wire bars, on Alpaca's cadence.

A minute bar is built in memory while its minute lasts and goes out once, closed, when the minute
is over (the first window at or past its end, by the window's clock, whether or not the symbol
trades again): a "b" stamped with the minute's start, and the one row stored for that minute.
The symbol's daily bar goes out with it ("d", stamped with the trading day's start) and is stored
as it then stands: the day's closed minutes, so a daily bar always aggregates the minute bars of
its day. Nothing is sent or stored for a forming minute, so a stored or published minute bar is
final.

Alpaca's "updatedBars" correct a closed bar when a trade is reported late. Here every tick is
stamped by the market's clock when it is produced and rolled in that order, so a trade is never
late and no updated bar is sent; a tick stamped before the newest closed minute (only a test or a
clock stepping back can make one) counts in the first minute still open.

Volume-weighted prices are kept as the exact integer sum of price x size; the stored vwap is that
sum over the volume, rounded half-even to whole price units.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from realtime.wire import WireBar, WireTick
from trading import calendar
from trading.models import BarFields, DailyBar, MinuteBar

MINUTE_NS = 60 * 1_000_000_000
BAR_UPDATE_FIELDS = [
    "open_units",
    "high_units",
    "low_units",
    "close_units",
    "volume",
    "trade_count",
    "vwap_units",
]


def divide_half_even(numerator: int, denominator: int) -> int:
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2):
        quotient += 1
    return quotient


def _datetime(ns: int) -> dt.datetime:
    seconds, rest = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).replace(microsecond=rest // 1000)


def _ns(moment: dt.datetime) -> int:
    # Whole seconds plus microseconds, exactly: bar starts are on whole minutes anyway.
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


@dataclass(slots=True)
class FormingBar:
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    trade_count: int
    price_volume: int  # sum of price x size, exact

    @classmethod
    def first(cls, start_ns: int, tick: WireTick) -> FormingBar:
        return cls(
            start_ns=start_ns,
            open=tick.price,
            high=tick.price,
            low=tick.price,
            close=tick.price,
            volume=tick.size,
            trade_count=1,
            price_volume=tick.price * tick.size,
        )

    @classmethod
    def from_row(cls, row: BarFields) -> FormingBar:
        # A stored bar keeps only the rounded vwap, so a resumed bar's sum is exact to that rounding.
        return cls(
            start_ns=_ns(row.start),
            open=row.open_units,
            high=row.high_units,
            low=row.low_units,
            close=row.close_units,
            volume=row.volume,
            trade_count=row.trade_count,
            price_volume=row.vwap_units * row.volume,
        )

    def add(self, tick: WireTick) -> None:
        self.high = max(self.high, tick.price)
        self.low = min(self.low, tick.price)
        self.close = tick.price
        self.volume += tick.size
        self.trade_count += 1
        self.price_volume += tick.price * tick.size

    def merge(self, later: FormingBar) -> None:
        """Extend this bar by a later one (a day by its next closed minute)."""
        self.high = max(self.high, later.high)
        self.low = min(self.low, later.low)
        self.close = later.close
        self.volume += later.volume
        self.trade_count += later.trade_count
        self.price_volume += later.price_volume

    def copy(self, *, start_ns: int) -> FormingBar:
        return FormingBar(
            start_ns=start_ns,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            trade_count=self.trade_count,
            price_volume=self.price_volume,
        )

    @property
    def vwap(self) -> int:
        return divide_half_even(self.price_volume, self.volume) if self.volume else self.close

    def wire(self, kind: str, symbol: str) -> WireBar:
        return WireBar(
            kind=kind,
            symbol=symbol,
            start_ns=self.start_ns,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            trade_count=self.trade_count,
            vwap=self.vwap,
        )

    def fields(self, symbol: str) -> dict[str, object]:
        return {
            "symbol": symbol,
            "start": _datetime(self.start_ns),
            "open_units": self.open,
            "high_units": self.high,
            "low_units": self.low,
            "close_units": self.close,
            "volume": self.volume,
            "trade_count": self.trade_count,
            "vwap_units": self.vwap,
        }


@dataclass
class BarRollup:
    """One window's bar output: rows to store (one per (symbol, start)) and wire bars."""

    minute_rows: list[MinuteBar] = field(default_factory=list)
    daily_rows: list[DailyBar] = field(default_factory=list)
    wire: list[WireBar] = field(default_factory=list)


@dataclass(slots=True)
class _DayBar:
    bar: FormingBar
    end_ns: int


class BarRoller:
    """Per-symbol forming minute bars and daily bars; one instance lives in the market process."""

    def __init__(self) -> None:
        self._minutes: dict[str, FormingBar] = {}
        self._days: dict[str, _DayBar] = {}
        # Every minute before this instant is closed: its bars went out and were stored.
        self._closed_through_ns = 0
        # Closed since the last roll: minute bars in closing order, and the daily bars they changed.
        self._closed: list[tuple[str, FormingBar]] = []
        self._changed_days: dict[tuple[str, int], FormingBar] = {}

    def resume(self, *, daily_bars: Iterable[DailyBar], ticks: Iterable[WireTick]) -> None:
        """Continue after a restart: each symbol's newest stored daily bar, then the stored ticks no
        stored minute bar holds yet (in time order), as if they had just been rolled. Minutes among
        them that are over go out closed with the next roll; symbols already rolled are left as
        they are."""
        daily_bars, ticks = list(daily_bars), list(ticks)
        known = {row.symbol for row in daily_bars if self.knows(row.symbol)}
        known |= {tick.symbol for tick in ticks if self.knows(tick.symbol)}
        for daily in daily_bars:
            if daily.symbol not in known:
                day = calendar.trading_day_of(daily.start)
                self._days[daily.symbol] = _DayBar(bar=FormingBar.from_row(daily), end_ns=_day_end_ns(day))
        for tick in ticks:
            if tick.symbol not in known:
                self._add(tick, minute_ns=tick.at_ns - tick.at_ns % MINUTE_NS)

    def knows(self, symbol: str) -> bool:
        return symbol in self._minutes or symbol in self._days

    def forming_minute(self, symbol: str) -> FormingBar | None:
        return self._minutes.get(symbol)

    def roll(self, ticks: Sequence[WireTick], *, now_ns: int) -> BarRollup:
        for tick in ticks:
            minute_ns = tick.at_ns - tick.at_ns % MINUTE_NS
            self._add(tick, minute_ns=max(minute_ns, self._closed_through_ns))
        now_minute_ns = now_ns - now_ns % MINUTE_NS
        if now_minute_ns > self._closed_through_ns:
            # Once per minute: close every bar whose minute is over, traded this window or not.
            self._closed_through_ns = now_minute_ns
            for symbol, forming in list(self._minutes.items()):
                if forming.start_ns < now_minute_ns:
                    del self._minutes[symbol]
                    self._close(symbol, forming)
        return self._drain()

    def _add(self, tick: WireTick, *, minute_ns: int) -> None:
        forming = self._minutes.get(tick.symbol)
        if forming is not None and minute_ns > forming.start_ns:
            self._close(tick.symbol, forming)
            forming = None
        if forming is None:
            self._minutes[tick.symbol] = FormingBar.first(minute_ns, tick)
        else:
            # A tick stamped earlier than the forming minute (a clock stepping back) counts in it.
            forming.add(tick)

    def _close(self, symbol: str, minute: FormingBar) -> None:
        self._closed.append((symbol, minute))
        day = self._days.get(symbol)
        if day is not None and day.bar.start_ns <= minute.start_ns < day.end_ns:
            day.bar.merge(minute)
        elif day is None or minute.start_ns >= day.end_ns:
            trading_day = calendar.trading_day_of(_datetime(minute.start_ns))
            day = self._days[symbol] = _DayBar(
                bar=minute.copy(start_ns=_ns(calendar.day_start(trading_day))),
                end_ns=_day_end_ns(trading_day),
            )
        else:
            # A minute older than the stored daily bar's day (no stored state leads here): the
            # minute bar stands, the newer day is not rewritten.
            return
        self._changed_days[(symbol, day.bar.start_ns)] = day.bar

    def _drain(self) -> BarRollup:
        rollup = BarRollup()
        minute_rows: dict[tuple[str, int], MinuteBar] = {}
        for symbol, bar in sorted(self._closed, key=lambda item: (item[0], item[1].start_ns)):
            rollup.wire.append(bar.wire("b", symbol))
            minute_rows[(symbol, bar.start_ns)] = MinuteBar(**bar.fields(symbol))
        for symbol, start_ns in sorted(self._changed_days):
            day = self._changed_days[(symbol, start_ns)]
            rollup.wire.append(day.wire("d", symbol))
            rollup.daily_rows.append(DailyBar(**day.fields(symbol)))
        rollup.minute_rows = list(minute_rows.values())
        self._closed = []
        self._changed_days = {}
        return rollup


def _day_end_ns(day: dt.date) -> int:
    return _ns(calendar.day_start(day + dt.timedelta(days=1)))
