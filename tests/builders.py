"""Builders of test data: rows made through the models and services, and logged-in clients.

Fixtures stay in tests/conftest.py; these are plain functions any test or fixture imports.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from trading import services
from trading.models import Account, Asset, DailyBar, Game, MinuteBar, StockPriceHistory
from trading.units import price_to_units, qty_to_units


def list_symbols(*symbols: str) -> None:
    """Listed assets (active, tradable) without prices: the symbols a stream may subscribe to.
    Symbols already listed are left as they are."""
    Asset.objects.bulk_create(
        [Asset(symbol=symbol, name=f"{symbol} Inc.", sector="Technology") for symbol in symbols],
        ignore_conflicts=True,
    )


def tick_row(
    symbol: str,
    *,
    seq: int,
    price_units: int,
    at: dt.datetime,
    spread_units: int = 100,
    bid_size: int = 300,
    ask_size: int = 400,
) -> StockPriceHistory:
    """A tick, not stored: trade at ``price_units`` (100 shares), bid/ask ``spread_units`` either
    side, with ``bid_size`` and ``ask_size`` shares at them (what one execution may take)."""
    return StockPriceHistory(
        symbol=symbol,
        seq=seq,
        price_units=price_units,
        size=100,
        bid_units=price_units - spread_units,
        bid_size=bid_size,
        ask_units=price_units + spread_units,
        ask_size=ask_size,
        recorded_at=at,
    )


def add_tick(
    symbol: str,
    *,
    price_units: int,
    spread_units: int = 100,
    at: dt.datetime | None = None,
    bid_size: int = 300,
    ask_size: int = 400,
) -> StockPriceHistory:
    """Store the symbol's next tick (``tick_row``), at ``at`` or now."""
    last = (
        StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").values_list("seq", flat=True).first()
    )
    tick = tick_row(
        symbol,
        seq=(last or 0) + 1,
        price_units=price_units,
        at=at or timezone.now(),
        spread_units=spread_units,
        bid_size=bid_size,
        ask_size=ask_size,
    )
    tick.save(force_insert=True)  # as objects.create saves: one INSERT
    return tick


def set_quote(
    symbol: str,
    *,
    price: str,
    spread_units: int = 100,
    at: dt.datetime | None = None,
    bid_size: int = 300,
    ask_size: int = 400,
) -> StockPriceHistory:
    """Store a tick at a dollar ``price`` ("190.00"), exactly converted to price units."""
    return add_tick(
        symbol,
        price_units=price_to_units(price),
        spread_units=spread_units,
        at=at,
        bid_size=bid_size,
        ask_size=ask_size,
    )


def add_minute_bar_ramps(bases: Mapping[str, int], *, start: dt.datetime, minutes: int) -> None:
    """Minute bars rising one cent a minute from each symbol's base (price units), from ``start``."""
    MinuteBar.objects.bulk_create(
        MinuteBar(
            symbol=symbol,
            start=start + dt.timedelta(minutes=i),
            open_units=base + i * 100,
            high_units=base + i * 100 + 500,
            low_units=base + i * 100 - 500,
            close_units=base + i * 100 + 200,
            volume=1000 + i,
            trade_count=10 + i,
            vwap_units=base + i * 100 + 50,
        )
        for symbol, base in bases.items()
        for i in range(minutes)
    )


def session_cookie(user_id: int) -> tuple[Client, str]:
    """A test client logged in as the user, and its session as a Cookie header value."""
    client = Client()
    client.force_login(get_user_model().objects.get(pk=user_id))
    return client, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


Bar = TypeVar("Bar", MinuteBar, DailyBar)


def flat_bar(model: type[Bar], symbol: str, start: dt.datetime) -> Bar:
    """A bar whose every price and count is 1, for tests about which rows exist or are read."""
    return model(
        symbol=symbol,
        start=start,
        open_units=1,
        high_units=1,
        low_units=1,
        close_units=1,
        volume=1,
        trade_count=1,
        vwap_units=1,
    )


def add_flat_minute_bars(symbols: Iterable[str], *, start: dt.datetime, minutes: int) -> None:
    """``flat_bar`` minute bars for each symbol, ``minutes`` of them from ``start``."""
    MinuteBar.objects.bulk_create(
        (
            flat_bar(MinuteBar, symbol, start + dt.timedelta(minutes=i))
            for symbol in symbols
            for i in range(minutes)
        ),
        batch_size=5000,
    )


def shares(count: int | str | Decimal) -> int:
    """Shares (whole or up to 9 decimals: 10, "0.5") in quantity units, as services and rows
    take quantities (trading/units.py)."""
    return qty_to_units(str(count), field="shares")


def class_game(*, organiser: User, start: dt.datetime) -> Game:
    """A five-day game with $10,000 each, created by ``organiser`` an hour before ``start``: the
    game the read tests join players to."""
    return services.game_create(
        organiser=organiser,
        rules=services.GameRules(
            name="Class", starts_at=start, ends_at=start + dt.timedelta(days=5), starting_cash_cents=1_000_000
        ),
        now=start - dt.timedelta(hours=1),
    )


def market_trade(account: Account, symbol: str, qty: int, *, side: str = "buy", now: dt.datetime) -> None:
    """A market order of ``qty`` whole shares placed at ``now``, which must fill."""
    order = services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol=symbol, qty=shares(qty), side=side, type="market", time_in_force="day"
        ),
        now=now,
    )
    assert order.status == "filled", order.status
