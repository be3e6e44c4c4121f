"""Market-data reads: keyset pages of ticks and bars, latest values and snapshots.

Pages follow a unique key, so a token never ties and a page at any depth costs one index seek
(Property 4, docs/properties.md); OFFSET is never used. Ticks page by (symbol, seq), bars by
(symbol, start). Multi-symbol answers are grouped by symbol in ascending symbol order, as
Alpaca's are, and the limit counts rows across all symbols. ``sort=desc`` reverses the order
within each symbol.

The keyset condition after a cursor (s, k) is ``symbol > s OR (symbol = s AND key > k)``. It runs
as two reads because neither SQLite nor PostgreSQL seeks an index through that OR: measured on
SQLite, the OR form seeks only ``symbol = s`` and walks the cursor symbol from its first row, so
deep pages grew with depth. The reads are the cursor's symbol (``symbol = s AND key > k``), then,
only when the page is not full yet, the following symbols from their first row.

Time ranges on ticks start from the (symbol, recorded_at) index (Property 1, docs/properties.md).
With a range, ticks are read in (recorded_at, seq) order, which is (symbol, seq) order because
seq increases with time; ordering by seq instead would make the planners either walk the
(symbol, seq) index from the symbol's first tick to the range start or sort the whole range per
page.
Tokens carry the cursor row's seq and recorded_at, so both orders can resume from any token.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from django.conf import settings
from django.core import signing
from django.db import connection
from django.db.models import Model, Q, QuerySet

from trading import calendar
from trading.errors import InvalidRequest
from trading.fields import datetime_from_micros
from trading.models import Asset, DailyBar, MinuteBar, StockPriceHistory
from trading.prepared import read_rows
from trading.quotes import latest_quotes, newest_per_symbol
from trading.units import UnitError, to_integer

T = TypeVar("T")

Sort = Literal["asc", "desc"]

# Alpaca's own bound on ``limit``; alpaca-py always asks for up to this many rows per page.
ALPACA_LIMIT_MAX = 10_000

_TOKEN_SALT = "trading.history.page_token"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# Rows read per query when bars are aggregated: enough for a page, bounded for memory.
_CHUNK_MIN, _CHUNK_MAX = 500, 10_000

TICK_FIELDS = (
    "symbol",
    "seq",
    "price_units",
    "size",
    "bid_units",
    "bid_size",
    "ask_units",
    "ask_size",
    "recorded_at",
)
BAR_FIELDS = (
    "symbol",
    "start",
    "open_units",
    "high_units",
    "low_units",
    "close_units",
    "volume",
    "trade_count",
    "vwap_units",
)


@dataclass(frozen=True)
class PaginatedResult(Generic[T]):
    """One page and the opaque token of the next; None (never "") when nothing follows."""

    items: list[T]
    next_page_token: str | None


class Tick(NamedTuple):
    """A stored tick: the trade and the quote prevailing with it (a tuple: pages build many)."""

    symbol: str
    seq: int
    price_units: int
    size: int
    bid_units: int
    bid_size: int
    ask_units: int
    ask_size: int
    recorded_at: dt.datetime


class Bar(NamedTuple):
    symbol: str
    start: dt.datetime
    open_units: int
    high_units: int
    low_units: int
    close_units: int
    volume: int
    trade_count: int
    vwap_units: int


@dataclass(frozen=True)
class Snapshot:
    symbol: str
    latest_tick: Tick | None
    minute_bar: Bar | None
    daily_bar: Bar | None
    prev_daily_bar: Bar | None


# --- Parameters -----------------------------------------------------------------------------


def page_limit(limit: int | str | None) -> int:
    """The page size for a requested ``limit``: never more than asked for, nor than the maximum.

    Valid limits are 1..10,000 as on Alpaca (or up to HISTORY_PAGE_MAX if an operator raised it
    above that); anything else is a 422. A valid limit above HISTORY_PAGE_MAX gives a page of
    HISTORY_PAGE_MAX rows and a token for the rest: alpaca-py always asks for 10,000 rows a page
    and must keep working when the operator lowers the maximum.
    """
    maximum = int(settings.HISTORY_PAGE_MAX)
    if limit is None or limit == "":
        return min(int(settings.HISTORY_PAGE_DEFAULT), maximum)
    try:
        value = to_integer(limit, field="limit")
    except UnitError:
        raise InvalidRequest("invalid limit: must be an integer") from None
    upper = max(ALPACA_LIMIT_MAX, maximum)
    if not 1 <= value <= upper:
        raise InvalidRequest(f"invalid limit: must be between 1 and {upper}")
    return min(value, maximum)


def parse_sort(sort: str | None) -> Sort:
    if sort is None or sort == "" or sort == "asc":
        return "asc"
    if sort == "desc":
        return "desc"
    raise InvalidRequest("invalid sort: must be asc or desc")


def normalize_symbols(symbols: Iterable[str]) -> list[str]:
    """Requested symbols, upper-cased, de-duplicated and in the order pages follow."""
    return sorted({symbol.strip().upper() for symbol in symbols if symbol.strip()})


_TIMEFRAME_RE = re.compile(r"^([0-9]{1,3})(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_UNIT_ALIASES = {"T": "Min", "H": "Hour", "D": "Day", "W": "Week", "M": "Month"}
_UNIT_AMOUNTS = {
    "Min": range(1, 60),
    "Hour": range(1, 24),
    "Day": range(1, 2),
    "Week": range(1, 2),
    "Month": (1, 2, 3, 4, 6, 12),
}


@dataclass(frozen=True)
class Timeframe:
    """A bar width as Alpaca spells it: 1-59Min, 1-23Hour, 1Day, 1Week, 1/2/3/4/6/12Month."""

    amount: int
    unit: str

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"

    @classmethod
    def parse(cls, text: str | None) -> Timeframe:
        match = _TIMEFRAME_RE.match((text or "").strip())
        if match is None:
            raise InvalidRequest(f"invalid timeframe: {text!r}")
        amount, unit = int(match.group(1)), _UNIT_ALIASES.get(match.group(2), match.group(2))
        if amount not in _UNIT_AMOUNTS[unit]:
            raise InvalidRequest(f"invalid timeframe: {text!r} (unsupported amount for {unit})")
        return cls(amount, unit)


# --- Page tokens ----------------------------------------------------------------------------


def _micros(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // _MICROSECOND


def _from_micros(value: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(microseconds=value)


def _sign(payload: list[Any]) -> str:
    return signing.Signer(salt=_TOKEN_SALT).sign_object(payload, compress=True)


def _unsign(token: str, kind: str, sort: Sort) -> list[Any]:
    try:
        payload = signing.Signer(salt=_TOKEN_SALT).unsign_object(token)
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidRequest("invalid page_token") from None
    # The signature proves the token is ours; the shape check keeps a token from one kind of
    # query or sort order from being replayed against another.
    if not isinstance(payload, list) or len(payload) < 3 or payload[0] != kind or payload[1] != sort:
        raise InvalidRequest("invalid page_token")
    return payload


@dataclass(frozen=True)
class TickCursor:
    symbol: str
    seq: int
    recorded_at: dt.datetime


@dataclass(frozen=True)
class BarCursor:
    symbol: str
    start: dt.datetime


def tick_page_token(cursor: TickCursor, *, sort: Sort = "asc") -> str:
    """The token of the page that follows ``cursor`` (the previous page's last tick)."""
    return _sign(["t", sort, cursor.symbol, cursor.seq, _micros(cursor.recorded_at)])


def bar_page_token(cursor: BarCursor, *, timeframe: Timeframe, sort: Sort = "asc") -> str:
    return _sign([f"b{timeframe}", sort, cursor.symbol, _micros(cursor.start)])


def _tick_cursor(token: str | None, sort: Sort) -> TickCursor | None:
    if not token:
        return None
    payload = _unsign(token, "t", sort)
    try:
        _, _, symbol, seq, micros = payload
        if not isinstance(symbol, str) or type(seq) is not int or type(micros) is not int:
            raise ValueError
        return TickCursor(symbol, seq, _from_micros(micros))
    except (ValueError, OverflowError):
        raise InvalidRequest("invalid page_token") from None


def _bar_cursor(token: str | None, timeframe: Timeframe, sort: Sort) -> BarCursor | None:
    if not token:
        return None
    payload = _unsign(token, f"b{timeframe}", sort)
    try:
        _, _, symbol, micros = payload
        if not isinstance(symbol, str) or type(micros) is not int:
            raise ValueError
        return BarCursor(symbol, _from_micros(micros))
    except (ValueError, OverflowError):
        raise InvalidRequest("invalid page_token") from None


# --- The keyset reader ----------------------------------------------------------------------


def _after(fields: Sequence[str], values: Sequence[Any], descending: bool) -> Q:
    """Rows strictly after ``values`` in (fields) order, with a plain bound for the index seek."""
    op, op_eq = ("lt", "lte") if descending else ("gt", "gte")
    if len(fields) == 1:
        return Q(**{f"{fields[0]}__{op}": values[0]})
    first, second = fields
    return Q(**{f"{first}__{op_eq}": values[0]}) & (
        Q(**{f"{first}__{op}": values[0]}) | Q(**{first: values[0], f"{second}__{op}": values[1]})
    )


def rows_query(
    model: type[Model],
    *,
    fields: Sequence[str],
    symbols: Sequence[str],
    where: Q,
    key: Sequence[str],
    after: Sequence[Any] | None,
    descending: bool,
    count: int,
) -> QuerySet[Any, tuple[Any, ...]]:
    """One read of the keyset pager: ``count`` rows of ``symbols`` in (symbol, key) order.

    ``after`` (key values) applies to the single symbol of a cursor read. This is the exact
    query the selectors run, so tests can EXPLAIN it.
    """
    if len(symbols) == 1:
        condition = Q(symbol=symbols[0])
        order: list[str] = []
    else:
        condition = Q(symbol__in=list(symbols))
        order = ["symbol"]
    if after is not None:
        condition &= _after(key, after, descending)
    order += [f"-{name}" if descending else name for name in key]
    return model._default_manager.filter(condition & where).order_by(*order).values_list(*fields)[:count]


def _read(
    model: type[Model],
    *,
    fields: Sequence[str],
    symbols: Sequence[str],
    where: Q,
    key: Sequence[str],
    cursor: tuple[str, Sequence[Any]] | None,
    descending: bool,
    count: int,
) -> list[tuple[Any, ...]]:
    """Up to ``count`` rows after ``cursor`` = (symbol, key values), in page order."""
    rows: list[tuple[Any, ...]] = []
    following = list(symbols)
    if cursor is not None:
        cursor_symbol, after = cursor
        following = [symbol for symbol in symbols if symbol > cursor_symbol]
        if cursor_symbol in symbols:
            rows += rows_query(
                model,
                fields=fields,
                symbols=[cursor_symbol],
                where=where,
                key=key,
                after=after,
                descending=descending,
                count=count,
            )
    if len(rows) >= count or not following:
        return rows
    if not descending:
        # Ascending (symbol, key) is the index's own order, so one read covers every symbol.
        rows += rows_query(
            model,
            fields=fields,
            symbols=following,
            where=where,
            key=key,
            after=None,
            descending=False,
            count=count - len(rows),
        )
        return rows
    # Symbols ascending with keys descending is no index's order (the planners would sort each
    # symbol's whole history), so descending pages read symbol by symbol, each a backward seek.
    for symbol in following:
        rows += rows_query(
            model,
            fields=fields,
            symbols=[symbol],
            where=where,
            key=key,
            after=None,
            descending=True,
            count=count - len(rows),
        )
        if len(rows) >= count:
            break
    return rows


def _time_range(field: str, start: dt.datetime | None, end: dt.datetime | None) -> Q:
    where = Q()
    if start is not None:
        where &= Q(**{f"{field}__gte": start})
    if end is not None:
        where &= Q(**{f"{field}__lte": end})
    return where


def _check_range(start: dt.datetime | None, end: dt.datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidRequest("end should not be before start")


# --- Ticks (trades and quotes) --------------------------------------------------------------


def tick_order(*, ranged: bool) -> tuple[str, ...]:
    """The key ticks are read by: (recorded_at, seq) within a time range, else seq."""
    return ("recorded_at", "seq") if ranged else ("seq",)


def ticks_query(
    *,
    symbols: Sequence[str],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    after: TickCursor | None = None,
    sort: Sort = "asc",
    count: int,
) -> QuerySet[Any, tuple[Any, ...]]:
    """The query ``ticks_page`` runs for ``symbols`` (one symbol when ``after`` is given)."""
    key = tick_order(ranged=start is not None or end is not None)
    return rows_query(
        StockPriceHistory,
        fields=TICK_FIELDS,
        symbols=symbols,
        where=_time_range("recorded_at", start, end),
        key=key,
        after=None if after is None else _tick_key(after, key),
        descending=sort == "desc",
        count=count,
    )


def _tick_key(cursor: TickCursor, key: Sequence[str]) -> tuple[Any, ...]:
    return (cursor.recorded_at, cursor.seq) if len(key) == 2 else (cursor.seq,)


def ticks_page(
    *,
    symbols: Iterable[str],
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int | str | None = None,
    page_token: str | None = None,
    sort: str | None = "asc",
) -> PaginatedResult[Tick]:
    """A page of ticks, the source of both trade and quote history."""
    size = page_limit(limit)
    order = parse_sort(sort)
    _check_range(start, end)
    cursor = _tick_cursor(page_token, order)
    wanted = normalize_symbols(symbols)
    key = tick_order(ranged=start is not None or end is not None)
    rows = _read(
        StockPriceHistory,
        fields=TICK_FIELDS,
        symbols=wanted,
        where=_time_range("recorded_at", start, end),
        key=key,
        cursor=None if cursor is None else (cursor.symbol, _tick_key(cursor, key)),
        descending=order == "desc",
        count=size + 1,
    )
    items = list(map(Tick._make, rows[:size]))
    token = None
    if len(rows) > size:
        last = items[-1]
        token = tick_page_token(TickCursor(last.symbol, last.seq, last.recorded_at), sort=order)
    return PaginatedResult(items, token)


# --- Bars -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Buckets:
    """How a timeframe groups source bars: the bucket a moment falls in, and the next bucket."""

    floor: Callable[[dt.datetime], dt.datetime]
    following: Callable[[dt.datetime], dt.datetime]
    source_rows: int  # source bars per bucket, roughly: sizes the read chunks

    def ceil(self, moment: dt.datetime) -> dt.datetime:
        bucket = self.floor(moment)
        return bucket if bucket == moment else self.following(bucket)


def _fixed_buckets(seconds: int) -> _Buckets:
    width = seconds * 1_000_000

    def floor(moment: dt.datetime) -> dt.datetime:
        micros = _micros(moment)
        return _from_micros(micros - micros % width)

    return _Buckets(floor, lambda bucket: bucket + dt.timedelta(seconds=seconds), max(1, seconds // 60))


def _week_buckets() -> _Buckets:
    def floor(moment: dt.datetime) -> dt.datetime:
        day = calendar.trading_day_of(moment)
        return calendar.day_start(day - dt.timedelta(days=day.weekday()))

    def following(bucket: dt.datetime) -> dt.datetime:
        return calendar.day_start(calendar.trading_day_of(bucket) + dt.timedelta(days=7))

    return _Buckets(floor, following, 7)


def _month_buckets(months: int) -> _Buckets:
    def month_start(index: int) -> dt.datetime:
        return calendar.day_start(dt.date(index // 12, index % 12 + 1, 1))

    def index_of(moment: dt.datetime) -> int:
        day = calendar.trading_day_of(moment)
        return day.year * 12 + day.month - 1

    def floor(moment: dt.datetime) -> dt.datetime:
        index = index_of(moment)
        return month_start(index - index % months)

    return _Buckets(floor, lambda bucket: month_start(index_of(bucket) + months), 31 * months)


def _bar_source(timeframe: Timeframe) -> tuple[type[Model], _Buckets | None]:
    """The table a timeframe reads, and how its rows are grouped (None: served as stored)."""
    if timeframe.unit == "Min":
        return MinuteBar, None if timeframe.amount == 1 else _fixed_buckets(60 * timeframe.amount)
    if timeframe.unit == "Hour":
        return MinuteBar, _fixed_buckets(3600 * timeframe.amount)
    if timeframe.unit == "Day":
        return DailyBar, None
    if timeframe.unit == "Week":
        return DailyBar, _week_buckets()
    return DailyBar, _month_buckets(timeframe.amount)


def bars_page(
    *,
    symbols: Iterable[str],
    timeframe: Timeframe | str,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    limit: int | str | None = None,
    page_token: str | None = None,
    sort: str | None = "asc",
) -> PaginatedResult[Bar]:
    """A page of bars: 1Min and 1Day as stored, other widths aggregated into aligned buckets.

    An aggregated bar covers [bucket, next bucket) and is returned when its bucket start lies in
    [start, end]: open is the first minute's open, close the last one's close, high/low the
    extremes, volume and trade_count sums, vwap the volume-weighted mean of the minutes' vwaps.
    Minute buckets align to the UTC epoch; weeks (Monday) and months to trading-day starts.
    """
    frame = timeframe if isinstance(timeframe, Timeframe) else Timeframe.parse(timeframe)
    size = page_limit(limit)
    order = parse_sort(sort)
    _check_range(start, end)
    cursor = _bar_cursor(page_token, frame, order)
    wanted = normalize_symbols(symbols)
    model, buckets = _bar_source(frame)
    if buckets is None:
        rows = _read(
            model,
            fields=BAR_FIELDS,
            symbols=wanted,
            where=_time_range("start", start, end),
            key=("start",),
            cursor=None if cursor is None else (cursor.symbol, (cursor.start,)),
            descending=order == "desc",
            count=size + 1,
        )
        items = list(map(Bar._make, rows[:size]))
        more = len(rows) > size
    else:
        items, more = _aggregated(
            model,
            buckets,
            symbols=wanted,
            start=start,
            end=end,
            cursor=cursor,
            descending=order == "desc",
            size=size,
        )
    token = None
    if more:
        token = bar_page_token(BarCursor(items[-1].symbol, items[-1].start), timeframe=frame, sort=order)
    return PaginatedResult(items, token)


def _aggregated(
    model: type[Model],
    buckets: _Buckets,
    *,
    symbols: Sequence[str],
    start: dt.datetime | None,
    end: dt.datetime | None,
    cursor: BarCursor | None,
    descending: bool,
    size: int,
) -> tuple[list[Bar], bool]:
    """Up to ``size`` buckets after ``cursor``, and whether another bucket follows."""
    # Source rows of whole buckets whose start lies in [start, end].
    where = Q()
    if start is not None:
        where &= Q(start__gte=buckets.ceil(start))
    if end is not None:
        where &= Q(start__lt=buckets.following(buckets.floor(end)))
    # The cursor bucket is complete: resume at the next bucket (or, descending, the one before).
    after: tuple[str, Sequence[Any]] | None = None
    if cursor is not None:
        edge = cursor.start if descending else buckets.following(cursor.start) - _MICROSECOND
        after = (cursor.symbol, (edge,))
    chunk = min(max((size + 1) * buckets.source_rows, _CHUNK_MIN), _CHUNK_MAX)

    result: list[Bar] = []
    group: list[tuple[Any, ...]] = []
    group_key: tuple[str, dt.datetime] | None = None
    while True:
        rows = _read(
            model,
            fields=BAR_FIELDS,
            symbols=symbols,
            where=where,
            key=("start",),
            cursor=after,
            descending=descending,
            count=chunk,
        )
        for row in rows:
            row_key = (row[0], buckets.floor(row[1]))
            if row_key != group_key:
                if group_key is not None:
                    result.append(_combine(group_key, group))
                    if len(result) == size:
                        return result, True
                group_key, group = row_key, []
            group.append(row)
        if len(rows) < chunk:
            break
        after = (rows[-1][0], (rows[-1][1],))
    if group_key is not None:
        result.append(_combine(group_key, group))
    return result, False


def _combine(key: tuple[str, dt.datetime], rows: list[tuple[Any, ...]]) -> Bar:
    rows = sorted(rows, key=lambda row: row[1])
    volume = sum(row[6] for row in rows)
    if volume:
        vwap = round(Fraction(sum(row[8] * row[6] for row in rows), volume))
    else:
        vwap = round(Fraction(sum(row[8] for row in rows), len(rows)))
    return Bar(
        symbol=key[0],
        start=key[1],
        open_units=rows[0][2],
        high_units=max(row[3] for row in rows),
        low_units=min(row[4] for row in rows),
        close_units=rows[-1][5],
        volume=volume,
        trade_count=sum(row[7] for row in rows),
        vwap_units=vwap,
    )


# --- Latest values and snapshots ------------------------------------------------------------
# One query each whatever the number of symbols (none for ticks the market's Redis copy holds). Each is driven by the asset rows (one per
# symbol) with a correlated "newest row" subquery: a backward seek on (symbol, seq) or
# (symbol, start) per symbol. Driving it from the history table instead ("seq = (newest seq of
# this row's symbol)") evaluates the subquery for every stored row of those symbols.


def latest_ticks(*, symbols: Iterable[str]) -> dict[str, Tick]:
    """Each symbol's newest tick: its trade is the latest trade, and its quote (every tick carries
    the prevailing quote) the latest quote. The same source as fills and valuations
    (``trading.quotes.latest_quotes``): the market's latest quotes in Redis, written after each
    window's ticks are committed, so they are the newest stored ticks; the database for any symbol
    Redis lacks (no market running). No statement at all while the market runs."""
    wanted = normalize_symbols(symbols)
    if not wanted:
        return {}
    found = latest_quotes(symbols=wanted)
    return {
        symbol: Tick(
            symbol,
            quote.seq,
            quote.price,
            quote.size,
            quote.bid,
            quote.bid_size,
            quote.ask,
            quote.ask_size,
            quote.at,
        )
        for symbol, quote in sorted(found.items())
    }


def latest_bars(*, symbols: Iterable[str]) -> dict[str, Bar]:
    """Each symbol's newest minute bar, as Alpaca's latest bar is."""
    wanted = normalize_symbols(symbols)
    if not wanted:
        return {}
    newest = newest_per_symbol(MinuteBar, symbols=wanted, order_key="start")
    rows = MinuteBar.objects.filter(pk__in=newest).values_list(*BAR_FIELDS)
    return {bar.symbol: bar for bar in sorted(map(Bar._make, rows), key=lambda b: b.symbol)}


@functools.cache
def _snapshot_bars_sql(vendor: str, symbols: int) -> str:
    """Each symbol's newest minute bar and its two newest daily bars, one statement: each newest
    row found from the asset table by one backward seek down (symbol, start), as
    ``newest_per_symbol`` does. A minute bar's start is integer microseconds and a daily bar's a
    timestamp, so each has its own column."""
    qn = connection.ops.quote_name
    asset, minute, daily = (qn(model._meta.db_table) for model in (Asset, MinuteBar, DailyBar))
    start = qn("start")
    values = "open_units, {t}.high_units, {t}.low_units, {t}.close_units, {t}.volume, {t}.trade_count, {t}.vwap_units"
    listed = ", ".join(["%s"] * symbols)

    def newest(table: str, skip: int) -> str:
        offset = f" OFFSET {skip}" if skip else ""
        return (
            f"(SELECT (SELECT x.id FROM {table} x WHERE x.symbol = a.symbol ORDER BY x.{start} DESC "
            f"LIMIT 1{offset}) FROM {asset} a WHERE a.symbol IN ({listed}))"
        )

    return (
        f"SELECT 'm', m.symbol, m.{start}, NULL, m.{values.format(t='m')} FROM {minute} m "
        f"WHERE m.id IN {newest(minute, 0)} UNION ALL "
        f"SELECT 'd', d.symbol, NULL, d.{start}, d.{values.format(t='d')} FROM {daily} d "
        f"WHERE d.id IN {newest(daily, 0)} OR d.id IN {newest(daily, 1)}"
    )


def _snapshot_bars(symbols: list[str]) -> tuple[dict[str, Bar], dict[str, list[Bar]]]:
    # The ORM's two queries cost more to compile than to run (a snapshot is polled).
    convert_day = getattr(connection.ops, "convert_datetimefield_value", None)  # SQLite: text
    minute: dict[str, Bar] = {}
    daily: dict[str, list[Bar]] = {}
    # Prepared on PostgreSQL (read_rows): a polled read, its text the same for a symbol count.
    rows = read_rows(connection, _snapshot_bars_sql(connection.vendor, len(symbols)), symbols * 3)
    for kind, symbol, micros, day, *rest in rows:
        if kind == "m":
            minute[symbol] = Bar(symbol, datetime_from_micros(int(micros)), *rest)
        else:
            at = convert_day(day, None, connection) if convert_day is not None else day
            daily.setdefault(symbol, []).append(Bar(symbol, at, *rest))
    return minute, daily


def snapshots(*, symbols: Iterable[str]) -> dict[str, Snapshot]:
    """Latest tick, minute bar, daily bar and previous daily bar per symbol: the tick from the
    market's Redis copy (``latest_ticks``), the bars in one statement."""
    wanted = normalize_symbols(symbols)
    if not wanted:
        return {}
    ticks = latest_ticks(symbols=wanted)
    minute, daily = _snapshot_bars(wanted)
    result: dict[str, Snapshot] = {}
    for symbol in wanted:
        days = sorted(daily.get(symbol, []), key=lambda bar: bar.start, reverse=True)
        snapshot = Snapshot(
            symbol=symbol,
            latest_tick=ticks.get(symbol),
            minute_bar=minute.get(symbol),
            daily_bar=days[0] if days else None,
            prev_daily_bar=days[1] if len(days) > 1 else None,
        )
        if snapshot.latest_tick or snapshot.minute_bar or snapshot.daily_bar:
            result[symbol] = snapshot
    return result
