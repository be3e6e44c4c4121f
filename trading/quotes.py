"""The latest quote per symbol: Redis first (written by the market after each committed window),
then the newest stored tick, in one query for any number of symbols (no query per symbol)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db.models import BooleanField, F, Func, Model, OuterRef, Q, QuerySet, Subquery
from redis.typing import EncodableT, FieldT

from config.redis_pools import PinnedConnection, redis_client, resp_pack
from trading.matching import Quote
from trading.models import Asset, StockPriceHistory
from trading.units import QTY_SCALE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LatestQuote:
    symbol: str
    seq: int
    price: int
    size: int
    bid: int
    bid_size: int
    ask: int
    ask_size: int
    at: dt.datetime

    def as_quote(self) -> Quote:
        return Quote(
            bid=self.bid,
            ask=self.ask,
            last=self.price,
            bid_size=self.bid_size * QTY_SCALE,
            ask_size=self.ask_size * QTY_SCALE,
        )

    def as_json(self) -> str:
        return json.dumps({**self.__dict__, "at": self.at.isoformat()})

    @classmethod
    def from_json(cls, raw: bytes | str) -> LatestQuote:
        data = json.loads(raw)
        data["at"] = dt.datetime.fromisoformat(data["at"])
        return cls(**data)

    @classmethod
    def from_tick(cls, tick: StockPriceHistory) -> LatestQuote:
        return cls(
            symbol=tick.symbol,
            seq=tick.seq,
            price=tick.price_units,
            size=tick.size,
            bid=tick.bid_units,
            bid_size=tick.bid_size,
            ask=tick.ask_units,
            ask_size=tick.ask_size,
            at=tick.recorded_at,
        )


def newest_per_symbol(
    model: type[Model],
    *,
    symbols: Iterable[str],
    order_key: str,
    then_by: str | None = None,
    skip: int = 0,
    **filters: object,
) -> QuerySet[Any, Any]:
    """The pk of each symbol's newest ``model`` row (by ``order_key``, rows equal on it by
    ``then_by``, so the pick never depends on the plan), as a subquery: for
    ``pk__in`` on a table with a one-column key, for ``newest_rows`` on one keyed by (symbol, x)
    (ticks: (symbol, seq)), where it gives (symbol, x) pairs.

    Driven from Asset, one row per symbol, so the correlated lookup runs once per symbol and
    seeks the (symbol, key) index; filtering the history table by a correlated subquery
    instead would evaluate it for every stored row of those symbols.
    """
    ordering = [f"-{order_key}", *([f"-{then_by}"] if then_by else [])]
    newest = model._default_manager.filter(symbol=OuterRef("symbol"), **filters).order_by(*ordering)
    key = [field.name for field in model._meta.pk_fields]
    columns: tuple[str, ...]
    if key[0] == "symbol" and len(key) == 2:
        picked, columns = key[1], ("symbol", "row")
    elif len(key) == 1:
        picked, columns = "pk", ("row",)
    else:
        raise ValueError(f"{model.__name__}: a primary key of {key} is not one row per symbol and key")
    return (
        Asset.objects.filter(symbol__in=sorted(set(symbols)))
        .order_by()
        .annotate(row=Subquery(newest.values(picked)[skip : skip + 1]))
        .values(*columns)
    )


class KeyIn(Func):
    """``(a, b) IN (SELECT x, y ...)`` with SQL row values, which SQLite (3.15 and later) and
    PostgreSQL both run as key seeks. Django 5.2 writes a composite ``pk__in`` subquery on SQLite
    as a correlated EXISTS instead, which reads the whole table."""

    conditional = True
    output_field = BooleanField()

    def as_sql(self, compiler: Any, connection: Any, **extra_context: Any) -> tuple[str, tuple[Any, ...]]:  # type: ignore[override]
        *columns, rows = self.get_source_expressions()
        sql, params = [], []
        for column in columns:
            column_sql, column_params = compiler.compile(column)
            sql.append(column_sql)
            params.extend(column_params)
        rows_sql, rows_params = compiler.compile(rows)
        return f"({', '.join(sql)}) IN {rows_sql}", (*params, *rows_params)


def newest_rows(model: type[Model], *, symbols: Iterable[str], order_key: str) -> Q | KeyIn:
    """A condition selecting each symbol's newest ``model`` row (by ``order_key``), for ``filter``:
    one seek per symbol down its key, whatever the table's key (``newest_per_symbol``)."""
    newest = newest_per_symbol(model, symbols=symbols, order_key=order_key)
    if not model._meta.is_composite_pk:
        return Q(pk__in=newest)
    return KeyIn(*(F(field.name) for field in model._meta.pk_fields), Subquery(newest))


