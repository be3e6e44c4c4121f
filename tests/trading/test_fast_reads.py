"""The polled reads' fast path (trading/api/fast_reads.py, config/wsgi.py's FastReads), the guard of
its framework bypass (docs/architecture.md): ``GET /v2/account``, ``/v2/positions`` and
``/v2/orders`` (no query, or ``status=open``) with a key L1 holds are answered as the DRF view
answers them, status, body and every header in order; anything else reaches the view, whose answer
is then the view's own; the request, its statement, the cache hits and the limiter's verdict count
as under the view.

Both answers come through config.wsgi's split stack as gunicorn calls it, one with the fast path
and one without, on the real database and Redis; the clock is stopped (time_machine) so both see
the same day, and L1 stands on the injectable clock. A 429's wait (Redis's clock) is compared to
the second (tests/fast_reads_support.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterator
from time import monotonic as real_monotonic
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.db.backends.base import base as base_backend
from django.db.backends.signals import connection_created
from django.urls import resolve
from pytest_django.fixtures import Settings as SettingsWrapper

from config.metrics import metrics_flush, metrics_snapshot
from tests.builders import class_game, session_cookie
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
from tests.trading.api_support import buy, key_client, post_order
from tests.trading.test_database_unavailable import database_pointed_at, unreachable
from tests.wsgi_calls import wsgi_call
from trading import services
from trading.api import fast_reads
from trading.api.views_account import AccountView
from trading.api.views_base import TradingAPIView
from trading.api.views_orders import ORDERS_POLL_QUERY, OrdersView
from trading.api.views_positions import PositionsView
from trading.models import Account, Asset, Order

pytestmark = pytest.mark.usefixtures("no_commission")

# 11:00 New York on a Tuesday: the market is open and both answers read the same day.
AT = dt.datetime(2025, 6, 3, 15, 0, tzinfo=dt.UTC)
ACCOUNT = ("/v2/account", "")
POSITIONS = ("/v2/positions", "")
OPEN_ORDERS = ("/v2/orders", "status=open")
ORDERS = ("/v2/orders", "")
READS = [ACCOUNT, POSITIONS, OPEN_ORDERS, ORDERS]


@pytest.fixture
def stacks(l1_clock: ManualClock) -> Iterator[Callable[..., Stacks]]:
    """Builds the stacks once a test has set its settings (both read them when built), the clock
    stopped at AT."""
    with time_machine.travel(AT, tick=False):
        yield Stacks


def _trader_headers(account: Account) -> dict[str, str]:
    """A key's headers for ``account``, after two buys that fill and a limit order left open."""
    client = key_client(account)
    buy(client, "AAPL", 3)
    buy(client, "MSFT", 2)
    assert post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50").status_code == 200
    return {"APCA-API-KEY-ID": client.key_id, "APCA-API-SECRET-KEY": client.secret}


@pytest.fixture
def assets(make_asset: Callable[..., Asset], clean_cache: None) -> None:
    make_asset("AAPL", price="100.00")
    make_asset("MSFT", price="200.00")


@pytest.fixture
def trader(stacks: Any, assets: None, make_account: Callable[..., Account]) -> dict[str, str]:
    """The key headers of an account with positions and an open order."""
    return _trader_headers(make_account())


@pytest.fixture
def organiser(make_account: Callable[..., Account]) -> User:
    return make_account(username="teacher").user


def _game_account(organiser: User, account: Account, *, start: dt.datetime) -> Account:
    game = class_game(organiser=organiser, start=start)
    return services.game_join(
        game_id=game.pk, user=account.user, now=start - dt.timedelta(minutes=30)
    ).account


