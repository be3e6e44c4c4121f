"""The dashboard's first load in one answer (``GET /v2/dashboard/bootstrap``, docs/dashboard.md).

The page makes at most three calls to ``/v2/`` on its first load (Property 19, docs/properties.md),
so everything it shows comes from here, built from the same selectors and shapes as the Alpaca
endpoints (the ``account``, ``positions``, ``orders`` and ``fills`` parts are byte for byte what
those endpoints answer) plus our own market table.

The market table is every active asset with its latest prices, today's volume and a sparkline, read
in a fixed number of queries whatever the number of assets: the assets, the latest quotes (Redis,
one query for whatever Redis lacks), the previous closes, today's daily bars, and the recent minute
bars of all symbols in one range read. It is the same for every user, so it is cached briefly
(``CACHE_TTLS["dashboard_assets"]``); the page follows prices over the stream from then on.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import defaultdict
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse
from django.utils import timezone
from rest_framework.request import Request

from analytics.models import AccountAnalytics
from analytics.selectors import (
    account_analytics_get_or_compute,
    game_leaderboard_get_or_refresh,
    leaderboard_get_or_refresh,
)
from analytics.serializers import StatementSerializer
from analytics.statements import statements_list
from config.cache import cache_manager
from trading import calendar, selectors, services
from trading.api.serializers import AccountSerializer, OrderSerializer, PositionSerializer, activity_shape
from trading.errors import InvalidRequest, NotFound
from trading.models import Account, Asset, DailyBar, MinuteBar, Watchlist
from trading.public_urls import stream_urls
from trading.quotes import latest_quotes, newest_per_symbol
from trading.units import PRICE_SCALE, units_to_float

DASHBOARD_WATCHLIST = "Dashboard"
RECENT_ORDERS = 50
RECENT_FILLS = 50
SPARK_POINTS = 30
ASSETS_CACHE_KEY = "dashboard:assets"


# --- The market table ---------------------------------------------------------------------------


def _spark_closes(symbols: set[str]) -> dict[str, list[float]]:
    """Up to SPARK_POINTS one-minute closes per symbol, oldest first: the bars of the last
    SPARK_POINTS minutes up to the newest stored bar. One query for that bar (a seek per symbol
    down the (symbol, start) index; minute bars have no index on time alone), then one range read
    per symbol on the same index, so the cost is the bars returned, never the history kept."""
    wanted = sorted(symbols)
    newest = (
        MinuteBar.objects.filter(pk__in=newest_per_symbol(MinuteBar, symbols=wanted, order_key="start"))
        .order_by("-start")
        .values_list("start", flat=True)
        .first()
    )
    if newest is None:
        return {}
    since = newest - dt.timedelta(minutes=SPARK_POINTS)
    rows = (
        MinuteBar.objects.filter(symbol__in=wanted, start__gt=since, start__lte=newest)
        .order_by("symbol", "start")
        .values_list("symbol", "close_units")
    )
    closes: dict[str, list[float]] = defaultdict(list)
    for symbol, close in rows:
        if symbol in symbols:
            closes[symbol].append(close / PRICE_SCALE)
    # Bars not on minute boundaries (hand-made ones) could exceed the count; keep the newest.
    return {symbol: points[-SPARK_POINTS:] for symbol, points in closes.items()}


def dashboard_assets_load(*, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every active asset sorted by symbol with last, prev_close, bid, ask (dollars, null before
    the first tick), today's volume and its sparkline, in at most six queries."""
    now = now or timezone.now()
    assets = list(
        Asset.objects.filter(active=True)
        .order_by("symbol")
        .values_list("symbol", "name", "exchange", "sector", "tradable", "halted")
    )
    symbols = {row[0] for row in assets}
    if not symbols:
        return []
    quotes = latest_quotes(symbols=symbols)
    day_start = selectors.day_boundary(now)
    closes = selectors.previous_closes(symbols=symbols, before=day_start)
    volumes = dict(
        DailyBar.objects.filter(symbol__in=sorted(symbols), start__gte=day_start)
        .order_by("start")
        .values_list("symbol", "volume")
    )
    sparks = _spark_closes(symbols)
    table = []
    for symbol, name, exchange, sector, tradable, halted in assets:
        quote = quotes.get(symbol)
        table.append(
            {
                "symbol": symbol,
                "name": name,
                "exchange": exchange,
                "sector": sector,
                "tradable": tradable,
                "halted": halted,
                "last": units_to_float(quote.price) if quote else None,
                "prev_close": units_to_float(closes.get(symbol)),
                "bid": units_to_float(quote.bid) if quote else None,
                "ask": units_to_float(quote.ask) if quote else None,
                "volume": volumes.get(symbol, 0),
                "spark": sparks.get(symbol, []),
            }
        )
    return table


