"""Reads answered from a WSGI environ, without Django's request and response objects, its
middleware and URL resolution, or DRF (a framework bypass, docs/architecture.md): what every such
fast path shares, and the polled reads' own.

Through DRF every API request costs what the API floor costs (~350-460 us of CPU, ``benchmark api
--cpu``): DRF's dispatch, its Request, authentication, throttle and negotiation objects, Django's
request and response objects, URL resolution and middleware. A read whose own work is a cache
lookup (analytics/fast_reads.py) or one database statement (the polled reads below) spends more
there than on its answer.

Shared (``fast_request_owner``, ``fast_answer``): only the happy path, every piece of which is
already in this process's memory: a GET with no body, an ``Accept`` the API answers with JSON
anyway, no session cookie, and API key credentials whose key and owner L1 holds (``key_owner_held``,
APIKeyAuthentication's own L1 hit) with the right secret. Then the same rate limiter gives the same
verdict under the same key (``trading/api/throttling.py``), and an admitted request gets the view's
body and headers (``Content-Type``, ``Allow``, the ``X-RateLimit-*`` ones); the caller
(config/wsgi.py) adds what the middleware adds and counts the request as the middleware does.
Anything else is the view's, unchanged, so every error answer stays the view's own. A verdict
already asked for travels with the request (``HandedVerdict``): the view takes it instead of asking
again, so a refused request gets the view's own 429 and a request handed on after the verdict was
asked counts once.

The polled reads (``polled_read``): ``GET /v2/account``, ``/v2/positions`` and ``/v2/orders`` with
no query or ``status=open``, the reads an alpaca-py bot polls. Each is its view's statement (the
account's row joined with the read's rows, ``key_account_joined``) shaped and rendered as the view
shapes and renders it. As the views (which are not ``rate_verdict_after_handler``), the verdict is
read before the statement runs. A finished game's account whose open orders the read just closed
(``account_orders_closed_on_read``, the views' side effect) is the view's, which reads it again;
so are a session's request, no account (403) and ``PREPARED_QUERIES`` off. A statement that
meets a database outage hands the request on with its error (``DatabaseUnavailable``), which the
view raises instead of connecting again: its own 503 and warning, one connection attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from config.cache import LOCAL_DATA_TYPE, cache_manager
from trading import selectors
from trading.api.authentication import (
    KeyOwner,
    account_orders_closed_on_read,
    credentials_from,
    key_account_joined,
    key_owner_held,
)
from trading.api.errors import DATABASE_UNAVAILABLE
from trading.api.serializers import AccountSerializer, OrderSerializer, PositionSerializer
from trading.api.throttling import (
    Decision,
    HandedVerdict,
    PendingDecision,
    api_rate_key,
    limiter,
    rate_for,
    rate_limit_headers,
    verdict_read,
)
from trading.api.views_account import AccountView
from trading.api.views_orders import (
    ORDERS_POLL_QUERY,
    ORDERS_POLL_QUERY_STRINGS,
    OrdersView,
    orders_listing,
)
from trading.api.views_positions import PositionsView

logger = logging.getLogger(__name__)

# What the API answers with JSON anyway (its negotiation ignores Accept: trading/api/negotiation.py);
# only these common forms are taken here, and any other value goes to the view.
_ACCEPTED = frozenset({None, "", "*/*", "application/json"})
# The limiter's endpoint class of the fast reads (``endpoint_scope``: an authenticated GET outside
# /v2/stocks, and none of their views names its own ``throttle_scope``; the guard tests pin it).
READ_SCOPE = "read"
_RENDERER = JSONRenderer()


def view_headers(view: type[APIView]) -> tuple[tuple[str, str], ...]:
    """A view's own headers on its 200: ``Content-Type`` and DRF's ``Allow`` (its handlers, with
    the HEAD Django adds for a GET and the OPTIONS every view answers, in DRF's order)."""
    instance = view()
    instance.setup(HttpRequest())
    return ("Content-Type", JSONRenderer.media_type), ("Allow", ", ".join(instance.allowed_methods))


@dataclass(frozen=True)
class FastAnswer:
    """A fast read's 200: its route's name (the metrics' label), body and the view's headers."""

    route: str
    body: bytes
    headers: list[tuple[str, str]]


@dataclass(frozen=True)
class DatabaseUnavailable:
    """A fast read whose statement met a database outage (``DATABASE_UNAVAILABLE``): the caller
    hands the request on with ``error`` in the environ under ``DATABASE_UNAVAILABLE_ENVIRON``,
    which the view raises without connecting again, and the verdict when it was asked."""

    error: Exception
    verdict: HandedVerdict | None


def fast_request_owner(environ: Mapping[str, Any]) -> KeyOwner | None:
    """The owner of the API key a plain GET names, when L1 holds it and the secret is right; None
    for anything the views are to answer."""
    if environ.get("REQUEST_METHOD") != "GET" or environ.get("HTTP_ACCEPT") not in _ACCEPTED:
        return None
    if environ.get("CONTENT_LENGTH") not in (None, "", "0") or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    # A session cookie is SessionMiddleware's to answer even beside an API key: it expires one
    # naming no session (``Set-Cookie``, ``Vary: Cookie``). A substring test, wider than the
    # cookie parser's: a header that merely contains the name also goes to the view (only slower).
    if settings.SESSION_COOKIE_NAME in environ.get("HTTP_COOKIE", ""):
        return None
    try:
        credentials = credentials_from(environ)
    except AuthenticationFailed:
        return None
    if credentials is None:
        return None
    return key_owner_held(*credentials)


def fast_answer(
    owner: KeyOwner,
    *,
    route: str,
    headers: tuple[tuple[str, str], ...],
    body: Callable[[], bytes | None],
    verdict_first: bool,
) -> FastAnswer | HandedVerdict | DatabaseUnavailable | None:
    """``body()`` answered as its view answers, under the limiter's verdict for ``owner``'s account;
    or the request for the view: None (``body()`` answered None, or raised, before any verdict),
    or the verdict already asked (read: the limiter's connection is free again), which the caller
    hands on in the environ under ``HANDED_VERDICT_ENVIRON``.

    ``verdict_first``: the verdict is read before ``body()`` runs, and a refusal runs nothing (the
    views' order for a read that may write); else it is sent first and read after, as
    ``rate_verdict_after_handler`` views do."""
    verdict: Decision | PendingDecision | None = None
    rate = rate_for(READ_SCOPE) if settings.RATE_LIMITS_ENABLED else None
    key = ""
    if rate is not None:
        key = api_rate_key(READ_SCOPE, f"account:{owner.key.account_id}")
        if verdict_first:
            verdict = limiter().hit(key, rate)
            if not verdict.allowed:
                return HandedVerdict(key=key, rate=rate, verdict=verdict)
        else:
            verdict = limiter().hit_begin(key, rate) or limiter().hit(key, rate)
    try:
        content = body()
    except DATABASE_UNAVAILABLE as error:
        # The view's handler would connect again and wait the connect timeout a second time: it
        # raises this error instead (``DatabaseUnavailable``), and logs its one warning line.
        handed = None
        if verdict is not None:
            assert rate is not None
            handed = HandedVerdict(key=key, rate=rate, verdict=verdict_read(verdict))
        return DatabaseUnavailable(error=error, verdict=handed)
    except Exception:
        if verdict is None:
            raise  # the caller logs it and the view answers
        # The limiter has counted this request: the view takes that verdict rather than count
        # it again (and reading it frees the limiter's connection).
        logger.exception("a fast read failed after the rate verdict; the view answers")
        assert rate is not None
        return HandedVerdict(key=key, rate=rate, verdict=verdict_read(verdict))
    except BaseException:
        if isinstance(verdict, PendingDecision):
            verdict.result()  # frees the limiter's connection
        raise
    answer_headers = list(headers)
    if verdict is not None:
        assert rate is not None
        decision = verdict_read(verdict)
        if content is None or not decision.allowed:
            return HandedVerdict(key=key, rate=rate, verdict=decision)
        answer_headers += rate_limit_headers(rate, decision)
    if content is None:
        return None
    # The key's L1 hit, as APIKeyAuthentication counts it.
    cache_manager().local_hits_count(LOCAL_DATA_TYPE)
    return FastAnswer(route=route, body=content, headers=answer_headers)


# --- The polled reads -------------------------------------------------------------------------------

ACCOUNT_PATH = "/v2/account"
POSITIONS_PATH = "/v2/positions"
ORDERS_PATH = "/v2/orders"


@dataclass(frozen=True)
class _Polled:
    """A polled read: its route's name, its view's headers, its read (``AccountRead``) and how
    the view shapes the read's answer."""

    route: str
    headers: tuple[tuple[str, str], ...]
    read: Callable[[], selectors.AccountRead[Any]]
    shape: Callable[[Any], Any]


POLLED_READS: dict[str, _Polled] = {
    ACCOUNT_PATH: _Polled(
        route="account",
        headers=view_headers(AccountView),
        read=selectors.account_summary_read,
        shape=AccountSerializer.shape,
    ),
    POSITIONS_PATH: _Polled(
        route="positions",
        headers=view_headers(PositionsView),
        read=selectors.portfolio_positions_read,
        shape=lambda positions: [PositionSerializer.shape(position) for position in positions],
    ),
    ORDERS_PATH: _Polled(
        route="orders",
        headers=view_headers(OrdersView),
        read=lambda: selectors.orders_list_rows_read(**orders_listing(ORDERS_POLL_QUERY)),
        shape=lambda rows: [OrderSerializer.shape_row(row) for row in rows],
    ),
}
# The rows' read answers a poll; its nested form is the view's.
_ORDERS_POLL_QUERIES = frozenset() if ORDERS_POLL_QUERY["nested"] else ORDERS_POLL_QUERY_STRINGS


def polled_read(environ: Mapping[str, Any]) -> FastAnswer | HandedVerdict | DatabaseUnavailable | None:
    """A polled read answered as its view answers it, or the request for the view (as
    ``fast_answer``)."""
    path: str = environ.get("PATH_INFO", "")
    polled = POLLED_READS.get(path)
    if polled is None or not settings.PREPARED_QUERIES:
        return None
    query: str = environ.get("QUERY_STRING", "")
    if query and (path != ORDERS_PATH or query not in _ORDERS_POLL_QUERIES):
        return None
    owner = fast_request_owner(environ)
    if owner is None:
        return None
    return fast_answer(
        owner,
        route=polled.route,
        headers=polled.headers,
        body=lambda: _polled_body(polled, owner),
        verdict_first=True,
    )


def _polled_body(polled: _Polled, owner: KeyOwner) -> bytes | None:
    """The read's rendered answer, or None: the view is to answer (its account is gone, the read
    is not joined, or its finished game's orders were just closed)."""
    read = polled.read()
    part = read.part(owner.key.account_id)
    if part is None:
        return None
    found = key_account_joined(account_id=owner.key.account_id, user_id=owner.key.user_id, part=part)
    if found is None:
        return None
    account, rows = found
    if account_orders_closed_on_read(account=account):
        return None
    return _RENDERER.render(polled.shape(read.joined(account, rows)))