def test_the_polled_paths_are_the_views_the_fast_path_answers_for() -> None:
    assert {path: resolve(path).func.view_class for path in fast_reads.POLLED_READS} == {  # type: ignore[attr-defined]
        "/v2/account": AccountView,
        "/v2/positions": PositionsView,
        "/v2/orders": OrdersView,
    }
    assert {path: resolve(path).url_name for path in fast_reads.POLLED_READS} == {
        path: read.route for path, read in fast_reads.POLLED_READS.items()
    }


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", READS)
@pytest.mark.parametrize("benchmark_endpoints", [False, True])
def test_a_polled_read_is_answered_as_the_view_answers_it(
    settings: SettingsWrapper,
    stacks: Callable[[], Stacks],
    trader: dict[str, str],
    path: str,
    query: str,
    benchmark_endpoints: bool,
) -> None:
    settings.BENCHMARK_ENDPOINTS = benchmark_endpoints  # X-DB-Queries on both
    built = stacks()
    check_answered_as_the_view(built, path, query, trader)
    fast = built.get(path, query, fast=True, headers=trader)
    assert fast.json()  # holdings, and an open order, to compare
    assert ("X-DB-Queries" in fast.headers) is benchmark_endpoints


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", READS)
def test_a_running_games_account_is_answered_as_the_view_answers_it(
    stacks: Callable[[], Stacks],
    assets: None,
    organiser: User,
    make_account: Callable[..., Account],
    path: str,
    query: str,
) -> None:
    built = stacks()
    player = _game_account(organiser, make_account(), start=AT - dt.timedelta(hours=1))
    check_answered_as_the_view(built, path, query, _trader_headers(player))


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", READS)
def test_a_finished_games_account_is_settled_by_the_view_then_answered_fast(
    settings: SettingsWrapper,
    assets: None,
    organiser: User,
    make_account: Callable[..., Account],
    l1_clock: ManualClock,
    path: str,
    query: str,
) -> None:
    """The read that closes the ended game's open orders is the view's (it reads the account
    again), with the verdict the fast path asked: counted once. The next read has nothing to close.
    (Its ``X-DB-Queries``, the close's statements included, is compared with the view alone's
    settling read in the next test.)"""
    start = AT - dt.timedelta(days=6)
    player = _game_account(organiser, make_account(), start=start)
    with time_machine.travel(start + dt.timedelta(hours=1), tick=False):
        headers = _trader_headers(player)
    assert Order.objects.filter(account=player, status="new").count() == 1
    with time_machine.travel(AT, tick=False):  # after the game's end
        built = Stacks()
        built.get("/v2/clock", fast=False, headers=headers)  # L1 holds the key; nothing settled
        settled = built.get(path, query, fast=True, headers=headers)
        assert built.fast.answered == 0 and settled.status_code == 200
        assert Order.objects.filter(account=player, status="new").count() == 0
        drf = built.get(path, query, fast=False, headers=headers)
        same_answer(settled, drf)  # one request further: the settling request counted once
        fast = built.get(path, query, fast=True, headers=headers)
        assert built.fast.answered == 1
        same_answer(drf, fast)


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [ACCOUNT, POSITIONS, OPEN_ORDERS])
def test_a_fast_answer_moves_the_request_database_and_cache_series_as_the_views_answer(
    stacks: Callable[[], Stacks], trader: dict[str, str], path: str, query: str
) -> None:
    built = stacks()
    route = fast_reads.POLLED_READS[path].route
    names = {
        "http_requests_total",
        "http_request_duration_seconds_count",
        "db_request_queries_count",
        "db_request_queries_sum",
        "cache_hits_total",
        "cache_misses_total",
    }

    def values() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        metrics_flush()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in metrics_snapshot()
            if sample.name in names
        }

    def moves(before: dict[Any, float], after: dict[Any, float]) -> dict[Any, float]:
        return {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key)}

    built.get(path, query, fast=False, headers=trader)
    before = values()
    built.get(path, query, fast=False, headers=trader)
    after_drf = values()
    built.get(path, query, fast=True, headers=trader)
    after_fast = values()
    assert built.fast.answered == 1
    drf_moves = moves(before, after_drf)
    assert drf_moves[("http_requests_total", (("method", "GET"), ("route", route), ("status", "2xx")))] == 1
    assert drf_moves[("db_request_queries_sum", (("route", route),))] >= 1
    assert drf_moves[("cache_hits_total", (("data_type", "local"), ("layer", "L1")))] == 1
    assert moves(after_drf, after_fast) == drf_moves


