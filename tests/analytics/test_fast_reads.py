"""The cached reads' fast path (analytics/fast_reads.py, config/wsgi.py's FastReads), the guard of
its framework bypass (docs/architecture.md): on an L1 hit it answers what the DRF view answers,
status, body and every header in order; anything else reaches the view, whose answer is then the
view's own; it counts the request, the cache hits and the limiter's verdict as the view does.

Both answers come through config.wsgi's split stack as gunicorn calls it, one with the fast path
and one without, on the real database and Redis; L1 stands on the injectable clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from analytics import services
from config.cache import cache_manager
from config.metrics import metrics_flush, metrics_snapshot, snapshot_value
from config.wsgi import FAST_READS_MIDDLEWARE, FastReads, SplitStackHandler, application, handler_for
from tests.builders import session_cookie
from tests.clock import ManualClock
from tests.trading.api_support import key_headers
from tests.wsgi_calls import Answer, wsgi_call
from trading.models import Account, Asset

LEADERBOARD = ("/v2/leaderboard", "limit=20")
ACCOUNT = ("/v2/analytics/account", "")
SYMBOL = ("/v2/analytics/symbols/AAPL", "")
RATE_HEADERS = ("X-RateLimit-Remaining",)


class CountingFastReads(FastReads):
    """FastReads that counts the requests it answered itself."""

    answered = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes] | None:
        answer = super().__call__(environ, start_response)
        self.answered += answer is not None
        return answer


class Stacks:
    """config.wsgi's split stack as the settings now are: with the fast path, and without it."""

    def __init__(self) -> None:
        api = handler_for(FAST_READS_MIDDLEWARE)
        self.fast = CountingFastReads()
        assert self.fast.enabled
        self.with_fast = SplitStackHandler(pages=application.pages, api=api, fast=self.fast)
        self.drf_only = SplitStackHandler(pages=application.pages, api=api)

    def get(self, path: str, query: str = "", *, fast: bool, **kwargs: Any) -> Answer:
        return wsgi_call(
            "GET", path, query=query, application=self.with_fast if fast else self.drf_only, **kwargs
        )


@pytest.fixture
def stacks(settings: SettingsWrapper, l1_clock: ManualClock) -> Iterator[Callable[[], Stacks]]:
    """Builds the stacks once a test has set its settings (both read them when built)."""
    yield Stacks


@pytest.fixture
def player(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account], clean_cache: None
) -> dict[str, str]:
    """A player's API key headers, with the analytics rows the three reads serve."""
    make_asset("AAPL")
    account = make_account()
    services.analytics_refresh_all()
    return key_headers(account)


def same_answer(drf: Answer, fast: Answer, *, consumed: int = 1) -> None:
    """The same status, body and headers in the same order; the limit's remaining count differs by
    the ``consumed`` requests between the two."""
    assert (fast.status, fast.body) == (drf.status, drf.body)
    assert [name for name, _ in fast.header_list] == [name for name, _ in drf.header_list]
    for (name, drf_value), (_, fast_value) in zip(drf.header_list, fast.header_list, strict=True):
        if name in RATE_HEADERS:
            assert int(fast_value) == int(drf_value) - consumed
        else:
            assert fast_value == drf_value, name


def test_the_fast_path_is_on_for_the_projects_api_stack(settings: SettingsWrapper) -> None:
    """The bypass was written against this stack: a middleware added or removed turns it off, and
    this test fails until the fast path is checked against the new stack."""
    assert list(settings.API_MIDDLEWARE) == FAST_READS_MIDDLEWARE
    assert application.fast is not None and application.fast.enabled


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [LEADERBOARD, ("/v2/leaderboard", ""), ACCOUNT, SYMBOL])
@pytest.mark.parametrize("benchmark_endpoints", [False, True])
def test_a_cached_read_is_answered_as_the_view_answers_it(
    settings: SettingsWrapper,
    stacks: Callable[[], Stacks],
    player: dict[str, str],
    path: str,
    query: str,
    benchmark_endpoints: bool,
) -> None:
    settings.BENCHMARK_ENDPOINTS = benchmark_endpoints  # X-DB-Queries on both
    built = stacks()
    built.get(path, query, fast=False, headers=player)  # L1 now holds the key and the value
    drf = built.get(path, query, fast=False, headers=player)
    fast = built.get(path, query, fast=True, headers=player)
    assert built.fast.answered == 1 and fast.status_code == 200
    same_answer(drf, fast)
    assert ("X-DB-Queries" in fast.headers) is benchmark_endpoints


@pytest.mark.django_db
def test_behind_tls_the_answer_carries_the_same_hsts_and_a_plain_request_is_redirected_by_django(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], player: dict[str, str]
) -> None:
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_SSL_REDIRECT = True
    built = stacks()
    secure = {**player, "X-Forwarded-Proto": "https"}
    built.get(*ACCOUNT, fast=False, headers=secure)
    drf = built.get(*ACCOUNT, fast=False, headers=secure)
    fast = built.get(*ACCOUNT, fast=True, headers=secure)
    assert built.fast.answered == 1
    same_answer(drf, fast)
    assert fast.headers["Strict-Transport-Security"] == "max-age=3600"
    plain = built.get(*ACCOUNT, fast=True, headers=player)
    assert built.fast.answered == 1 and plain.status_code == 301


