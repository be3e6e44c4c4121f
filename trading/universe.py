"""The asset universe: the S&P 500 as shipped offline by pytickersymbols.

Each constituent becomes a ``UniverseAsset`` with a clean GICS sector, a venue from Alpaca's
enum (alpaca-py rejects any other value) and a plausible starting price. The price depends only
on the symbol, so every install agrees on it and a symbol keeps its price when the universe grows.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from trading.models import Exchange
from trading.units import UNITS_PER_CENT

INDEX_NAME = "S&P 500"

# Alpaca equity symbols: 1-5 capitals, optionally a share class after a dot (BRK.B, BF.B).
SYMBOL_PATTERN = re.compile(r"[A-Z]{1,5}(\.[A-Z]{1,2})?")

# The eleven GICS sectors, in the order that settles a constituent listed under more than one:
# the data tags some companies with a second, looser sector (utilities as "Energy", REITs as
# "Financials", Moody's and MSCI as "Industrials"), and the more specific one wins.
GICS_SECTORS = (
    "Real Estate",
    "Health Care",
    "Utilities",
    "Communication Services",
    "Information Technology",
    "Consumer Staples",
    "Consumer Discretionary",
    "Financials",
    "Materials",
    "Industrials",
    "Energy",
)
# Looser names the data uses elsewhere; only consulted when no exact GICS name is present.
SECTOR_ALIASES: Mapping[str, str] = {
    "technology": "Information Technology",
    "information technology": "Information Technology",
    "software": "Information Technology",
    "semiconductors": "Information Technology",
    "healthcare": "Health Care",
    "health care": "Health Care",
    "pharmaceuticals": "Health Care",
    "biotechnology": "Health Care",
    "financial services": "Financials",
    "banking": "Financials",
    "banks": "Financials",
    "insurance": "Financials",
    "real estate": "Real Estate",
    "real estate investment trust": "Real Estate",
    "basic materials": "Materials",
    "chemicals": "Materials",
    "consumer cyclicals": "Consumer Discretionary",
    "retail": "Consumer Discretionary",
    "consumer non-cyclicals": "Consumer Staples",
    "telecommunications": "Communication Services",
    "media": "Communication Services",
    "oil & gas": "Energy",
    "oil and gas": "Energy",
    "electric utilities": "Utilities",
    "industrial goods": "Industrials",
    "transportation": "Industrials",
}
FALLBACK_SECTOR = "Industrials"

# Well-known names first, so a small demo (--symbols 20) still shows the tickers people type.
FEATURED = (
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "BRK.B", "JPM", "V",
    "UNH", "XOM", "JNJ", "WMT", "PG", "MA", "HD", "KO", "NFLX", "DIS",
)  # fmt: skip

# Starting prices: lognormal around $100, clamped to a range real large caps trade in.
PRICE_MEDIAN_DOLLARS = 100.0
PRICE_LOG_SIGMA = 0.75
PRICE_MIN_DOLLARS = 10.0
PRICE_MAX_DOLLARS = 900.0


@dataclass(frozen=True)
class UniverseAsset:
    symbol: str
    name: str
    sector: str
    exchange: str
    initial_price_units: int


def stable_seed(*parts: object) -> int:
    """A seed from any values that is the same in every process (``hash()`` is salted per run)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def starting_price_units(symbol: str) -> int:
    """A plausible, deterministic price for ``symbol`` in 1/10,000 $, on a whole cent."""
    rng = random.Random(stable_seed("starting-price", symbol))
    # Redrawn rather than clamped, so no pile of symbols sits exactly at either bound.
    for _ in range(100):
        dollars = math.exp(rng.gauss(math.log(PRICE_MEDIAN_DOLLARS), PRICE_LOG_SIGMA))
        if PRICE_MIN_DOLLARS <= dollars <= PRICE_MAX_DOLLARS:
            break
    dollars = min(max(dollars, PRICE_MIN_DOLLARS), PRICE_MAX_DOLLARS)
    return round(dollars * 100) * UNITS_PER_CENT


def sector_of(industries: Iterable[str]) -> str:
    tags = [tag.strip() for tag in industries if tag]
    exact = set(tags)
    for sector in GICS_SECTORS:
        if sector in exact:
            return sector
    for tag in tags:
        alias = SECTOR_ALIASES.get(tag.lower())
        if alias:
            return alias
    return FALLBACK_SECTOR


_TRADED_AS = re.compile(r"\b(NYSE|Nasdaq|NASDAQ)\s*:\s*([A-Z.]+)")


def exchange_of(raw: Mapping[str, Any], symbol: str) -> str:
    """NYSE or NASDAQ from the Google listing (``NASDAQ:AAPL``), else the 'traded as' note."""
    venues = {Exchange.NYSE.value, Exchange.NASDAQ.value}
    for listing in raw.get("symbols") or ():
        venue, _, ticker = str(listing.get("google") or "").partition(":")
        if ticker == symbol and venue in venues:
            return venue
    traded_as = str((raw.get("metadata") or {}).get("traded_as") or "")
    found = _TRADED_AS.findall(traded_as)
    for venue, ticker in found:
        if ticker == symbol:
            return venue.upper()
    if found:
        return found[0][0].upper()
    return Exchange.NYSE.value


def assets_from_records(records: Iterable[Mapping[str, Any]]) -> list[UniverseAsset]:
    """Constituent records as pytickersymbols gives them to assets: deduplicated, valid symbols."""
    assets: dict[str, UniverseAsset] = {}
    for raw in records:
        symbol = str(raw.get("symbol") or "").strip().upper()
        if symbol in assets or not SYMBOL_PATTERN.fullmatch(symbol):
            continue
        name = " ".join(str(raw.get("name") or symbol).split())[:200]
        assets[symbol] = UniverseAsset(
            symbol=symbol,
            name=name,
            sector=sector_of(raw.get("industries") or ()),
            exchange=exchange_of(raw, symbol),
            initial_price_units=starting_price_units(symbol),
        )
    return _featured_first(assets)


def _featured_first(assets: Mapping[str, UniverseAsset]) -> list[UniverseAsset]:
    featured = [assets[symbol] for symbol in FEATURED if symbol in assets]
    rest = sorted(
        (asset for asset in assets.values() if asset.symbol not in FEATURED), key=lambda a: a.symbol
    )
    return featured + rest


@cache
def sp500() -> tuple[UniverseAsset, ...]:
    """The S&P 500, well-known names first, then alphabetical (about 500 assets)."""
    from pytickersymbols import PyTickerSymbols

    return tuple(assets_from_records(PyTickerSymbols().get_stocks_by_index(INDEX_NAME)))