# --- What the view answers --------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,query",
    [
        ("/v2/orders", "status=closed"),
        ("/v2/orders", "status=all"),
        ("/v2/orders", "nested=true"),
        ("/v2/orders", "status=open&nested=false"),
        ("/v2/orders", "limit=5"),
        ("/v2/orders", "status=open&limit=50"),
        ("/v2/orders", "status=open&status=open"),
        ("/v2/orders", "status=OPEN"),
        ("/v2/orders", "status=bogus"),
        ("/v2/orders", "format=json"),
        ("/v2/account", "status=open"),
        ("/v2/positions", "x=1"),
        ("/v2/orders/", ""),
        ("/v2/account/", ""),
    ],
)
def test_other_queries_and_paths_are_the_views(
    stacks: Callable[[], Stacks], trader: dict[str, str], path: str, query: str
) -> None:
    built = stacks()
    built.get(*ACCOUNT, fast=False, headers=trader)  # L1 holds the key
    drf = built.get(path, query, fast=False, headers=trader)
    fast = built.get(path, query, fast=True, headers=trader)
    assert built.fast.answered == 0
    same_answer(drf, fast)


@pytest.mark.django_db
@pytest.mark.parametrize("case", [*OWNER_CASES, "body", "session cookie"])
def test_what_the_fast_path_does_not_understand_is_the_views_answer(
    stacks: Callable[[], Stacks], trader: dict[str, str], case: str
) -> None:
    built = stacks()
    built.get(*ACCOUNT, fast=False, headers=trader)
    if case in OWNER_CASES:
        headers = headers_for_case(trader, case)
    else:
        headers = {**trader, **({"Cookie": "sessionid=abc"} if case == "session cookie" else {})}
    body = b"{}" if case == "body" else b""
    for path, query in READS:
        drf, fast = (
            wsgi_call("GET", path, query=query, body=body, headers=headers, application=application)
            for application in (built.drf_only, built.with_fast)
        )
        same_answer(drf, fast)
        assert fast.status_code == OWNER_CASES.get(case, 200)
    assert built.fast.answered == 0


@pytest.mark.django_db
def test_head_and_a_session_are_the_views(
    stacks: Callable[[], Stacks], trader: dict[str, str], make_account: Callable[..., Account]
) -> None:
    built = stacks()
    built.get(*ACCOUNT, fast=False, headers=trader)
    for path, query in READS:
        head = wsgi_call("HEAD", path, query=query, headers=trader, application=built.with_fast)
        assert head.status_code == 200
    _, cookie = session_cookie(make_account().user_id)
    for path, query in READS:
        drf = built.get(path, query, fast=False, headers={"Cookie": cookie})
        fast = built.get(path, query, fast=True, headers={"Cookie": cookie})
        same_answer(drf, fast)
        assert fast.status_code == 200
    assert built.fast.answered == 0


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [ACCOUNT, POSITIONS, OPEN_ORDERS])
def test_a_key_l1_does_not_hold_is_authenticated_by_the_view(
    stacks: Callable[[], Stacks], trader: dict[str, str], path: str, query: str
) -> None:
    check_a_key_l1_does_not_hold_is_the_views(stacks(), path, query, trader)


@pytest.mark.django_db
def test_without_prepared_queries_the_reads_are_the_views(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], trader: dict[str, str]
) -> None:
    settings.PREPARED_QUERIES = False
    built = stacks()
    for path, query in READS:
        built.get(path, query, fast=False, headers=trader)
        drf = built.get(path, query, fast=False, headers=trader)
        fast = built.get(path, query, fast=True, headers=trader)
        same_answer(drf, fast)
    assert built.fast.answered == 0


