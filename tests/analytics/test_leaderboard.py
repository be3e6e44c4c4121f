"""Leaderboard, account analytics and symbol stats: correct figures, bounded queries, staleness."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from decimal import Decimal
from typing import Any, cast

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from analytics import selectors, services
from analytics.models import AccountAnalytics, AccountEquityDay, LeaderboardSnapshot, SymbolStats
from tests.builders import set_quote, shares
from tests.clock import frozen_at, new_york
from trading import calendar, services as trading
from trading.models import Account, Asset, DailyBar, Position
from trading.selectors import account_summary
from trading.units import UNITS_PER_CENT

pytestmark = pytest.mark.django_db


def _buy(account: Account, symbol: str, qty: int | Decimal) -> None:
    order = trading.order_place(
        account_id=account.pk,
        request=trading.OrderRequest(
            symbol=symbol, qty=shares(qty), side="buy", type="market", time_in_force="day"
        ),
    )
    assert order.status == "filled", order.status


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> dict[str, Asset]:
    return {
        "AAPL": make_asset("AAPL", price="100.00", sector="Technology"),
        "XOM": make_asset("XOM", price="50.00", sector="Energy"),
    }


def test_returns_and_ranks_follow_equity_and_exclude_added_cash(
    market: dict[str, Asset], make_account: Callable[..., Account], django_capture_on_commit_callbacks
) -> None:
    winner, loser, idle = (make_account(cash=1_000_000) for _ in range(3))
    _buy(winner, "AAPL", 10)
    _buy(loser, "XOM", 10)
    set_quote("AAPL", price="110.00")
    set_quote("XOM", price="40.00")
    trading.account_grant_cash(account_id=idle.pk, amount_cents=500_000)  # not a gain

    with django_capture_on_commit_callbacks(execute=True):
        result = services.leaderboard_refresh()
    assert result.accounts == 3
    board = selectors.leaderboard_get_or_refresh(period="overall", now=result.as_of)
    assert [row["username"] for row in board["entries"]] == [
        winner.user.username,
        idle.user.username,
        loser.user.username,
    ]
    # Other players see names, never account numbers (the staff CSV keeps them).
    assert all("account_number" not in row for row in board["entries"])
    first, second, third = board["entries"]
    assert (first["rank"], second["rank"], third["rank"]) == (1, 2, 3)
    # Bought at the ask ($100.01), now bid/last $110: equity = cash + 10 * $110.
    winner.refresh_from_db()
    assert first["equity"] == f"{(winner.cash_cents + 110_000) / 100:.2f}"
    assert first["return_pct"] == pytest.approx(
        (winner.cash_cents + 110_000 - 1_000_000) / 1_000_000 * 100, abs=1e-4
    )
    assert second["return_pct"] == 0.0 and second["baseline"] == "15000.00"
    assert third["return_pct"] < 0
    # The daily board agrees with the trading API's last_equity for an account that traded today.
    daily = selectors.leaderboard_get_or_refresh(period="daily", now=result.as_of)
    by_name = {row["username"]: row for row in daily["entries"]}
    summary = account_summary(account=Account.objects.get(pk=loser.pk), now=result.as_of)
    assert by_name[loser.user.username]["baseline"] == f"{summary.last_equity / UNITS_PER_CENT / 100:.2f}"


def test_the_global_board_ranks_default_accounts_only(
    market: dict[str, Asset], make_account: Callable[..., Account], django_capture_on_commit_callbacks
) -> None:
    """A user's further account is not a second entry on the global boards, however well it does;
    it still gets its own analytics, without a global rank."""
    mine, rival = make_account(cash=1_000_000), make_account(cash=1_000_000)
    further = trading.account_create(user=mine.user, cash_cents=1_000_000)
    _buy(further, "AAPL", 10)
    set_quote("AAPL", price="200.00")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.leaderboard_refresh()
        services.account_analytics_refresh()
    assert result.accounts == 2
    for period in ("overall", "daily"):
        entries = selectors.leaderboard_get_or_refresh(period=period, now=result.as_of)["entries"]
        assert sorted(row["username"] for row in entries) == sorted([mine.user.username, rival.user.username])
    analytics = {row.account_id: row for row in AccountAnalytics.objects.all()}
    assert analytics[further.pk].rank is None
    assert (analytics[further.pk].return_since_reset or 0) > 0
    assert {analytics[mine.pk].rank, analytics[rival.pk].rank} == {1, 2}


def test_reset_measures_from_the_reset(
    market: dict[str, Asset], make_account: Callable[..., Account], django_capture_on_commit_callbacks
) -> None:
    account = make_account(cash=1_000_000)
    _buy(account, "AAPL", 10)
    set_quote("AAPL", price="50.00")  # a big loss before the reset
    trading.account_reset(account_id=account.pk)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.leaderboard_refresh()
    entry = selectors.leaderboard_get_or_refresh(period="overall", now=result.as_of)["entries"][0]
    assert entry["return_pct"] == 0.0
    assert entry["baseline"] == entry["equity"]


def test_leaderboard_is_never_older_than_its_bound(
    market: dict[str, Asset],
    make_account: Callable[..., Account],
    settings: SettingsWrapper,
    django_capture_on_commit_callbacks,
) -> None:
    """Property 11: a board older than LEADERBOARD_MAX_STALENESS_S when read is recomputed first."""
    settings.LEADERBOARD_MAX_STALENESS_S = 5
    account = make_account(cash=1_000_000)
    t0 = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        services.leaderboard_refresh(now=t0)
        fresh = selectors.leaderboard_get_or_refresh(period="overall", now=t0 + dt.timedelta(seconds=4))
        assert fresh["as_of"] == t0.isoformat()  # within the bound: the stored board, as it was
        _buy(account, "AAPL", 10)
        set_quote("AAPL", price="120.00")
        for seconds in (5.5, 9, 60):
            now = t0 + dt.timedelta(seconds=seconds)
            board = selectors.leaderboard_get_or_refresh(period="overall", now=now)
            assert now - dt.datetime.fromisoformat(board["as_of"]) <= dt.timedelta(seconds=5)
        assert board["entries"][0]["return_pct"] > 0  # recomputed from the new prices
    # Every read past the bound recomputed once; SNAPSHOTS_KEPT bounds what is stored.
    assert LeaderboardSnapshot.objects.filter(period="overall").count() == services.SNAPSHOTS_KEPT


def _daily_board_around(day: dt.date, make_asset: Callable[..., Asset]) -> str:
    """An account opened two days before ``day`` that bought 10 AAPL at 100.01 at 15:00 on it;
    AAPL closed ``day`` at 105.00 and trades at 110.00 now. Returns its owner's username (what the
    board shows of an account)."""
    user = get_user_model().objects.create_user(username="daily", password="pw-123456!")
    start = calendar.day_start(day)
    account = trading.account_open(user=user, cash_cents=1_000_000, now=start - dt.timedelta(days=2))
    make_asset("AAPL", price="100.00")
    order = trading.order_place(
        account_id=account.pk,
        request=trading.OrderRequest(
            symbol="AAPL", qty=shares(10), side="buy", type="market", time_in_force="day"
        ),
        now=start + dt.timedelta(hours=15),
    )
    assert order.status == "filled"
    DailyBar.objects.create(
        symbol="AAPL", start=start, open_units=1_000_000, high_units=1_100_000, low_units=1_000_000,
        close_units=1_050_000, volume=10, trade_count=1, vwap_units=1_000_000,
    )  # fmt: skip
    set_quote("AAPL", price="110.00", at=start + dt.timedelta(hours=23, minutes=59))
    return user.username


@pytest.mark.parametrize(
    ("now", "day", "trading_day", "baseline"),
    [
        frozen_at(
            new_york(*ymd, 23, 59, 59),
            dt.date(*ymd),
            dt.date(*ymd).isoformat(),
            "10000.00",
            name=f"{name}-before",
        )
        for name, ymd in [
            ("midnight", (2026, 3, 4)),
            ("month-end", (2026, 4, 30)),
            ("dst", (2026, 3, 7)),
            ("dst-end", (2026, 10, 31)),
        ]
    ]
    + [
        frozen_at(
            new_york(*next_ymd, 0, 0, 1),
            dt.date(*ymd),
            dt.date(*next_ymd).isoformat(),
            "10049.90",
            name=f"{name}-after",
        )
        for name, ymd, next_ymd in [
            ("midnight", (2026, 3, 4), (2026, 3, 5)),
            ("month-end", (2026, 4, 30), (2026, 5, 1)),
            ("dst", (2026, 3, 7), (2026, 3, 8)),
            ("dst-end", (2026, 10, 31), (2026, 11, 1)),
        ]
    ],
)
def test_the_daily_board_starts_a_new_day_at_new_york_midnight(
    now: dt.datetime, day: dt.date, trading_day: str, baseline: str, make_asset: Callable[..., Asset]
) -> None:
    """Before midnight the day's baseline is its start (cash only); a second after it, the
    equity at the day's close (cash 8,999.90 plus 10 x 105.00). Equity is 8,999.90 + 10 x 110."""
    username = _daily_board_around(day, make_asset)

    board = selectors.leaderboard_get_or_refresh(period="daily")

    assert board["trading_day"] == trading_day
    (entry,) = board["entries"]
    assert entry["username"] == username
    assert (entry["equity"], entry["baseline"]) == ("10099.90", baseline)
    assert entry["return_pct"] == pytest.approx(
        (10_099.90 - float(baseline)) / float(baseline) * 100, abs=1e-4
    )