def dashboard_assets_cached(*, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The market table through the cache layers (shared by every user, briefly)."""
    return cache_manager().cached(
        ASSETS_CACHE_KEY, "dashboard_assets", lambda: dashboard_assets_load(now=now)
    )


# --- Per account ----------------------------------------------------------------------------------


def dashboard_watchlist_get_or_create(*, account: Account) -> Watchlist:
    """The account's "Dashboard" watchlist, created empty the first time it is asked for."""
    try:
        return selectors.watchlist_get_by_name(account_id=account.pk, name=DASHBOARD_WATCHLIST)
    except NotFound:
        pass
    # InvalidRequest: a concurrent first load created it; read that one.
    with contextlib.suppress(InvalidRequest):
        services.watchlist_create(account_id=account.pk, name=DASHBOARD_WATCHLIST, symbols=[])
    return selectors.watchlist_get_by_name(account_id=account.pk, name=DASHBOARD_WATCHLIST)


def _analytics_or_none(account: Account) -> dict[str, Any] | None:
    # The endpoint computes analytics on demand; the first load does not wait for that and shows
    # them once the periodic job has run.
    if not AccountAnalytics.objects.filter(account_id=account.pk).exists():
        return None
    return account_analytics_get_or_compute(account=account)


def _next_day_start(now: dt.datetime) -> dt.datetime:
    # prev_close, volume and last_equity roll over where selectors.day_boundary puts the next
    # trading day's start; a page open across that instant re-fetches the bootstrap then.
    return calendar.day_start(calendar.trading_day_of(now) + dt.timedelta(days=1))


def _leaderboard_and_game(
    *, account: Account, username: str, now: dt.datetime
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    # A game account is not on the global board (it holds default accounts only): its player
    # follows the game's board instead, which the page then polls at its own endpoint.
    game = selectors.game_rules_for_account(account_id=account.pk)
    limit = settings.DASHBOARD_LEADERBOARD_LIMIT
    if game is None:
        return leaderboard_get_or_refresh(period="overall", limit=limit, now=now), None
    url = reverse("game-leaderboard", kwargs={"game_id": str(game.pk)})
    board = game_leaderboard_get_or_refresh(game=game, limit=limit, username=username, now=now)
    return board, {
        "id": str(game.pk),
        "name": game.name,
        "leaderboard_url": f"{url}?limit={limit}",
    }


def dashboard_bootstrap_build(
    *,
    user: AbstractBaseUser | AnonymousUser,
    account: Account,
    request: Request,
    now: dt.datetime | None = None,
    summary: selectors.AccountSummary | None = None,
) -> dict[str, Any]:
    """Everything the dashboard shows on its first load; ``request`` gives the addresses the
    answer contains (statement downloads, streams) as the client reached this server.
    ``summary``: the account's, read as of ``now`` with its row (the view's
    ``request_account_read``); read here from ``account`` when not given.

    Not a pure read: it creates the "Dashboard" watchlist on first use and refreshes a stale
    leaderboard, as the endpoints it stands for would (and fills their caches)."""
    now = now or timezone.now()
    if summary is None:
        summary = selectors.account_summary(account=account, now=now)
    open_orders = selectors.orders_list(
        account_id=account.pk, status="open", limit=selectors.ORDERS_LIMIT_MAX
    )
    recent_orders = selectors.orders_list(account_id=account.pk, status="all", limit=RECENT_ORDERS)
    fills = selectors.account_activities(
        account_id=account.pk, activity_types=[selectors.FILL_ACTIVITY], page_size=RECENT_FILLS
    )
    watchlist = dashboard_watchlist_get_or_create(account=account)
    leaderboard, game = _leaderboard_and_game(account=account, username=user.get_username(), now=now)
    return {
        "as_of": now.astimezone(dt.UTC).isoformat(),
        "user": {"username": user.get_username(), "is_staff": bool(getattr(user, "is_staff", False))},
        "account": AccountSerializer.shape(summary),
        "positions": [PositionSerializer.shape(position) for position in summary.positions],
        "orders": {
            "open": [OrderSerializer.shape(order) for order in open_orders],
            "recent": [OrderSerializer.shape(order) for order in recent_orders],
        },
        "fills": [activity_shape(activity) for activity in fills],
        "assets": dashboard_assets_cached(now=now),
        "watchlist": {
            "id": str(watchlist.pk),
            "name": watchlist.name,
            "symbols": [entry.asset.symbol for entry in watchlist.entries.all()],
        },
        "leaderboard": leaderboard,
        "game": game,
        "analytics": _analytics_or_none(account),
        "statements": [
            StatementSerializer.shape(statement, request)
            for statement in statements_list(account_id=account.pk)
        ],
        "streams": stream_urls(request),
        "config": {
            "batch_window_ms": settings.STREAM_BATCH_WINDOW_MS,
            "self_reset": settings.ACCOUNT_SELF_RESET,
            "perf_report_interval_s": settings.DASHBOARD_PERF_REPORT_INTERVAL_S,
            "next_day_start": _next_day_start(now).astimezone(dt.UTC).isoformat(),
            # A game's board is polled at a third of the bound the endpoint never exceeds.
            "leaderboard_poll_ms": int(settings.LEADERBOARD_MAX_STALENESS_S * 1000 / 3),
            # Past it with no newer board, the page marks its board stale.
            "leaderboard_max_staleness_ms": int(settings.LEADERBOARD_MAX_STALENESS_S * 1000),
        },
    }