@pytest.mark.django_db
def test_a_key_whose_account_is_gone_gets_the_views_403_counted_once(
    stacks: Callable[[], Stacks], assets: None, make_account: Callable[..., Account]
) -> None:
    """The key and its owner still in L1, the account no longer the owner's: the statement finds
    no account, and the view answers its 403 with the verdict the fast path asked."""
    built = stacks()
    account = make_account()
    headers = _trader_headers(account)
    built.get(*ACCOUNT, fast=False, headers=headers)
    drf = built.get(*ACCOUNT, fast=False, headers=headers)
    Account.objects.filter(pk=account.pk).update(user=User.objects.create_user("no-account"))
    gone = built.get(*ACCOUNT, fast=True, headers=headers)
    assert built.fast.answered == 0 and gone.status_code == 403
    assert int(gone.headers["X-RateLimit-Remaining"]) == int(drf.headers["X-RateLimit-Remaining"]) - 1
    same_answer(gone, built.get(*ACCOUNT, fast=False, headers=headers))


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", [ACCOUNT, POSITIONS, OPEN_ORDERS])
def test_a_refused_request_gets_the_views_429_and_counts_once(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], trader: dict[str, str], path: str, query: str
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/min"}

    @contextlib.contextmanager
    def refused() -> Iterator[None]:
        with pytest.MonkeyPatch.context() as patch:
            # A refused request runs no statement.
            patch.setattr(fast_reads, "key_account_joined", _must_not_run)
            yield

    check_a_refused_request_gets_the_views_429_counted_once(stacks(), path, query, trader, refused=refused)


def _must_not_run(**kwargs: Any) -> None:
    raise AssertionError("the statement ran for a refused request")


@pytest.mark.django_db
def test_without_rate_limits_the_answer_carries_no_rate_headers_as_the_views(
    settings: SettingsWrapper, stacks: Callable[[], Stacks], trader: dict[str, str]
) -> None:
    settings.RATE_LIMITS_ENABLED = False
    built = stacks()
    check_answered_as_the_view(built, *OPEN_ORDERS, trader)
    assert "X-RateLimit-Limit" not in built.get(*OPEN_ORDERS, fast=True, headers=trader).headers


@pytest.mark.django_db
@pytest.mark.parametrize("rate_limits", [True, False])
def test_an_error_in_the_fast_path_is_the_views_answer_counted_once(
    settings: SettingsWrapper,
    stacks: Callable[[], Stacks],
    trader: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    rate_limits: bool,
) -> None:
    """After the verdict the view takes it (counted once); before any, the view answers alone."""
    settings.RATE_LIMITS_ENABLED = rate_limits
    built = stacks()
    built.get(*POSITIONS, fast=False, headers=trader)
    drf = built.get(*POSITIONS, fast=False, headers=trader)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("injected into the fast path")

    monkeypatch.setattr(fast_reads, "key_account_joined", broken)
    with caplog.at_level(logging.ERROR):
        failed = built.get(*POSITIONS, fast=True, headers=trader)
    assert built.fast.answered == 0
    same_answer(drf, failed, consumed=1 if rate_limits else 0)
    assert "injected into the fast path" in caplog.text
    assert not connection.in_atomic_block or connection.savepoint_ids == []


# --- The connection, as under the view ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_fast_answer_closes_a_connection_past_its_age_as_the_view_does(
    assets: None, make_account: Callable[..., Account], l1_clock: ManualClock
) -> None:
    """``request_finished`` runs: with CONN_MAX_AGE 0 the connection is closed after the answer."""
    with time_machine.travel(AT, tick=False):
        headers = _trader_headers(make_account())
        built = Stacks()
        built.get(*ACCOUNT, fast=False, headers=headers, connection_signals=True)
        connection.close()
        kept = connection.settings_dict["CONN_MAX_AGE"]
        connection.settings_dict["CONN_MAX_AGE"] = 0  # read when the connection opens
        try:
            answer = built.get(*ACCOUNT, fast=True, headers=headers, connection_signals=True)
            assert built.fast.answered == 1 and answer.status_code == 200
            assert connection.connection is None
        finally:
            connection.settings_dict["CONN_MAX_AGE"] = kept


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_terminated_backend_is_replaced_before_a_fast_answer(
    assets: None, make_account: Callable[..., Account], l1_clock: ManualClock
) -> None:
    with time_machine.travel(AT, tick=False):
        headers = _trader_headers(make_account())
        built = Stacks()
        built.get(*OPEN_ORDERS, fast=False, headers=headers, connection_signals=True)
        expected = built.get(*OPEN_ORDERS, fast=True, headers=headers, connection_signals=True)
        terminated = int(connection.connection.info.backend_pid)
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [terminated])
            # Bounded by the count, not a clock: the server ends the backend within milliseconds.
            for _ in range(500):
                if not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [terminated]
                ).fetchone():
                    break
                time.sleep(0.01)
        answer = built.get(*OPEN_ORDERS, fast=True, headers=headers, connection_signals=True)
        assert built.fast.answered == 2 and answer.status_code == 200, answer.body
        same_answer(expected, answer)
        assert int(connection.connection.info.backend_pid) != terminated


