"""The cached reads answered from a WSGI environ, without Django's request and response objects,
its middleware and URL resolution, or DRF (a framework bypass, docs/architecture.md).

Property 14 holds the cached reads (``GET /v2/leaderboard``, ``/v2/analytics/account``,
``/v2/analytics/symbols/<symbol>``) to a 10 ms p99 at 16 connections on two sync workers, which
takes well over 2,000 answers a second. Through DRF each cost what the API floor costs (~400-460 us
of CPU, ``benchmark api --cpu``), almost all of it the path every API request shares: DRF's
dispatch, its Request, authentication, throttle and negotiation objects, Django's request and
response objects and middleware. The cache lookup and the pre-rendered body are a few us.

``cached_read`` answers only the happy path, and only when every piece of it is already in this
process's memory: what every fast read requires (trading/api/fast_reads.py: a plain GET with API
key credentials L1 holds), one of the three paths with no query parameter it does not understand
(``?format=`` included), and the read's value in L1 (the leaderboard within its staleness bound)
and so its rendered body. The limiter's verdict is sent before the lookup and read after, as the
views' own (``rate_verdict_after_handler``), and an admitted request gets the view's body and
headers (``fast_answer``).

Anything else is the view's, unchanged, so every error answer stays the view's own: no or bad
credentials (401), a session or a session cookie beside a key (SessionMiddleware's headers), HEAD
and OPTIONS, other parameters, a value L1 does not hold (the view loads it, counting the misses),
with the verdict handed on when it was asked (``HandedVerdict``: counted once).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.utils import timezone

from analytics import selectors
from analytics.models import LeaderboardPeriod
from analytics.views import AccountAnalyticsView, LeaderboardView, SymbolStatsView, rendered_bodies
from config.cache import cache_manager
from trading.api.fast_reads import (
    DatabaseUnavailable,
    FastAnswer,
    fast_answer,
    fast_request_owner,
    view_headers,
)
from trading.api.throttling import HandedVerdict

LEADERBOARD_PATH = "/v2/leaderboard"
ACCOUNT_PATH = "/v2/analytics/account"
SYMBOL_PREFIX = "/v2/analytics/symbols/"
# Symbols as assets name them; anything else (a percent-decoded oddity included) is the view's.
_SYMBOL = re.compile(r"[A-Za-z0-9.\-]{1,16}")
# The leaderboard's two parameters as a client writes them: a limit in plain digits, a period by
# name. Repeated names, encoded characters and other parameters (``format`` among them) are the view's.
_LEADERBOARD_PARAM = re.compile(r"(limit)=([1-9][0-9]{0,5})|(period)=([a-z]*)")
# Each route's view headers (``Content-Type``, ``Allow``); the guard test compares them with what
# the views send.
_VIEW_HEADERS = {
    "leaderboard": view_headers(LeaderboardView),
    "analytics-account": view_headers(AccountAnalyticsView),
    "analytics-symbol": view_headers(SymbolStatsView),
}


def is_cached_read_path(environ: Mapping[str, Any]) -> bool:
    """Whether the request names one of the three paths (a cheap first test for every API request)."""
    path: str = environ.get("PATH_INFO", "")
    return path in (LEADERBOARD_PATH, ACCOUNT_PATH) or path.startswith(SYMBOL_PREFIX)


def cached_read(environ: Mapping[str, Any]) -> FastAnswer | HandedVerdict | DatabaseUnavailable | None:
    """The answer to a cached read served from memory, or the request for the view: None, or the
    limiter's verdict when it was already asked (read: the limiter's connection is free again),
    which the caller hands on in the environ under ``HANDED_VERDICT_ENVIRON``."""
    path: str = environ.get("PATH_INFO", "")
    query: str = environ.get("QUERY_STRING", "")
    route: str
    leaderboard: tuple[str, int] | None = None
    if path == LEADERBOARD_PATH:
        route = "leaderboard"
        leaderboard = _leaderboard_query(query)
        if leaderboard is None:
            return None
    elif query:
        return None
    elif path == ACCOUNT_PATH:
        route = "analytics-account"
    elif path.startswith(SYMBOL_PREFIX) and _SYMBOL.fullmatch(path, len(SYMBOL_PREFIX)):
        route = "analytics-symbol"
    else:
        return None
    owner = fast_request_owner(environ)
    if owner is None:
        return None
    account_id = owner.key.account_id
    answer = fast_answer(
        owner,
        route=route,
        headers=_VIEW_HEADERS[route],
        body=lambda: _body(route, path, leaderboard, account_id),
        verdict_first=False,
    )
    if isinstance(answer, FastAnswer):
        cache_manager().local_hits_count(_DATA_TYPES[route])
    return answer


# The data type each read's cache entry is counted under (analytics/selectors.py).
_DATA_TYPES = {
    "leaderboard": "leaderboard",
    "analytics-account": "analytics",
    "analytics-symbol": "symbol_stats",
}


def _leaderboard_query(query: str) -> tuple[str, int] | None:
    """(period, limit) of a leaderboard query the fast path understands, as the view reads them."""
    period: str | None = None
    limit: int | None = None
    if query:
        for part in query.split("&"):
            match = _LEADERBOARD_PARAM.fullmatch(part)
            if match is None:
                return None
            if match.group(1):
                if limit is not None:
                    return None
                limit = int(match.group(2))
            else:
                if period is not None:
                    return None
                period = match.group(4)
    return (period or LeaderboardPeriod.OVERALL), (
        settings.LEADERBOARD_LIMIT_DEFAULT if limit is None else limit
    )


def _body(route: str, path: str, leaderboard: tuple[str, int] | None, account_id: str) -> bytes | None:
    """The read's rendered body when L1 holds its value (the views' own memo), else None."""
    if leaderboard is not None:
        period, limit = leaderboard
        board = selectors.leaderboard_whole_held(period=period, limit=limit, now=timezone.now())
        if board is None:
            return None
        return rendered_bodies.get(
            board, variant=limit, payload=lambda: selectors.leaderboard_first(board, limit)
        )
    if route == "analytics-account":
        value = selectors.account_analytics_held_by_id(account_id=account_id)
    else:
        value = selectors.symbol_stats_held(symbol=path[len(SYMBOL_PREFIX) :].upper())
    return None if value is None else rendered_bodies.get(value)
