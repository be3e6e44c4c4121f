"""The cached reads answered from a WSGI environ, without Django's request and response objects,
its middleware and URL resolution, or DRF (a framework bypass, docs/architecture.md).

Property 14 holds the cached reads (``GET /v2/leaderboard``, ``/v2/analytics/account``,
``/v2/analytics/symbols/<symbol>``) to a 10 ms p99 at 16 connections on two sync workers, which
takes well over 2,000 answers a second. Through DRF each cost what the API floor costs (~400-460 us
of CPU, ``benchmark api --cpu``), almost all of it the path every API request shares: DRF's
dispatch, its Request, authentication, throttle and negotiation objects, Django's request and
response objects and middleware. The cache lookup and the pre-rendered body are a few us.

``cached_read`` answers only the happy path, and only when every piece of it is already in this
process's memory: a GET of one of the three paths with no body, no query parameter it does not
understand (``?format=`` included) and an ``Accept`` the API answers with JSON anyway; API key
credentials whose key and owner L1 holds (the entry ``APIKeyAuthentication`` keeps) with the right
secret; the read's value in L1 (the leaderboard within its staleness bound) and so its rendered
body. Then it asks the same rate limiter for the same verdict under the same key
(``trading/api/throttling.py``), and an admitted request gets the view's body and headers
(``Content-Type``, ``Allow``, the ``X-RateLimit-*`` ones); the caller (config/wsgi.py) adds what
the middleware adds and counts the request as the middleware does.

Anything else is the view's, unchanged, so every error answer stays the view's own: no or bad
credentials (401), a session or a session cookie beside a key (SessionMiddleware's headers), HEAD and OPTIONS, other parameters, a value L1 does not hold (the
view loads it, counting the misses). A verdict already asked for travels with the request
(``HandedVerdict``): the view takes it instead of asking again, so a refused request gets the
view's own 429 and a request handed on after the verdict was asked (its value missing, or an
error in this module) counts once.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer

from analytics import selectors
from analytics.models import LeaderboardPeriod
from analytics.views import rendered_bodies
from config.cache import LOCAL_DATA_TYPE, cache_manager
from trading.api.authentication import credentials_from, key_owner_held
from trading.api.throttling import (
    Decision,
    HandedVerdict,
    PendingDecision,
    api_rate_key,
    limiter,
    rate_for,
)

logger = logging.getLogger(__name__)

LEADERBOARD_PATH = "/v2/leaderboard"
ACCOUNT_PATH = "/v2/analytics/account"
SYMBOL_PREFIX = "/v2/analytics/symbols/"
# Symbols as assets name them; anything else (a percent-decoded oddity included) is the view's.
_SYMBOL = re.compile(r"[A-Za-z0-9.\-]{1,16}")
# The leaderboard's two parameters as a client writes them: a limit in plain digits, a period by
# name. Repeated names, encoded characters and other parameters (``format`` among them) are the view's.
_LEADERBOARD_PARAM = re.compile(r"(limit)=([1-9][0-9]{0,5})|(period)=([a-z]*)")
# What the API answers with JSON anyway (its negotiation ignores Accept: trading/api/negotiation.py);
# only these common forms are taken here, and any other value goes to the view.
_ACCEPTED = frozenset({None, "", "*/*", "application/json"})
# The views' headers of their own (DRF's ``Allow`` from their handlers: GET, and HEAD and OPTIONS
# which every view answers); the guard test compares them with what the views send.
VIEW_HEADERS = (("Content-Type", JSONRenderer.media_type), ("Allow", "GET, HEAD, OPTIONS"))
# The limiter's endpoint class of these reads (``endpoint_scope``: an authenticated GET outside
# /v2/stocks, and none of the three views names its own ``throttle_scope``).
_READ_SCOPE = "read"


@dataclass(frozen=True)
class FastAnswer:
    """A cached read's 200: its route's name (the metrics' label), body and the view's headers."""

    route: str
    body: bytes
    headers: list[tuple[str, str]]


def is_cached_read_path(environ: Mapping[str, Any]) -> bool:
    """Whether the request names one of the three paths (a cheap first test for every API request)."""
    path: str = environ.get("PATH_INFO", "")
    return path in (LEADERBOARD_PATH, ACCOUNT_PATH) or path.startswith(SYMBOL_PREFIX)


def cached_read(environ: Mapping[str, Any]) -> FastAnswer | HandedVerdict | None:
    """The answer to a cached read served from memory, or the request for the view: None, or the
    limiter's verdict when it was already asked (read: the limiter's connection is free again),
    which the caller hands on in the environ under ``HANDED_VERDICT_ENVIRON``."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("HTTP_ACCEPT") not in _ACCEPTED:
        return None
    if environ.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    # A session cookie is SessionMiddleware's to answer even beside an API key: it expires one
    # naming no session (``Set-Cookie``, ``Vary: Cookie``). A substring test, wider than the
    # cookie parser's: a header that merely contains the name also goes to the view (only slower).
    if settings.SESSION_COOKIE_NAME in environ.get("HTTP_COOKIE", ""):
        return None
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
    try:
        credentials = credentials_from(environ)
    except AuthenticationFailed:
        return None
    if credentials is None:
        return None
    owner = key_owner_held(*credentials)
    if owner is None:
        return None

    verdict: Decision | PendingDecision | None = None
    rate = rate_for(_READ_SCOPE) if settings.RATE_LIMITS_ENABLED else None
    key = ""
    if rate is not None:
        key = api_rate_key(_READ_SCOPE, f"account:{owner.key.account_id}")
        # Sent now and read after the lookup, as the views' own verdict (rate_verdict_after_handler).
        verdict = limiter().hit_begin(key, rate) or limiter().hit(key, rate)
    try:
        body = _body(route, path, leaderboard, owner.key.account_id)
    except Exception:
        if verdict is None:
            raise  # the caller logs it and the view answers
        # The limiter has counted this request: the view takes that verdict rather than count
        # it again (and reading it frees the limiter's connection).
        logger.exception("the cached reads' fast path failed after the rate verdict; the view answers")
        assert rate is not None
        decision = verdict.result() if isinstance(verdict, PendingDecision) else verdict
        return HandedVerdict(key=key, rate=rate, verdict=decision)
    except BaseException:
        if isinstance(verdict, PendingDecision):
            verdict.result()  # frees the limiter's connection
        raise
    if verdict is None:
        headers = list(VIEW_HEADERS)
    else:
        assert rate is not None
        decision = verdict.result() if isinstance(verdict, PendingDecision) else verdict
        if body is None or not decision.allowed:
            return HandedVerdict(key=key, rate=rate, verdict=decision)
        headers = [
            *VIEW_HEADERS,
            ("X-RateLimit-Limit", str(rate.limit)),
            ("X-RateLimit-Remaining", str(decision.remaining)),
            ("X-RateLimit-Reset", str(math.ceil(decision.reset_at))),
        ]
    if body is None:
        return None
    cache_manager().local_hits_count(LOCAL_DATA_TYPE, _DATA_TYPES[route])
    return FastAnswer(route=route, body=body, headers=headers)


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