# --- What the fast path assumes of the views -------------------------------------------------------


@pytest.mark.parametrize(
    "view,path", [(AccountView, "/v2/account"), (PositionsView, "/v2/positions"), (OrdersView, "/v2/orders")]
)
def test_the_views_authenticate_permit_and_limit_as_the_fast_path_assumes(
    view: type[TradingAPIView], path: str
) -> None:
    """As the cached reads' views, and the verdict asked before the handler (these views do not
    defer it, ``rate_verdict_after_handler``), which the fast path asks first too."""
    check_the_view_authenticates_permits_and_limits_as_assumed(view, path, "trading/api/fast_reads.py")
    assert view.rate_verdict_after_handler is False, (
        f"{view.__name__} changed: re-check trading/api/fast_reads.py"
    )


# --- Review fixes: the outage, the handed-on counts, what the earlier tests could not catch --------


def _outage_attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts this thread's connection attempts (Django's ``get_new_connection``, which an
    unreachable database fails)."""
    attempts: list[int] = []
    opened = connection.get_new_connection

    def counted(params: Any) -> Any:
        attempts.append(1)
        return opened(params)

    monkeypatch.setattr(connection, "get_new_connection", counted)
    return attempts


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rate_limits", [True, False])
@pytest.mark.parametrize("path,query", [ACCOUNT, OPEN_ORDERS])
def test_a_database_outage_is_the_views_503_after_one_connection_attempt(
    settings: SettingsWrapper,
    assets: None,
    make_account: Callable[..., Account],
    l1_clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    rate_limits: bool,
    path: str,
    query: str,
) -> None:
    """The statement cannot connect: the view answers its own 503 (status, body, every header,
    the verdict counted once) without trying the database again, and logs its one warning, no
    traceback."""
    settings.RATE_LIMITS_ENABLED = rate_limits
    settings.BENCHMARK_ENDPOINTS = True
    with time_machine.travel(AT, tick=False):
        headers = _trader_headers(make_account())
        built = Stacks()
        assert built.get(path, query, fast=False, headers=headers).status_code == 200  # L1 holds the key
        attempts = _outage_attempts(monkeypatch)
        answers = {}
        logged = {}
        with database_pointed_at(**unreachable()):
            for fast in (False, True):
                attempts.clear()
                caplog.clear()
                with caplog.at_level(logging.INFO):
                    answers[fast] = built.get(path, query, fast=fast, headers=headers)
                assert len(attempts) == 1, (fast, len(attempts))
                logged[fast] = [(r.name, r.levelno, r.exc_info is None) for r in caplog.records]
        # The view's warning (and Django's line for a 5xx), no traceback: the view alone's lines.
        assert ("trading.api.errors", logging.WARNING, True) in logged[False]
        assert logged[True] == logged[False]
        assert all(no_traceback for _, _, no_traceback in logged[True])
        assert built.fast.answered == 0
        assert answers[True].status_code == 503, answers[True].body
        same_answer(answers[False], answers[True], consumed=1 if rate_limits else 0)
        assert built.get(path, query, fast=True, headers=headers).status_code == 200
        assert built.fast.answered == 1


def _normalised(body: bytes) -> Any:
    """An answer's JSON with its own ids (UUIDs in order of appearance, the account number)
    replaced, so two equal accounts' answers compare."""
    names: dict[str, str] = {}

    def walk(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {name: walk(item, name) for name, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        if key == "account_number":
            return "N"
        if isinstance(value, str) and _UUID.fullmatch(value):
            return names.setdefault(value, f"id{len(names)}")
        return value

    return walk(json.loads(body))


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.mark.django_db
@pytest.mark.parametrize("path,query", READS)
def test_the_settling_read_handed_on_is_the_settling_read_of_the_view_alone(
    settings: SettingsWrapper,
    assets: None,
    organiser: User,
    make_account: Callable[..., Account],
    l1_clock: ManualClock,
    path: str,
    query: str,
) -> None:
    """Two equal accounts in a game that ended: one settled through the fast path (handed on),
    the other by the view alone. The same answer, ``X-DB-Queries`` and database series: the
    statements the fast path ran before handing on count with the view's."""
    settings.BENCHMARK_ENDPOINTS = True
    start = AT - dt.timedelta(days=6)
    game = class_game(organiser=organiser, start=start)
    with time_machine.travel(start - dt.timedelta(hours=1), tick=False):  # equal creation times
        players = [
            services.game_join(
                game_id=game.pk, user=make_account().user, now=start - dt.timedelta(minutes=30)
            ).account
            for _ in range(2)
        ]
    with time_machine.travel(start + dt.timedelta(hours=1), tick=False):
        keys = [_trader_headers(player) for player in players]
    route = fast_reads.POLLED_READS[path].route
    series = {"db_request_queries_sum", "db_request_queries_count", "db_queries_total"}

    def values() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        metrics_flush()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for sample in metrics_snapshot()
            if sample.name in series
        }

    with time_machine.travel(AT, tick=False):  # after the game's end
        built = Stacks()
        settled = {}
        moved = {}
        spans = {}
        for headers, fast in zip(keys, (False, True), strict=True):
            built.get("/v2/clock", fast=False, headers=headers)  # L1 holds the key; nothing settled
            before = values()
            began = time.perf_counter()  # real time: time-machine moves neither Redis's clock nor this
            settled[fast] = built.get(path, query, fast=fast, headers=headers)
            spans[fast] = (began, time.perf_counter())
            after = values()
            moved[fast] = {
                key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key)
            }
        assert built.fast.answered == 0
        assert Order.objects.filter(account__in=players, status="new").count() == 0
    view, handed = settled[False], settled[True]
    assert handed.status_code == view.status_code == 200
    assert int(view.headers["X-DB-Queries"]) > 2  # the close's statements and the read again
    # Two accounts' budgets, each one request in: each reset is its own request's moment on Redis's
    # clock plus the window, so they lie apart by the real time between the two requests' limiter
    # checks (a loaded machine stretches it past a second), give or take the rounding up to seconds.
    apart = (spans[True][0] - spans[False][1], spans[True][1] - spans[False][0])
    assert [name for name, _ in handed.header_list] == [name for name, _ in view.header_list]
    for (name, value), (_, expected) in zip(handed.header_list, view.header_list, strict=True):
        if name == "X-RateLimit-Reset":
            assert math.floor(apart[0]) - 1 <= int(value) - int(expected) <= math.ceil(apart[1]) + 1
        else:
            assert value == expected, name
    assert _normalised(handed.body) == _normalised(view.body)
    assert moved[True][("db_request_queries_sum", (("route", route),))] == int(view.headers["X-DB-Queries"])
    assert {key: value for key, value in moved[True].items() if key[0] != "db_queries_total"} == {
        key: value for key, value in moved[False].items() if key[0] != "db_queries_total"
    }