def test_a_read_with_no_board_yet_computes_one(
    market: dict[str, Asset], make_account: Callable[..., Account]
) -> None:
    make_account()
    board = selectors.leaderboard_get_or_refresh(period="daily")
    assert board["account_count"] == 1 and len(board["entries"]) == 1


def _seed_accounts(count: int, assets: list[Asset], *, tag: str = "a") -> None:
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"bulk-{tag}{index}") for index in range(count)
    )
    accounts = Account.objects.bulk_create(
        Account(user=user, is_default=True, account_number=f"PA{tag}{index:08d}", cash_cents=1_000_000)
        for index, user in enumerate(users)
    )
    Position.objects.bulk_create(
        Position(account=account, asset=asset, qty=shares(index + 1), cost_basis_cents=100_00 * (index + 1))
        for account in accounts
        for index, asset in enumerate(assets)
    )


def _queries(action: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        action()
    return len(captured)


def test_refresh_takes_the_same_queries_for_one_account_or_many(market: dict[str, Asset]) -> None:
    """Property 13 (writer side): precomputation is batch loads, not a loop over accounts."""
    assets = list(market.values())
    _seed_accounts(1, assets)
    small = (
        _queries(services.leaderboard_refresh),
        _queries(services.account_analytics_refresh),
        _queries(services.symbol_stats_refresh),
    )
    _seed_accounts(60, assets, tag="b")
    large = (
        _queries(services.leaderboard_refresh),
        _queries(services.account_analytics_refresh),
        _queries(services.symbol_stats_refresh),
    )
    assert small == large, (small, large)
    assert AccountAnalytics.objects.count() == 61
    assert AccountEquityDay.objects.count() == 61
    assert SymbolStats.objects.get(symbol="AAPL").holders == 61


@pytest.mark.parametrize("accounts", [1, 200])
def test_endpoints_take_a_pinned_number_of_queries(
    accounts: int,
    market: dict[str, Asset],
    make_account: Callable[..., Account],
    key_client: Callable[[Account], APIClient],
    settings: SettingsWrapper,
    django_assert_num_queries,
) -> None:
    """Property 13: served from precomputed rows, in the same queries for 1 or 200 accounts.

    Counted with caching off, i.e. the database path every cache miss takes: the API-key lookup
    and its last-used stamp (2), the account (1), then the endpoint's own reads.
    """
    settings.CACHE_ENABLED = False
    caller = make_account()
    _seed_accounts(accounts - 1, list(market.values()))
    services.analytics_refresh_all()
    services.symbol_stats_refresh()
    client = key_client(caller)
    client.get("/v2/clock")  # the key is verified and cached once, as in steady state
    with django_assert_num_queries(1 + 2):  # account + snapshot + entries
        response = client.get("/v2/leaderboard", {"limit": 500})
    assert response.status_code == 200 and len(response.json()["entries"]) == accounts
    with django_assert_num_queries(1 + 1):
        assert client.get("/v2/analytics/account").status_code == 200
    with django_assert_num_queries(1 + 1):
        assert client.get("/v2/analytics/symbols/aapl").json()["holders"] == accounts - 1


def test_fractional_holdings_count_exactly_in_the_board_and_the_stats(
    market: dict[str, Asset],
    make_account: Callable[..., Account],
    key_client: Callable[[Account], APIClient],
    django_capture_on_commit_callbacks,
) -> None:
    """A dollar-sized account: equity from 2.5 and 0.333333333 shares, and net shares held to the unit."""
    account = make_account(cash=1_000_000)
    _buy(account, "AAPL", Decimal("2.5"))
    _buy(account, "XOM", Decimal("0.333333333"))
    set_quote("AAPL", price="110.00")
    set_quote("XOM", price="60.00")
    with django_capture_on_commit_callbacks(execute=True):
        result = services.leaderboard_refresh()
    board = selectors.leaderboard_get_or_refresh(period="overall", now=result.as_of)
    (entry,) = board["entries"]
    account.refresh_from_db()
    # 2.5 x $110 = $275.00 and 0.333333333 x $60 = $19.99999998 -> $20.00 (to the cent).
    assert entry["equity"] == f"{(account.cash_cents + 27_500 + 2_000) / 100:.2f}"
    summary = account_summary(account=account, now=result.as_of)
    assert summary.long_market_value == 2_750_000 + 200_000  # price units, half-even per holding
    client = key_client(account)
    assert client.get("/v2/analytics/symbols/XOM").json()["net_shares_held"] == "0.333333333"
    assert client.get("/v2/analytics/symbols/AAPL").json()["net_shares_held"] == "2.5"


def test_endpoint_shapes_and_bad_input(
    market: dict[str, Asset], make_account: Callable[..., Account], key_client: Callable[[Account], APIClient]
) -> None:
    account = make_account(cash=1_000_000)
    _buy(account, "AAPL", 10)
    _buy(account, "XOM", 10)
    client = key_client(account)
    board = client.get("/v2/leaderboard", {"period": "daily", "limit": "1"}).json()
    assert board["period"] == "daily" and board["as_of"] and len(board["entries"]) == 1
    analytics = client.get("/v2/analytics/account").json()
    assert analytics["account_number"] == account.account_number
    assert set(analytics["sector_allocation"]) == {"Energy", "Technology"}
    assert sum(analytics["sector_allocation"].values()) == pytest.approx(1.0)
    assert analytics["rank"] == 1 and analytics["win_rate"] is None
    stats = client.get("/v2/analytics/symbols/XOM").json()
    assert stats["symbol"] == "XOM" and stats["fills_today"] == 1 and stats["net_shares_held"] == "10"

    for path, params, status in (
        ("/v2/leaderboard", {"period": "weekly"}, 422),
        ("/v2/leaderboard", {"limit": 0}, 422),
        ("/v2/leaderboard", {"limit": 501}, 422),
        ("/v2/leaderboard", {"limit": "ten"}, 422),
        ("/v2/analytics/symbols/NOPE", {}, 404),
        ("/v2/leaderboard.csv", {}, 403),
    ):
        response = client.get(path, params)
        assert response.status_code == status, (path, params, response.content)
        assert response.json()["code"] == status * 100000 + 10000
    assert APIClient().get("/v2/leaderboard").status_code == 401


def test_staff_export_the_whole_board_as_csv(
    market: dict[str, Asset], make_account: Callable[..., Account]
) -> None:
    for name in ("ada", "-bob", "@cy"):
        make_account(username=name)
    services.leaderboard_refresh()
    staff = get_user_model().objects.create_user(username="ops", password="pw-123456!", is_staff=True)
    client = APIClient()
    client.force_login(staff)
    response = client.get("/v2/leaderboard.csv", {"period": "overall"})
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    # APIClient's stubs type every response as a DRF Response; this view returns a (sync)
    # StreamingHttpResponse, whose streaming_content the stubs can't narrow to Iterator[bytes].
    streamed = cast(Any, response).streaming_content
    rows = list(csv.reader(io.StringIO(b"".join(streamed).decode())))
    assert rows[0][:3] == ["rank", "account_number", "username"]
    assert [row[0] for row in rows[1:]] == ["1", "2", "3"]
    # Usernames a spreadsheet would run as formulas are written as text (trading/api/csv_export.py).
    assert sorted(row[2] for row in rows[1:]) == ["'-bob", "'@cy", "ada"]
    assert client.get("/v2/leaderboard.csv", {"period": "yearly"}).status_code == 422


def test_risk_figures() -> None:
    day = dt.date(2025, 3, 3)
    points = [(day + dt.timedelta(days=i), equity, 0) for i, equity in enumerate([100, 110, 99, 99, 120])]
    points[3] = (points[3][0], 149, 50)  # 50 added that day: no return
    figures = services.risk_figures(points=points, today=points[-1][0])
    assert figures.max_drawdown == pytest.approx(1 - 0.9 * (120 / 149))  # from the peak at 110
    assert figures.return_1w == pytest.approx(1.1 * 0.9 * 1.0 * (120 / 149) - 1)
    assert figures.volatility is not None and figures.volatility > 0
    assert figures.sharpe is not None
    assert services.risk_figures(points=points[:1], today=day).volatility is None
