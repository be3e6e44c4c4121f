"""Demo price history: deterministic daily and minute bars for any symbol, and their bulk insert.

Paths are geometric Brownian motion with a market factor, a sector factor and each symbol's own
noise, drawn from generators keyed by the seed and the factor's or the symbol's name, so the same
seed and instant give the same bars whatever other symbols are seeded. They are drawn backwards
from each symbol's starting price, so the newest close, the seeded tick and
``Asset.initial_price_units`` agree and the market process continues from them.

Minute bars cover whole trading days: the current one up to now and the ones before it (in the
always-open market every day is a trading day; with MARKET_HOURS=xnys the NYSE sessions, minutes
only inside them). The daily bar of a day with minute bars is their exact aggregate (open, high,
low, close, volume, trade count, volume-weighted vwap), as the market builds its own; older days
move in one step each, chained close to next open. Bars are columns of numpy arrays, not model
instances: 500 symbols x 5 days x 1,440 minutes is 3.6 million minute bars, inserted by the
backend's fastest path (COPY on PostgreSQL, one prepared INSERT run over all rows on SQLite).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import repeat
from typing import Any

import numpy as np
from django.db import connection

from trading import calendar
from trading.models import DailyBar, MinuteBar, StockPriceHistory
from trading.units import PRICE_SCALE, UNITS_PER_CENT
from trading.universe import UniverseAsset, stable_seed

# Daily volatilities of the three components of a log return (about 25 % a year in total).
MARKET_DAILY_SIGMA = 0.009
SECTOR_DAILY_SIGMA = 0.006
IDIO_DAILY_SIGMA_RANGE = (0.007, 0.018)
BETA_RANGE = (0.7, 1.3)
MARKET_DAILY_DRIFT = 0.0003
MINUTE = dt.timedelta(minutes=1)
SQLITE_CACHE_KIB = 64 * 1024
BAR_COLUMNS = (
    "symbol", "start", "open_units", "high_units", "low_units", "close_units", "volume", "trade_count",
    "vwap_units",
)  # fmt: skip


def _rng(*parts: object) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(stable_seed(*parts)))


def _cents(dollars: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.rint(dollars * 100)).astype(np.int64) * UNITS_PER_CENT


def _cents_up(dollars: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.ceil(dollars * 100 - 1e-9)).astype(np.int64) * UNITS_PER_CENT


def _cents_down(dollars: np.ndarray) -> np.ndarray:
    return np.maximum(1, np.floor(dollars * 100 + 1e-9)).astype(np.int64) * UNITS_PER_CENT


@dataclass(frozen=True)
class Session:
    """One trading day, in UTC: its daily bar starts at ``start`` (midnight, trading time zone);
    its minutes run from ``open`` to ``close`` (the whole day when always open), cut at the end of
    history for the current day."""

    start: dt.datetime
    open: dt.datetime
    close: dt.datetime
    full_minutes: int  # minutes of the whole session, for the share of a day's move a part takes

    @property
    def minutes(self) -> int:
        return max(0, (self.close - self.open) // MINUTE)


@dataclass
class Bars:
    """Bars of one symbol as columns (prices in 1/10,000 $), oldest first."""

    starts: Sequence[dt.datetime]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    trade_count: np.ndarray
    vwap: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)

    def rows(self, symbol: str, starts: Sequence[Any] | None = None) -> Iterator[tuple[Any, ...]]:
        """(symbol, start, open, high, low, close, volume, trade_count, vwap) per bar; ``starts``
        replaces the start values (the same instants already adapted for the database)."""
        columns = (self.open, self.high, self.low, self.close, self.volume, self.trade_count, self.vwap)
        return zip(
            repeat(symbol), starts or self.starts, *(column.tolist() for column in columns), strict=False
        )


@dataclass
class SymbolHistory:
    daily: Bars
    minute: Bars
    tick: StockPriceHistory


@dataclass
class _Factors:
    daily: np.ndarray
    minute: np.ndarray


class HistoryGenerator:
    """Deterministic bars for any symbol, ending at its starting price at ``now``.

    ``days`` trading days of daily bars and ``minute_days`` trading days of minute bars, the
    current day (up to now) counted in both; ``minutes``, when given, replaces ``minute_days``
    by that many trading minutes before now (small demos and tests).
    """

    def __init__(
        self, *, seed: int, now: dt.datetime, days: int, minute_days: int = 0, minutes: int | None = None
    ) -> None:
        self.seed = seed
        self.now = now
        self.end = self._history_end(now)
        self.minutes_per_day = 1440 if calendar.always_open() else 390
        self.minute_scale = 1 / math.sqrt(self.minutes_per_day)
        self.sessions = self._sessions(max(days, minute_days, 1 if minutes else 0))
        self.daily_sessions = self.sessions[-days:] if days > 0 else []
        self.daily_starts = [session.start for session in self.daily_sessions]
        self.minute_starts, self.session_minutes = self._minute_window(minute_days, minutes)
        self.market = self._factors("market", MARKET_DAILY_SIGMA, MARKET_DAILY_DRIFT)
        self._sectors: dict[str, _Factors] = {}

    @staticmethod
    def _history_end(now: dt.datetime) -> dt.datetime:
        """Where history stops: now, or with real hours the latest session's close if it is over."""
        end = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
        if calendar.always_open():
            return end
        today = calendar.trading_day_of(now)
        zone = calendar.trading_zone()
        for day in reversed(calendar.sessions_between(today - dt.timedelta(days=10), today)):
            opened = dt.datetime.combine(day.date, day.open, tzinfo=zone)
            if opened <= now:
                return min(end, dt.datetime.combine(day.date, day.close, tzinfo=zone).astimezone(dt.UTC))
        return end

    def _sessions(self, count: int) -> list[Session]:
        """The latest ``count`` trading days that opened before the end of history, oldest first."""
        if count <= 0:
            return []
        today = calendar.trading_day_of(self.end)
        zone = calendar.trading_zone()
        # Two calendar days per trading day (weekends, holidays) and a margin reach back far enough.
        found = calendar.sessions_between(today - dt.timedelta(days=2 * count + 10), today)
        sessions = []
        for day in found:
            # In UTC: aware datetimes of one zone subtract by wall clock, which a DST change breaks.
            start = calendar.day_start(day.date).astimezone(dt.UTC)
            if calendar.always_open():
                opened, closed = start, calendar.day_start(day.date + dt.timedelta(days=1)).astimezone(dt.UTC)
            else:
                opened = dt.datetime.combine(day.date, day.open, tzinfo=zone).astimezone(dt.UTC)
                closed = dt.datetime.combine(day.date, day.close, tzinfo=zone).astimezone(dt.UTC)
            full = (closed - opened) // MINUTE
            if opened < self.end:
                sessions.append(
                    Session(start=start, open=opened, close=min(closed, self.end), full_minutes=full)
                )
        return sessions[-count:]

    def _minute_window(self, minute_days: int, minutes: int | None) -> tuple[list[dt.datetime], list[range]]:
        """The minute bars' starts, and for each of ``self.sessions`` the range of them inside it."""
        spans: list[tuple[dt.datetime, int]] = []  # (first minute, count) per session
        if minutes is not None:
            wanted = minutes
            for session in reversed(self.sessions):
                take = min(wanted, session.minutes)
                spans.append((session.close - take * MINUTE, take))
                wanted -= take
            spans.reverse()
        else:
            chosen = len(self.sessions) - minute_days
            spans = [
                (session.open, session.minutes if index >= chosen else 0)
                for index, session in enumerate(self.sessions)
            ]
        starts: list[dt.datetime] = []
        ranges = []
        for first, count in spans:
            ranges.append(range(len(starts), len(starts) + count))
            starts += [first + k * MINUTE for k in range(count)]
        return starts, ranges

    def _factors(self, name: str, sigma: float, drift: float = 0.0) -> _Factors:
        rng = _rng(self.seed, "factor", name)
        daily = rng.normal(drift, sigma, len(self.sessions))
        minute = rng.normal(drift / self.minutes_per_day, sigma * self.minute_scale, len(self.minute_starts))
        return _Factors(daily=daily, minute=minute)

    def _sector(self, sector: str) -> _Factors:
        if sector not in self._sectors:
            self._sectors[sector] = self._factors(f"sector:{sector}", SECTOR_DAILY_SIGMA)
        return self._sectors[sector]

    def history(self, asset: UniverseAsset) -> SymbolHistory:
        rng = _rng(self.seed, "symbol", asset.symbol)
        beta = rng.uniform(*BETA_RANGE)
        idio = rng.uniform(*IDIO_DAILY_SIGMA_RANGE)
        sector = self._sector(asset.sector)
        anchor = asset.initial_price_units / PRICE_SCALE
        # Average daily volume: millions of shares, fewer for expensive stocks.
        daily_volume = math.exp(rng.normal(math.log(4e6), 0.6)) * math.sqrt(100 / anchor)
        trade_size = rng.uniform(60, 150)
        minute = self._minutes(rng, anchor, beta, idio, sector, daily_volume, trade_size)
        daily = self._days(rng, anchor, beta, idio, sector, daily_volume, trade_size, minute)
        return SymbolHistory(daily=daily, minute=minute, tick=self._tick(asset, rng))

    def _minutes(
        self,
        rng: np.random.Generator,
        anchor: float,
        beta: float,
        idio: float,
        sector: _Factors,
        daily_volume: float,
        trade_size: float,
    ) -> Bars:
        count = len(self.minute_starts)
        sigma = idio * self.minute_scale
        steps = beta * self.market.minute + sector.minute + rng.normal(0, sigma, count)
        # The log price after minute k is the anchor's less every later minute's step.
        after = np.cumsum(steps[::-1])[::-1]  # after[k]: the steps of minutes k, k+1, ...
        log_close = math.log(anchor) - (after - steps)
        log_open = np.concatenate(([math.log(anchor) - after[0]], log_close[:-1])) if count else log_close
        close = _cents(np.exp(log_close))
        # Each minute opens where the last one closed, on the same cent.
        open_ = np.concatenate((_cents(np.exp(log_open[:1])), close[:-1])) if count else close
        top, bottom = np.maximum(open_, close) / PRICE_SCALE, np.minimum(open_, close) / PRICE_SCALE
        high = _cents_up(top * np.exp(np.abs(rng.normal(0, sigma * 0.6, count))))
        low = _cents_down(bottom * np.exp(-np.abs(rng.normal(0, sigma * 0.6, count))))
        volume = np.maximum(
            1, np.rint(daily_volume / self.minutes_per_day * np.exp(rng.normal(0, 0.5, count)))
        ).astype(np.int64)
        trade_count = np.maximum(1, np.rint(volume / trade_size)).astype(np.int64)
        vwap = (open_ + high + low + close) // 4
        return Bars(self.minute_starts, open_, high, low, close, volume, trade_count, vwap)

    def _days(
        self,
        rng: np.random.Generator,
        anchor: float,
        beta: float,
        idio: float,
        sector: _Factors,
        daily_volume: float,
        trade_size: float,
        minute: Bars,
    ) -> Bars:
        """Daily bars: each day with minute bars aggregates them; the days before walk backwards
        from the first minute's open in one step each, a day's close being the next day's open
        (no overnight gap: the always-open market has no night, and over a weekend or a night
        nothing traded)."""
        sessions = self.sessions
        count = len(sessions)
        day_sigma = math.sqrt((beta * MARKET_DAILY_SIGMA) ** 2 + SECTOR_DAILY_SIGMA**2 + idio**2)
        # The share of a full day's move each day takes outside its minute bars: 1 for a whole day
        # before them, 0 for a day they cover, a part for today or a day they cover in part.
        share = np.array([
            max(0, session.minutes - len(self.session_minutes[i])) / max(1, session.full_minutes)
            for i, session in enumerate(sessions)
        ])  # fmt: skip
        steps = (beta * self.market.daily + sector.daily + rng.normal(0, idio, count)) * np.sqrt(share)
        wiggle_up = np.exp(np.abs(rng.normal(0, 1, count)) * day_sigma * np.sqrt(share) * 0.8)
        wiggle_down = np.exp(-np.abs(rng.normal(0, 1, count)) * day_sigma * np.sqrt(share) * 0.8)
        coarse_volume = np.rint(daily_volume * share * np.exp(rng.normal(0, 0.3, count))).astype(np.int64)

        covered = [i for i in range(count) if self.session_minutes[i]]
        first_covered = covered[0] if covered else count
        columns = np.zeros((7, count), np.int64)
        open_, high, low, close, volume, trades, vwap = columns
        for i in covered:
            inside = slice(self.session_minutes[i].start, self.session_minutes[i].stop)
            minute_volume = minute.volume[inside]
            close[i] = minute.close[inside][-1]
            open_[i] = minute.open[inside][0]
            high[i] = minute.high[inside].max()
            low[i] = minute.low[inside].min()
            volume[i] = minute_volume.sum()
            trades[i] = minute.trade_count[inside].sum()
            vwap[i] = round(Fraction(int((minute.vwap[inside] * minute_volume).sum()), int(volume[i])))
            if share[i]:
                # Only its end has minute bars (a short --minutes window): the part before them
                # moves in one step to the first minute's open.
                open_[i] = _cents(np.array([minute.open[inside][0] / PRICE_SCALE / math.exp(steps[i])]))[0]
                high[i] = _cents_up(np.array([max(high[i], open_[i]) / PRICE_SCALE * wiggle_up[i]]))[0]
                low[i] = _cents_down(np.array([min(low[i], open_[i]) / PRICE_SCALE * wiggle_down[i]]))[0]
                volume[i] += coarse_volume[i]
                trades[i] = max(1, round(volume[i] / trade_size))
                vwap[i] = (open_[i] + high[i] + low[i] + close[i]) // 4
        # The days before the minute window, oldest first, chained back from its first open.
        before = slice(0, first_covered)
        next_open = open_[first_covered] if covered else _cents(np.array([anchor]))[0]
        log_open = math.log(next_open / PRICE_SCALE) - np.cumsum(steps[before][::-1])[::-1]
        open_[before] = _cents(np.exp(log_open))
        close[before] = np.concatenate((open_[1:first_covered], [next_open]))
        high[before] = _cents_up(np.maximum(open_[before], close[before]) / PRICE_SCALE * wiggle_up[before])
        low[before] = _cents_down(
            np.minimum(open_[before], close[before]) / PRICE_SCALE * wiggle_down[before]
        )
        volume[before] = np.maximum(1, coarse_volume[before])
        trades[before] = np.maximum(1, np.rint(volume[before] / trade_size))
        vwap[before] = (open_[before] + high[before] + low[before] + close[before]) // 4
        kept = slice(count - len(self.daily_sessions), count)
        return Bars(self.daily_starts, *(column[kept] for column in columns))

    def _tick(self, asset: UniverseAsset, rng: np.random.Generator) -> StockPriceHistory:
        """The symbol's one stored trade, at its starting price: the close of the newest minute,
        stamped in that minute, so the market resumes from it and no bar has to hold it again."""
        price = asset.initial_price_units
        # A spread of one to four basis points, at least a cent each side, on whole cents.
        half_spread = max(1, math.ceil(price * rng.uniform(0.5e-4, 2e-4) / UNITS_PER_CENT)) * UNITS_PER_CENT
        return StockPriceHistory(
            symbol=asset.symbol,
            seq=1,
            price_units=price,
            size=int(rng.integers(1, 6)) * 100,
            bid_units=max(UNITS_PER_CENT, price - half_spread),
            bid_size=int(rng.integers(1, 11)) * 100,
            ask_units=price + half_spread,
            ask_size=int(rng.integers(1, 11)) * 100,
            recorded_at=self.end - dt.timedelta(milliseconds=1),
        )