@pytest.mark.django_db
def test_several_open_orders_are_listed_in_the_views_order_up_to_its_default_limit(
    stacks: Callable[[], Stacks], assets: None, make_account: Callable[..., Account]
) -> None:
    """One more open order than the list's default limit, each placed a second after the last:
    the fast answer lists the newest ``limit`` of them, newest first, as the view."""
    limit = ORDERS_POLL_QUERY["limit"]
    account = make_account()
    client = key_client(account)
    headers = {"APCA-API-KEY-ID": client.key_id, "APCA-API-SECRET-KEY": client.secret}
    placed = []
    for second in range(limit + 1):
        with time_machine.travel(AT - dt.timedelta(minutes=5) + dt.timedelta(seconds=second), tick=False):
            answer = post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")
            assert answer.status_code == 200, answer.content
            placed.append(answer.json()["id"])
    built = stacks()
    for path, query in (OPEN_ORDERS, ORDERS):
        built.fast.answered = 0
        check_answered_as_the_view(built, path, query, headers)
        listed = [order["id"] for order in built.get(path, query, fast=True, headers=headers).json()]
        assert listed == placed[::-1][:limit]


@pytest.mark.django_db(transaction=True)
def test_a_connection_past_its_age_is_replaced_before_a_fast_answer(
    assets: None,
    make_account: Callable[..., Account],
    l1_clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``request_started`` runs first: a connection that outlived CONN_MAX_AGE since a request
    that sent no ``request_finished`` is closed, and the statement runs on a fresh one. Django's
    connection clock (``time.monotonic`` in its base backend) is moved, not waited for."""
    with time_machine.travel(AT, tick=False):
        headers = _trader_headers(make_account())
        built = Stacks()
        expected = built.get(*ACCOUNT, fast=False, headers=headers, connection_signals=True)
        kept = connection.settings_dict["CONN_MAX_AGE"]
        connection.close()
        connection.settings_dict["CONN_MAX_AGE"] = 60  # read when the connection opens
        try:
            built.get(*ACCOUNT, fast=True, headers=headers)  # no request signals: nothing closed
            old = connection.connection
            assert old is not None
            monkeypatch.setattr(
                base_backend, "time", SimpleNamespace(monotonic=lambda: real_monotonic() + 61)
            )
            opened: list[object] = []

            def created(sender: Any, connection: Any, **kwargs: Any) -> None:
                opened.append(connection.connection)

            connection_created.connect(created)
            try:
                answer = built.get(*ACCOUNT, fast=True, headers=headers, connection_signals=True)
            finally:
                connection_created.disconnect(created)
            assert built.fast.answered == 2 and answer.status_code == 200, answer.body
            same_answer(expected, answer, consumed=2)
            assert len(opened) == 1 and opened[0] is not old  # the statement's connection, fresh
        finally:
            connection.close()
            connection.settings_dict["CONN_MAX_AGE"] = kept


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_backend_terminated_after_a_request_without_request_finished_is_replaced(
    assets: None, make_account: Callable[..., Account], l1_clock: ManualClock
) -> None:
    """The last request sent no ``request_finished`` (its health check stands done): only
    ``request_started`` asks for the next check, which finds the backend gone and reconnects."""
    with time_machine.travel(AT, tick=False):
        headers = _trader_headers(make_account())
        built = Stacks()
        built.get(*OPEN_ORDERS, fast=False, headers=headers, connection_signals=True)
        expected = built.get(*OPEN_ORDERS, fast=True, headers=headers)  # no request signals
        terminated = int(connection.connection.info.backend_pid)
        with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [terminated])
            for _ in range(500):  # bounded by the count: the server ends it within milliseconds
                if not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", [terminated]
                ).fetchone():
                    break
                time.sleep(0.01)
        answer = built.get(*OPEN_ORDERS, fast=True, headers=headers, connection_signals=True)
        assert built.fast.answered == 2 and answer.status_code == 200, answer.body
        same_answer(expected, answer)
        assert int(connection.connection.info.backend_pid) != terminated


@pytest.mark.django_db
def test_head_is_answered_as_the_view_answers_it(
    stacks: Callable[[], Stacks], trader: dict[str, str]
) -> None:
    built = stacks()
    built.get(*ACCOUNT, fast=False, headers=trader)
    for path, query in READS:
        drf, fast = (
            wsgi_call("HEAD", path, query=query, headers=trader, application=application)
            for application in (built.drf_only, built.with_fast)
        )
        assert fast.status_code == 200
        same_answer(drf, fast)
    assert built.fast.answered == 0


@pytest.mark.django_db
def test_with_atomic_requests_the_fast_path_is_off(
    stacks: Callable[[], Stacks], trader: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django runs each view in a transaction then; the fast path would not."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    built = Stacks(fast_on=False)
    for path, query in READS:
        built.get(path, query, fast=False, headers=trader)
        drf = built.get(path, query, fast=False, headers=trader)
        fast = built.get(path, query, fast=True, headers=trader)
        same_answer(drf, fast)
    assert built.fast.answered == 0
