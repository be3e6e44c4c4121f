"""The cached reads' fast path (analytics/fast_reads.py on trading/api/fast_reads.py, config/wsgi.py's
FastReads), the guard of its framework bypass (docs/architecture.md): on an L1 hit it answers what the DRF view answers,
status, body and every header in order; anything else reaches the view, whose answer is then the
view's own; it counts the request, the cache hits and the limiter's verdict as the view does.

Both answers come through config.wsgi's split stack as gunicorn calls it, one with the fast path
and one without, on the real database and Redis; L1 stands on the injectable clock, and the
leaderboard's staleness bound (the wall clock's) is wide enough for a slow machine. What still
runs on Redis's clock (a 429's Retry-After and its message's seconds) is compared to the second."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from analytics import fast_reads, services
from analytics.views import AccountAnalyticsView, LeaderboardView, SymbolStatsView
from config.cache import cache_manager
from config.metrics import metrics_flush, metrics_snapshot, snapshot_value
from config.wsgi import FAST_READS_MIDDLEWARE, application
from tests.builders import session_cookie
from tests.clock import ManualClock
from tests.fast_reads_support import (
    OWNER_CASES,
    Stacks,
    check_a_key_l1_does_not_hold_is_the_views,
    check_a_refused_request_gets_the_views_429_counted_once,
    check_answered_as_the_view,
    check_the_view_authenticates_permits_and_limits_as_assumed,
    headers_for_case,
    same_answer,
)
from tests.trading.api_support import key_headers
from tests.wsgi_calls import wsgi_call
from trading.models import Account, Asset

LEADERBOARD = ("/v2/leaderboard", "limit=20")
ACCOUNT = ("/v2/analytics/account", "")
SYMBOL = ("/v2/analytics/symbols/AAPL", "")


@pytest.fixture
def stacks(settings: SettingsWrapper, l1_clock: ManualClock) -> Iterator[Callable[..., Stacks]]:
    """Builds the stacks once a test has set its settings (both read them when built)."""
    # The board is dated by the wall clock: a loaded machine taking 5 s between the refresh and a
    # read would have the fast path leave a stale board to the view, and the test fail.
    settings.LEADERBOARD_MAX_STALENESS_S = 3600.0
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
    check_answered_as_the_view(built, path, query, player)
    fast = built.get(path, query, fast=True, headers=player)
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
@pytest.mark.parametrize("case", [*OWNER_CASES, "format", "other parameter"])
def test_what_the_fast_path_does_not_understand_is_the_views_answer(
    stacks: Callable[[], Stacks], player: dict[str, str], case: str
) -> None:
    built = stacks()
    built.get(*LEADERBOARD, fast=False, headers=player)  # the key and the board in L1
    path, query = LEADERBOARD
    headers = dict(player)
    if case == "format":
        query = "limit=20&format=json"
    elif case == "other parameter":
        query = "limit=20&page=2"
    else:
        headers = headers_for_case(player, case)
    drf = built.get(path, query, fast=False, headers=headers)
    fast = built.get(path, query, fast=True, headers=headers)
    assert built.fast.answered == 0
    same_answer(drf, fast)
    assert fast.status_code == OWNER_CASES.get(case, 200)


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
    check_a_key_l1_does_not_hold_is_the_views(stacks(), *ACCOUNT, player)


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [LEADERBOARD, ACCOUNT, SYMBOL])
def test_a_refused_request_gets_the_views_429_and_counts_once(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], player: dict[str, str], path: str, query: str
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/min"}
    check_a_refused_request_gets_the_views_429_counted_once(
        stacks(), path, query, player, refused=contextlib.nullcontext
    )


@pytest.mark.django_db
@pytest.mark.parametrize("cookie", ["no session", "its session", "another cookie"])
def test_a_session_cookie_beside_a_key_is_the_views(
    settings: SettingsWrapper,
    stacks: Callable[..., Stacks],
    player: dict[str, str],
    make_account: Callable[..., Account],
    cookie: str,
) -> None:
    """SessionMiddleware answers a session cookie whatever authenticated the request: one naming
    no session is expired (``Set-Cookie``, ``Vary: Cookie``); a cookie of another name is not its."""
    built = stacks()
    if cookie == "no session":
        value = f"{settings.SESSION_COOKIE_NAME}=abc"
    elif cookie == "its session":
        _, value = session_cookie(make_account().user_id)
    else:
        value = "theme=dark"
    headers = {**player, "Cookie": value}
    built.get(*ACCOUNT, fast=False, headers=headers)
    drf = built.get(*ACCOUNT, fast=False, headers=headers)
    fast = built.get(*ACCOUNT, fast=True, headers=headers)
    assert built.fast.answered == (cookie == "another cookie")
    same_answer(drf, fast)
    assert fast.status_code == 200
    if cookie == "no session":
        assert fast.headers["Vary"] == "Cookie" and "Max-Age=0" in fast.headers["Set-Cookie"]


@pytest.mark.django_db
def test_with_session_save_every_request_the_fast_path_is_off(
    settings: SettingsWrapper, stacks: Callable[..., Stacks], player: dict[str, str]
) -> None:
    settings.SESSION_SAVE_EVERY_REQUEST = True
    # config.wsgi's application follows the setting too (its setting_changed receiver).
    assert application.fast is not None and not application.fast.enabled
    built = stacks(fast_on=False)
    built.get(*ACCOUNT, fast=False, headers=player)
    drf = built.get(*ACCOUNT, fast=False, headers=player)
    fast = built.get(*ACCOUNT, fast=True, headers=player)
    assert built.fast.answered == 0
    same_answer(drf, fast)


def test_the_applications_fast_path_follows_the_hosts_django_allows(settings: SettingsWrapper) -> None:
    settings.ALLOWED_HOSTS = ["simulator.example"]
    assert application.fast is not None and application.fast.allowed_hosts == ["simulator.example"]


@pytest.mark.django_db
def test_an_error_after_the_verdict_was_asked_hands_the_verdict_to_the_view(
    stacks: Callable[..., Stacks],
    player: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The limiter has counted the request: the view answers it without counting it again."""
    built = stacks()
    built.get(*SYMBOL, fast=False, headers=player)
    drf = built.get(*SYMBOL, fast=False, headers=player)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("injected into the fast path")

    monkeypatch.setattr(fast_reads.selectors, "symbol_stats_held", broken)
    with caplog.at_level(logging.ERROR, logger=fast_reads.__name__):
        failed = built.get(*SYMBOL, fast=True, headers=player)
    assert built.fast.answered == 0
    same_answer(drf, failed)  # one request further into the window: counted once
    assert "injected into the fast path" in caplog.text


# --- What the fast path assumes of the views -------------------------------------------------------


@pytest.mark.parametrize(
    "view,path",
    [(LeaderboardView, LEADERBOARD[0]), (AccountAnalyticsView, ACCOUNT[0]), (SymbolStatsView, SYMBOL[0])],
)
def test_the_views_authenticate_permit_and_limit_as_the_fast_path_assumes(view: type, path: str) -> None:
    check_the_view_authenticates_permits_and_limits_as_assumed(view, path, "analytics/fast_reads.py")
