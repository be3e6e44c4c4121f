"""Roll ticks into 1-minute and daily bars, as rows to upsert and as wire bars.

Each window a symbol trades, its forming minute bar goes out as an updated bar ("u") and its
daily bar as "d"; when a minute has passed (by the window's clock, not by the symbol's next
trade, which may be seconds away) the minute bar goes out closed ("b"). Rows are upserted on
(symbol, start), so a forming bar is rewritten in place until its minute ends. Volume-weighted
prices are kept as the exact integer sum of price x size; the stored vwap is that sum over the
volume, rounded half-even to whole price units.
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
    """One window's bar output: rows to upsert (one per (symbol, start)) and wire bars."""

    minute_rows: list[MinuteBar] = field(default_factory=list)
    daily_rows: list[DailyBar] = field(default_factory=list)
    wire: list[WireBar] = field(default_factory=list)


@dataclass(slots=True)
class _DayBar:
    bar: FormingBar
    end_ns: int


class BarRoller:
    """Per-symbol forming minute and daily bars; one instance lives in the market process."""

    def __init__(self) -> None:
        self._minutes: dict[str, FormingBar] = {}
        self._days: dict[str, _DayBar] = {}
        self._checked_minute_ns = 0

    def resume(self, *, minute_bars: Iterable[MinuteBar], daily_bars: Iterable[DailyBar]) -> None:
        """Continue bars stored before a restart instead of overwriting them with a fresh start."""
        for row in minute_bars:
            self._minutes[row.symbol] = FormingBar.from_row(row)
        for daily in daily_bars:
            day = calendar.trading_day_of(daily.start)
            self._days[daily.symbol] = _DayBar(bar=FormingBar.from_row(daily), end_ns=_day_end_ns(day))

    def forming_minute(self, symbol: str) -> FormingBar | None:
        return self._minutes.get(symbol)

    def forming_day(self, symbol: str) -> FormingBar | None:
        day = self._days.get(symbol)
        return day.bar if day is not None else None

    def roll(self, ticks: Sequence[WireTick], *, now_ns: int) -> BarRollup:
        closed: dict[str, FormingBar] = {}
        touched: dict[str, None] = {}  # ordered set
        for tick in ticks:
            minute_ns = tick.at_ns - tick.at_ns % MINUTE_NS
            forming = self._minutes.get(tick.symbol)
            if forming is not None and minute_ns > forming.start_ns:
                closed[tick.symbol] = forming
                forming = None
            if forming is None:
                self._minutes[tick.symbol] = FormingBar.first(minute_ns, tick)
            else:
                # A clock stepping backwards keeps adding to the forming minute.
                forming.add(tick)
            self._add_to_day(tick)
            touched[tick.symbol] = None
        now_minute_ns = now_ns - now_ns % MINUTE_NS
        if now_minute_ns > self._checked_minute_ns:
            # Once per minute: close every bar whose minute is over, traded this window or not.
            self._checked_minute_ns = now_minute_ns
            for symbol, forming in list(self._minutes.items()):
                if forming.start_ns < now_minute_ns:
                    closed[symbol] = forming
                    del self._minutes[symbol]
        rollup = BarRollup()
        minute_rows: dict[tuple[str, int], MinuteBar] = {}
        for symbol in sorted(closed):
            bar = closed[symbol]
            rollup.wire.append(bar.wire("b", symbol))
            minute_rows[(symbol, bar.start_ns)] = MinuteBar(**bar.fields(symbol))
        for symbol in touched:
            forming = self._minutes.get(symbol)
            if forming is not None:
                rollup.wire.append(forming.wire("u", symbol))
                minute_rows[(symbol, forming.start_ns)] = MinuteBar(**forming.fields(symbol))
        for symbol in touched:
            day = self._days[symbol].bar
            rollup.wire.append(day.wire("d", symbol))
            rollup.daily_rows.append(DailyBar(**day.fields(symbol)))
        rollup.minute_rows = list(minute_rows.values())
        return rollup

    def _add_to_day(self, tick: WireTick) -> None:
        day = self._days.get(tick.symbol)
        if day is not None and tick.at_ns < day.end_ns:
            day.bar.add(tick)
            return
        trading_day = calendar.trading_day_of(_datetime(tick.at_ns))
        start_ns = _ns(calendar.day_start(trading_day))
        self._days[tick.symbol] = _DayBar(
            bar=FormingBar.first(start_ns, tick), end_ns=_day_end_ns(trading_day)
        )


def _day_end_ns(day: dt.date) -> int:
    return _ns(calendar.day_start(day + dt.timedelta(days=1)))


def current_bar_starts(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The forming minute's and the trading day's starts at ``now`` (what a restart resumes)."""
    minute = now.replace(second=0, microsecond=0)
    return minute, calendar.day_start(calendar.trading_day_of(now))
