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
from django.db.models import Model, OuterRef, QuerySet, Subquery
from redis.typing import EncodableT, FieldT

from config.redis_pools import redis_client
from trading.matching import Quote
from trading.models import Asset, StockPriceHistory

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
        return Quote(bid=self.bid, ask=self.ask, last=self.price)

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
    model: type[Model], *, symbols: Iterable[str], order_key: str, skip: int = 0, **filters: object
) -> QuerySet[Any, Any]:
    """The pk of each symbol's newest ``model`` row (by ``order_key``), as a subquery.

    Driven from Asset, one row per symbol, so the correlated lookup runs once per symbol and
    seeks the (symbol, key) index; filtering the history table by a correlated subquery
    instead would evaluate it for every stored row of those symbols.
    """
    newest = model._default_manager.filter(symbol=OuterRef("symbol"), **filters).order_by(f"-{order_key}")
    return (
        Asset.objects.filter(symbol__in=sorted(set(symbols)))
        .order_by()
        .annotate(row=Subquery(newest.values("pk")[skip : skip + 1]))
        .values("row")
    )


def latest_ticks_from_db(*, symbols: Iterable[str]) -> dict[str, LatestQuote]:
    """The newest stored tick of each symbol, one query whatever the number of symbols."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    rows = StockPriceHistory.objects.filter(
        pk__in=newest_per_symbol(StockPriceHistory, symbols=wanted, order_key="seq")
    )
    return {tick.symbol: LatestQuote.from_tick(tick) for tick in rows}


def latest_quotes(*, symbols: Iterable[str]) -> dict[str, LatestQuote]:
    """Latest quotes from Redis, with the database filling in whatever Redis lacks or if it is down."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    found: dict[str, LatestQuote] = {}
    try:
        raw = redis_client().hmget(settings.LATEST_QUOTES_KEY, wanted)
    except redis.RedisError:
        logger.warning("latest quotes: Redis unavailable, reading the database")
        raw = [None] * len(wanted)
    for symbol, value in zip(wanted, raw, strict=True):
        if value is not None:
            found[symbol] = LatestQuote.from_json(value)
    missing = [symbol for symbol in wanted if symbol not in found]
    if missing:
        found.update(latest_ticks_from_db(symbols=missing))
    return found


def latest_quotes_store(*, quotes: Iterable[LatestQuote]) -> None:
    """Publish the latest quotes for web processes (the market calls this after each commit)."""
    mapping: dict[FieldT, EncodableT] = {quote.symbol: quote.as_json() for quote in quotes}
    if mapping:
        redis_client().hset(settings.LATEST_QUOTES_KEY, mapping=mapping)
