"""GET /v2/dashboard/bootstrap: the documented shape, Alpaca parts equal to their endpoints' bodies,
a market table in a constant number of queries (Property 2), prices and sparklines, auth."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from analytics import services as analytics_services
from analytics.dashboard import SPARK_POINTS, dashboard_assets_load
from analytics.dashboard_api import DashboardAssetSerializer, DashboardBootstrapSerializer
from analytics.models import Statement
from config.cache import cache_manager_reset
from tests.builders import add_minute_bar_ramps, set_quote
from tests.clock import BOUNDARY_INSTANTS, boundary_instants, frozen_at
from tests.trading.api_support import assert_alpaca_error, buy, key_client, post_order
from trading import selectors as trading_selectors, services as trading_services
from trading.models import Account, Asset, DailyBar, MinuteBar, Watchlist

pytestmark = pytest.mark.django_db

MakeAsset = Callable[..., Asset]
MakeAccount = Callable[..., Account]
URL = "/v2/dashboard/bootstrap"
TOP_KEYS = {
    "as_of",
    "user",
    "account",
    "positions",
    "orders",
    "fills",
    "assets",
    "watchlist",
    "leaderboard",
    "game",
    "analytics",
    "statements",
    "streams",
    "config",
}
# Usernames, never account numbers: every player sees the board.
LEADERBOARD_ENTRY_FIELDS = {"rank", "username", "equity", "baseline", "return_pct"}
ASSET_KEYS = {
    "symbol",
    "name",
    "exchange",
    "sector",
    "tradable",
    "halted",
    "last",
    "prev_close",
    "bid",
    "ask",
    "volume",
    "spark",
}


def _session(account: Account) -> APIClient:
    client = APIClient()
    client.force_login(account.user)
    return client


def _bootstrap(client: APIClient) -> dict[str, Any]:
    response = client.get(URL)
    assert response.status_code == 200, response.content
    return dict(response.json())


def _daily_bar(symbol: str, start: dt.datetime, *, close_units: int, volume: int) -> None:
    DailyBar.objects.create(
        symbol=symbol,
        start=start,
        open_units=close_units,
        high_units=close_units,
        low_units=close_units,
        close_units=close_units,
        volume=volume,
        trade_count=1,
        vwap_units=close_units,
    )


def _statement(account: Account, period: str) -> Statement:
    start = dt.datetime.strptime(period, "%Y-%m").replace(tzinfo=dt.UTC)
    return Statement.objects.create(
        account=account,
        period=period,
        period_start=start,
        period_end=start + dt.timedelta(days=28),
        opening_cash_cents=10_000_000,
        closing_cash_cents=9_000_000,
        opening_equity_cents=10_000_000,
        closing_equity_cents=10_100_000,
        commissions_cents=0,
        realized_pl_cents=100_000,
        trade_count=2,
        pdf=f"statements/{account.pk}-{period}.pdf",
    )


# --- Shape ----------------------------------------------------------------------------------------


def test_the_answer_has_exactly_the_documented_shape(
    make_account: MakeAccount, make_asset: MakeAsset, settings: SettingsWrapper
) -> None:
    settings.STREAM_BATCH_WINDOW_MS = 100
    settings.ACCOUNT_SELF_RESET = True
    settings.DASHBOARD_PERF_REPORT_INTERVAL_S = 30.0
    settings.LEADERBOARD_MAX_STALENESS_S = 90.0
    make_asset("AAPL")
    account = make_account(username="alice")

    before = timezone.now()
    body = _bootstrap(_session(account))

    assert set(body) == TOP_KEYS == set(DashboardBootstrapSerializer().fields)
    assert dt.datetime.fromisoformat(body["as_of"]).utcoffset() == dt.timedelta(0)
    assert body["user"] == {"username": "alice", "is_staff": False}
    assert set(body["orders"]) == {"open", "recent"}
    assert set(body["assets"][0]) == ASSET_KEYS == set(DashboardAssetSerializer().fields)
    assert set(body["watchlist"]) == {"id", "name", "symbols"}
    assert body["streams"] == {
        "market_data": "ws://testserver:8001/v2/iex",
        "trade_updates": "ws://testserver:8001/stream",
        "dashboard": "ws://testserver:8001/ws/dashboard",
    }
    next_day_start = dt.datetime.fromisoformat(body["config"].pop("next_day_start"))
    assert body["config"] == {
        "batch_window_ms": 100,
        "self_reset": True,
        "perf_report_interval_s": 30.0,
        "leaderboard_poll_ms": 30_000,  # a third of the staleness bound
        "leaderboard_max_staleness_ms": 90_000,
    }
    assert body["game"] is None  # a default account: the global board
    # The next trading day's start, as day_boundary draws it: the page re-fetches there.
    assert next_day_start.utcoffset() == dt.timedelta(0)
    assert next_day_start > before
    assert trading_selectors.day_boundary(next_day_start) == next_day_start
    assert trading_selectors.day_boundary(next_day_start - dt.timedelta(microseconds=1)) == (
        trading_selectors.day_boundary(before)
    )
    assert body["analytics"] is None  # before the first analytics run
    assert body["statements"] == [] and body["positions"] == [] and body["fills"] == []


def test_alpaca_parts_equal_their_endpoints_bodies(
    make_account: MakeAccount, make_asset: MakeAsset, settings: SettingsWrapper
) -> None:
    settings.LEADERBOARD_MAX_STALENESS_S = 3600.0  # one board for the bootstrap and the endpoint
    make_asset("AAPL", price="100.00")
    make_asset("MSFT", price="300.00")
    account = make_account(username="bob")
    make_account(username="carol")
    bot = key_client(account)
    buy(bot, "AAPL", 10)
    buy(bot, "MSFT", 2)
    assert post_order(bot, symbol="AAPL", qty=1, type="limit", limit_price="50").status_code == 200
    canceled = post_order(bot, symbol="MSFT", qty=1, type="limit", limit_price="60").json()
    assert bot.delete(f"/v2/orders/{canceled['id']}").status_code == 204
    set_quote("AAPL", price="101.50")
    _statement(account, "2026-09")
    _statement(account, "2026-10")
    page = _session(account)

    body = _bootstrap(page)

    def endpoint(path: str) -> Any:
        response = page.get(path)
        assert response.status_code == 200, response.content
        return response.json()

    assert body["account"] == endpoint("/v2/account")
    assert body["positions"] == endpoint("/v2/positions")
    assert len(body["positions"]) == 2
    assert body["orders"]["open"] == endpoint("/v2/orders?status=open&limit=500")
    assert [order["status"] for order in body["orders"]["open"]] == ["new"]
    assert body["orders"]["recent"] == endpoint("/v2/orders?status=all&limit=50")
    assert len(body["orders"]["recent"]) == 4
    assert body["fills"] == endpoint("/v2/account/activities/FILL?page_size=50")
    assert len(body["fills"]) == 2
    assert body["leaderboard"] == endpoint("/v2/leaderboard?period=overall&limit=20")
    assert len(body["leaderboard"]["entries"]) == 2
    assert all(set(entry) == LEADERBOARD_ENTRY_FIELDS for entry in body["leaderboard"]["entries"])
    assert body["statements"] == endpoint("/v2/statements")
    assert [statement["period"] for statement in body["statements"]] == ["2026-10", "2026-09"]
    assert body["analytics"] is None

    analytics_services.account_analytics_refresh(account_ids=[account.pk])
    cache_manager_reset()
    assert _bootstrap(page)["analytics"] == endpoint("/v2/analytics/account")


def test_a_game_account_gets_its_games_board_and_a_default_account_the_global_one(
    make_account: MakeAccount, make_asset: MakeAsset, settings: SettingsWrapper
) -> None:
    settings.LEADERBOARD_MAX_STALENESS_S = 3600.0  # one board for the bootstrap and the endpoint
    make_asset("AAPL", price="100.00")
    teacher = make_account(username="teacher")
    ada = make_account(username="ada")
    make_account(username="bob")
    now = timezone.now()
    rules = trading_services.GameRules(
        name="Autumn class",
        starts_at=now - dt.timedelta(hours=1),
        ends_at=now + dt.timedelta(days=2),
        starting_cash_cents=1_000_000,
    )
    game = trading_services.game_create(organiser=teacher.user, rules=rules, now=now - dt.timedelta(hours=2))
    game_account = trading_services.game_join(game_id=game.pk, user=ada.user, now=now).account
    page = _session(ada)

    default_body = _bootstrap(page)
    assert default_body["game"] is None
    assert default_body["leaderboard"]["period"] == "overall"
    assert default_body["leaderboard"] == page.get("/v2/leaderboard?period=overall&limit=20").json()

    assert page.post("/account/select", {"account_id": str(game_account.pk)}).status_code == 302
    body = _bootstrap(page)
    assert body["account"]["id"] == str(game_account.pk)
    assert body["game"] == {
        "id": str(game.pk),
        "name": "Autumn class",
        "leaderboard_url": f"/v2/games/{game.pk}/leaderboard?limit=20",
    }
    board = page.get(body["game"]["leaderboard_url"]).json()
    assert body["leaderboard"] == board
    assert board["game_id"] == str(game.pk) and board["status"] == "live"
    assert [entry["username"] for entry in board["entries"]] == ["ada"]


def test_api_keys_work_too_and_an_anonymous_caller_is_refused(make_account: MakeAccount) -> None:
    account = make_account(username="dave")

    assert key_client(account).get(URL).status_code == 200
    body = assert_alpaca_error(APIClient().get(URL), 401)
    assert body["code"] == 40110000


def test_a_login_without_a_trading_account_is_forbidden() -> None:
    staff = get_user_model().objects.create_user(username="ops", is_staff=True)
    client = APIClient()
    client.force_login(staff)

    assert_alpaca_error(client.get(URL), 403)


def test_streams_follow_the_public_url_or_the_ws_port(
    make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    page = _session(make_account())
    settings.STREAM_PUBLIC_URL = "wss://sim.example.com"
    assert _bootstrap(page)["streams"]["market_data"] == "wss://sim.example.com/v2/iex"

    settings.STREAM_PUBLIC_URL = ""
    settings.WS_PORT = 9101
    response = page.get(URL, HTTP_HOST="127.0.0.1:9100")
    assert response.json()["streams"]["dashboard"] == "ws://127.0.0.1:9101/ws/dashboard"


def test_the_dashboard_watchlist_is_created_empty_once_and_follows_edits(
    make_account: MakeAccount, make_asset: MakeAsset
) -> None:
    make_asset("AAPL")
    account = make_account()
    page = _session(account)

    first = _bootstrap(page)["watchlist"]
    assert first["name"] == "Dashboard" and first["symbols"] == []
    added = page.post(f"/v2/watchlists/{first['id']}", {"symbol": "AAPL"}, format="json")
    assert added.status_code == 200, added.content

    again = _bootstrap(page)["watchlist"]
    assert again == {"id": first["id"], "name": "Dashboard", "symbols": ["AAPL"]}
    assert Watchlist.objects.filter(account=account).count() == 1


def test_openapi_schema_lists_the_dashboard_endpoints() -> None:
    schema = json.loads(APIClient().get("/v2/openapi.json").content)

    assert "get" in schema["paths"]["/v2/dashboard/bootstrap"]
    assert "post" in schema["paths"]["/v2/metrics/frontend"]


@pytest.mark.parametrize(
    ("now", "next_day_start"),
    [
        frozen_at(BOUNDARY_INSTANTS[name], next_day_start, name=name)
        for name, next_day_start in [
            ("before-midnight", "2026-03-05T05:00:00+00:00"),
            ("after-midnight", "2026-03-06T05:00:00+00:00"),
            ("month-end-evening", "2026-05-01T04:00:00+00:00"),
            ("spring-forward", "2026-03-09T04:00:00+00:00"),
            ("fall-back", "2026-11-02T05:00:00+00:00"),
        ]
    ],
)
def test_the_page_refreshes_at_the_coming_new_york_midnight(
    now: dt.datetime, next_day_start: str, make_account: MakeAccount
) -> None:
    body = _bootstrap(_session(make_account()))
    assert body["as_of"] == now.isoformat()
    assert body["config"]["next_day_start"] == next_day_start


# --- The market table -----------------------------------------------------------------------------


@boundary_instants()
def test_prices_volume_and_never_ticked_symbols(
    now: dt.datetime, make_asset: MakeAsset, make_account: MakeAccount
) -> None:
    today = trading_selectors.day_boundary(now)
    make_asset("AAPL", price="189.12", spread_units=100, sector="Technology")
    _daily_bar("AAPL", today - dt.timedelta(days=1), close_units=1_875_000, volume=999)
    _daily_bar("AAPL", today, close_units=1_891_200, volume=123_456)
    # Listed but never traded: no tick, no bars.
    Asset.objects.create(symbol="NEWCO", name="New Co", sector="Industrials", exchange="NYSE")
    Asset.objects.create(symbol="GONE", name="Gone Inc.", sector="Energy", active=False)

    assets = _bootstrap(_session(make_account()))["assets"]

    assert [asset["symbol"] for asset in assets] == ["AAPL", "NEWCO"]  # active ones, by symbol
    aapl, newco = assets
    assert aapl == {
        "symbol": "AAPL",
        "name": "AAPL Inc.",
        "exchange": "NYSE",
        "sector": "Technology",
        "tradable": True,
        "halted": False,
        "last": 189.12,
        "prev_close": 187.5,
        "bid": 189.11,
        "ask": 189.13,
        "volume": 123_456,
        "spark": [],
    }
    assert newco["last"] is None and newco["bid"] is None and newco["ask"] is None
    assert newco["prev_close"] is None and newco["volume"] == 0 and newco["spark"] == []


def test_sparklines_hold_the_last_30_minute_closes_oldest_first(make_asset: MakeAsset) -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    for symbol in ("AAPL", "MSFT", "XOM"):
        make_asset(symbol)
    # AAPL: 45 minutes of bars up to now; MSFT: only the last 5; XOM: stopped an hour ago.
    add_minute_bar_ramps({"AAPL": 1_000_000}, start=now - dt.timedelta(minutes=44), minutes=45)
    add_minute_bar_ramps({"MSFT": 3_000_000}, start=now - dt.timedelta(minutes=4), minutes=5)
    add_minute_bar_ramps({"XOM": 500_000}, start=now - dt.timedelta(minutes=90), minutes=20)

    table = {asset["symbol"]: asset for asset in dashboard_assets_load()}

    aapl = table["AAPL"]["spark"]
    newest_closes = (
        MinuteBar.objects.filter(symbol="AAPL").order_by("-start").values_list("close_units", flat=True)
    )
    assert len(aapl) == SPARK_POINTS == 30
    assert aapl == [close / 10_000 for close in reversed(newest_closes[:SPARK_POINTS])]
    assert aapl == sorted(aapl) and aapl[-1] == 1_004_600 / 10_000  # the newest bar's close
    assert table["MSFT"]["spark"] == [300.02, 300.03, 300.04, 300.05, 300.06]
    assert table["XOM"]["spark"] == []  # nothing in the last 30 minutes of the market


def _market(make_asset: MakeAsset, symbols: list[str]) -> None:
    now = timezone.now().replace(second=0, microsecond=0)
    today = trading_selectors.day_boundary(timezone.now())
    for index, symbol in enumerate(symbols):
        make_asset(symbol, price=f"{100 + index}.00")
        _daily_bar(symbol, today - dt.timedelta(days=1), close_units=1_000_000, volume=10)
        _daily_bar(symbol, today, close_units=1_010_000, volume=20)
    add_minute_bar_ramps(dict.fromkeys(symbols, 1_000_000), start=now - dt.timedelta(minutes=9), minutes=10)


def test_the_market_table_takes_the_same_queries_for_5_or_50_assets(
    make_asset: MakeAsset, django_assert_max_num_queries: Any
) -> None:
    """Property 2: the market table's queries do not grow with the number of assets."""
    symbols = [f"S{index:03d}" for index in range(50)]
    _market(make_asset, symbols[:5])
    with django_assert_max_num_queries(6):
        assert len(dashboard_assets_load()) == 5

    _market(make_asset, symbols[5:])
    with django_assert_max_num_queries(6):
        table = dashboard_assets_load()
    assert len(table) == 50
    assert all(row["last"] is not None and len(row["spark"]) == 10 and row["volume"] == 20 for row in table)