def latest_ticks_from_db(*, symbols: Iterable[str]) -> dict[str, LatestQuote]:
    """The newest stored tick of each symbol, one query whatever the number of symbols."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    rows = StockPriceHistory.objects.filter(newest_rows(StockPriceHistory, symbols=wanted, order_key="seq"))
    return {tick.symbol: LatestQuote.from_tick(tick) for tick in rows}


def prices_at(*, symbols: Iterable[str], at: dt.datetime) -> dict[str, int]:
    """Each symbol's last trade price at or before ``at`` (price units), from its newest stored
    tick by time, of ticks stored at the same moment the one numbered last: one query, a seek per
    symbol down (symbol, recorded_at). A symbol with no tick by then (or none kept) is absent."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    newest = newest_per_symbol(
        StockPriceHistory, symbols=wanted, order_key="recorded_at", then_by="seq", recorded_at__lte=at
    )
    rows = StockPriceHistory.objects.filter(
        KeyIn(*(F(field.name) for field in StockPriceHistory._meta.pk_fields), Subquery(newest))
    )
    return dict(rows.values_list("symbol", "price_units"))


_QUOTES_CONNECTION = PinnedConnection()
# Each symbol's last quote read and what it was parsed from: the market rewrites a quote a few
# times a second at most, and the reads that poll it are many more, so most reads find the same
# bytes and skip the JSON and the timestamp parsing. One entry per listed symbol at most.
_parsed_quotes: dict[str, tuple[bytes, LatestQuote]] = {}


def _parsed(symbol: str, raw: bytes) -> LatestQuote:
    known = _parsed_quotes.get(symbol)
    if known is not None and known[0] == raw:
        return known[1]
    quote = LatestQuote.from_json(raw)
    if quote.symbol == symbol:
        _parsed_quotes[symbol] = (raw, quote)
    return quote


def latest_quotes(*, symbols: Iterable[str]) -> dict[str, LatestQuote]:
    """Latest quotes from Redis, with the database filling in whatever Redis lacks or if it is down."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    found: dict[str, LatestQuote] = {}
    try:
        client = redis_client()
        # Every polled read of an account, a position or a quote asks: on the process's own
        # connection when free (config/redis_pools.py, PinnedConnection), else through the pool.
        raw = _QUOTES_CONNECTION.exchange(client, resp_pack("HMGET", settings.LATEST_QUOTES_KEY, *wanted))
        if raw is None:
            raw = client.hmget(settings.LATEST_QUOTES_KEY, wanted)
    except redis.RedisError:
        logger.warning("latest quotes: Redis unavailable, reading the database")
        raw = [None] * len(wanted)
    for symbol, value in zip(wanted, raw, strict=True):
        if value is not None:
            found[symbol] = _parsed(symbol, value)
    missing = [symbol for symbol in wanted if symbol not in found]
    if missing:
        found.update(latest_ticks_from_db(symbols=missing))
    return found


def latest_quotes_store(*, quotes: Iterable[LatestQuote]) -> None:
    """Publish the latest quotes for web processes (the market calls this after each commit).

    The hash has no expiry: each entry copies its symbol's newest stored tick, which retention
    never deletes (``keep_newest`` in trading/apps.py), so a market stopped or closed for a weekend
    still prices orders at its last quote; ``flush`` and ``migrate`` drop the hash
    (``latest_quotes_forget``).
    """
    mapping: dict[FieldT, EncodableT] = {quote.symbol: quote.as_json() for quote in quotes}
    if mapping:
        redis_client().hset(settings.LATEST_QUOTES_KEY, mapping=mapping)


def latest_quotes_forget() -> None:
    """Drop every published quote. After the database is flushed or migrated the hash may name
    ticks it no longer holds; until the market writes again, reads take the stored ticks."""
    try:
        redis_client().delete(settings.LATEST_QUOTES_KEY)
    except redis.RedisError:
        # Redis down: it may still hold the old hash, which the market's next writes overwrite
        # symbol by symbol.
        logger.warning("latest quotes: Redis unavailable, the published quotes were not dropped")