@pytest.mark.django_db
def test_a_fast_answer_moves_the_request_and_cache_series_as_the_views_answer(
    stacks: Callable[[], Stacks], player: dict[str, str]
) -> None:
    built = stacks()
    series = [
        ("http_requests_total", {"route": "analytics-symbol", "method": "GET", "status": "2xx"}),
        ("http_request_duration_seconds_count", {"route": "analytics-symbol", "method": "GET"}),
        ("db_request_queries_count", {"route": "analytics-symbol"}),
        ("cache_hits_total", {"layer": "L1", "data_type": "symbol_stats"}),
        ("cache_hits_total", {"layer": "L1", "data_type": "local"}),
        ("cache_misses_total", {"layer": "L1", "data_type": "symbol_stats"}),
    ]

    def values() -> list[float]:
        metrics_flush()
        samples = metrics_snapshot()
        return [snapshot_value(samples, name, labels) or 0.0 for name, labels in series]

    built.get(*SYMBOL, fast=False, headers=player)
    before = values()
    built.get(*SYMBOL, fast=False, headers=player)
    after_drf = values()
    built.get(*SYMBOL, fast=True, headers=player)
    after_fast = values()
    assert built.fast.answered == 1
    drf_moves = [b - a for a, b in zip(before, after_drf, strict=True)]
    assert drf_moves == [1, 1, 1, 1, 1, 0]
    assert [b - a for a, b in zip(after_drf, after_fast, strict=True)] == drf_moves


# --- What the view answers --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "unknown key",
        "no credentials",
        "half the headers",
        "accept html",
        "format",
        "other parameter",
    ],
)
def test_what_the_fast_path_does_not_understand_is_the_views_answer(
    stacks: Callable[[], Stacks], player: dict[str, str], case: str
) -> None:
    built = stacks()
    built.get(*LEADERBOARD, fast=False, headers=player)  # the key and the board in L1
    path, query = LEADERBOARD
    headers = dict(player)
    if case == "wrong secret":
        headers["APCA-API-SECRET-KEY"] = "not-the-secret"
    elif case == "unknown key":
        headers["APCA-API-KEY-ID"] = "PKNOSUCHKEY"
    elif case == "no credentials":
        headers = {}
    elif case == "half the headers":
        del headers["APCA-API-SECRET-KEY"]
    elif case == "accept html":
        headers["Accept"] = "text/html"
    elif case == "format":
        query = "limit=20&format=json"
    else:
        query = "limit=20&page=2"
    drf = built.get(path, query, fast=False, headers=headers)
    fast = built.get(path, query, fast=True, headers=headers)
    assert built.fast.answered == 0
    same_answer(drf, fast)
    assert fast.status_code == (200 if case in ("accept html", "format", "other parameter") else 401)


@pytest.mark.django_db
def test_head_a_session_and_a_bad_limit_are_the_views(
    stacks: Callable[[], Stacks], player: dict[str, str], make_account: Callable[..., Account]
) -> None:
    built = stacks()
    built.get(*LEADERBOARD, fast=False, headers=player)
    head = wsgi_call(
        "HEAD", LEADERBOARD[0], query=LEADERBOARD[1], headers=player, application=built.with_fast
    )
    assert head.status_code == 200
    _, cookie = session_cookie(make_account().user_id)
    drf = built.get(*ACCOUNT, fast=False, headers={"Cookie": cookie})
    fast = built.get(*ACCOUNT, fast=True, headers={"Cookie": cookie})
    same_answer(drf, fast)
    assert fast.status_code == 200
    drf = built.get("/v2/leaderboard", "limit=0", fast=False, headers=player)
    fast = built.get("/v2/leaderboard", "limit=0", fast=True, headers=player)
    same_answer(drf, fast)
    assert fast.status_code == 422
    assert built.fast.answered == 0


@pytest.mark.django_db
def test_a_value_l1_does_not_hold_is_loaded_by_the_view_with_the_verdict_already_asked(
    stacks: Callable[[], Stacks], player: dict[str, str]
) -> None:
    """A miss after the limiter was asked: the view answers, and the request counts once."""
    built = stacks()
    built.get(*SYMBOL, fast=False, headers=player)
    drf = built.get(*SYMBOL, fast=False, headers=player)
    key = f"symbol_stats:{services.SYMBOL_STATS_CACHE_VERSION}:AAPL"
    cache_manager().l1.delete(key)  # the key's owner stays, the value goes
    missed = built.get(*SYMBOL, fast=True, headers=player)
    assert built.fast.answered == 0
    same_answer(drf, missed)  # one request further into the window
    again = built.get(*SYMBOL, fast=True, headers=player)
    assert built.fast.answered == 1
    same_answer(missed, again)


@pytest.mark.django_db
def test_a_key_l1_does_not_hold_is_authenticated_by_the_view(
    stacks: Callable[[], Stacks], player: dict[str, str]
) -> None:
    built = stacks()
    built.get(*ACCOUNT, fast=False, headers=player)
    drf = built.get(*ACCOUNT, fast=False, headers=player)
    cache_manager().l1.clear()  # the view finds the key in Redis, or in the database
    fast = built.get(*ACCOUNT, fast=True, headers=player)
    assert built.fast.answered == 0
    same_answer(drf, fast)


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [LEADERBOARD, ACCOUNT, SYMBOL])
def test_a_refused_request_gets_the_views_429_and_counts_once(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], player: dict[str, str], path: str, query: str
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/min"}
    built = stacks()
    first = built.get(path, query, fast=False, headers=player)
    second = built.get(path, query, fast=True, headers=player)
    assert built.fast.answered == 1
    assert (first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]) == ("2", "1")
    built.get(path, query, fast=True, headers=player)
    refused_fast = built.get(path, query, fast=True, headers=player)
    refused_drf = built.get(path, query, fast=False, headers=player)
    assert built.fast.answered == 2
    assert refused_fast.status_code == 429
    same_answer(refused_drf, refused_fast, consumed=0)