def test_the_whole_bootstrap_takes_the_same_queries_for_5_or_50_assets(
    make_asset: MakeAsset, make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    """Property 2: the first load's query count does not depend on the number of assets."""
    settings.CACHE_ENABLED = False  # count the database work itself, both times
    settings.LEADERBOARD_MAX_STALENESS_S = 3600.0
    cache_manager_reset()
    symbols = [f"S{index:03d}" for index in range(50)]
    _market(make_asset, symbols[:5])
    account = make_account()
    bot = key_client(account)
    buy(bot, "S000", 1)
    page = _session(account)
    _bootstrap(page)  # first use: creates the watchlist and the first leaderboard

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            body = _bootstrap(page)
        assert len(body["assets"]) in (5, 50)
        return len(queries)

    with_5 = count()
    _market(make_asset, symbols[5:])
    with_50 = count()

    assert with_50 == with_5, (with_5, with_50)


def test_the_market_table_is_served_from_the_cache_between_loads(
    make_asset: MakeAsset, make_account: MakeAccount
) -> None:
    make_asset("AAPL", price="100.00")
    page = _session(make_account())
    assert _bootstrap(page)["assets"][0]["last"] == 100.0

    set_quote("AAPL", price="105.00")

    # Within CACHE_TTLS["dashboard_assets"] the shared table is reused as it was.
    assert _bootstrap(page)["assets"][0]["last"] == 100.0
    cache_manager_reset()
    assert dashboard_assets_load()[0]["last"] == 105.0