# --- Bulk insert ---------------------------------------------------------------------------------


class BarInserter:
    """Inserts bars by the backend's fastest path, within the caller's transaction.

    Backend-specific on purpose (COPY is PostgreSQL's fast path): COPY FROM STDIN in text format on
    PostgreSQL; on SQLite one INSERT statement prepared once and run over every row. Start times
    are adapted for the database once per instant, not once per row. Rows that may already exist
    (``conflicts``) go through ``bulk_create(ignore_conflicts=True)`` instead, keeping them.
    """

    def __init__(self, *, conflicts: bool) -> None:
        self.path = (
            "bulk_create"
            if conflicts
            else {"postgresql": "copy", "sqlite": "executemany"}.get(connection.vendor, "bulk_create")
        )
        # Start lists already adapted, each kept with its list so that its id stays its own.
        self._adapted: dict[int, tuple[Sequence[dt.datetime], list[Any]]] = {}
        if self.path == "executemany":
            # SQLite's default page cache (2 MB) is far smaller than the indexes millions of bars
            # touch: measured, a large one makes the insert about a third faster. This connection only.
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")

    def insert(self, model: type[MinuteBar] | type[DailyBar], symbol: str, bars: Bars) -> int:
        if not len(bars):
            return 0
        if self.path == "bulk_create":
            model._default_manager.bulk_create(
                [model(**dict(zip(BAR_COLUMNS, row, strict=True))) for row in bars.rows(symbol)],  # type: ignore[misc]
                batch_size=1_000,
                ignore_conflicts=True,
            )
        elif self.path == "copy":
            self._copy(model, symbol, bars)
        else:
            self._executemany(model, symbol, bars)
        return len(bars)

    def _starts(self, model: type[MinuteBar] | type[DailyBar], bars: Bars) -> list[Any]:
        # Every symbol's bars share the generator's start lists, so each is adapted once, by the
        # model's own field (a datetime for daily bars, integer microseconds for minute bars).
        entry = self._adapted.get(id(bars.starts))
        if entry is None or entry[0] is not bars.starts:
            field = model._meta.get_field("start")
            adapted = [field.get_db_prep_value(start, connection) for start in bars.starts]
            entry = self._adapted[id(bars.starts)] = (bars.starts, adapted)
        return entry[1]

    def _executemany(self, model: type[MinuteBar] | type[DailyBar], symbol: str, bars: Bars) -> None:
        table = connection.ops.quote_name(model._meta.db_table)
        columns = ", ".join(connection.ops.quote_name(column) for column in BAR_COLUMNS)
        statement = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(BAR_COLUMNS))})"
        starts = self._starts(model, bars)
        with connection.cursor() as cursor:
            cursor.executemany(statement, list(bars.rows(symbol, starts)))

    def _copy(self, model: type[MinuteBar] | type[DailyBar], symbol: str, bars: Bars) -> None:
        statement = f"COPY {model._meta.db_table} ({', '.join(BAR_COLUMNS)}) FROM STDIN"
        starts = self._starts(model, bars)
        text = "".join("\t".join(map(str, row)) + "\n" for row in bars.rows(symbol, starts))
        # COPY bypasses Django's execute wrappers: translate driver errors as other queries' are.
        with connection.wrap_database_errors, connection.cursor() as cursor, cursor.copy(statement) as copy:
            copy.write(text)
