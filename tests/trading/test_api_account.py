"""Authentication, ``/v2/account``, its configurations, activities and portfolio history."""

from __future__ import annotations

import datetime as dt

import pytest
from alpaca.trading.enums import ActivityType
from alpaca.trading.models import (
    AccountConfiguration,
    NonTradeActivity,
    PortfolioHistory,
    TradeAccount,
    TradeActivity,
)
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import override_settings
from pytest_django.fixtures import Settings
from rest_framework.test import APIClient

from tests.builders import shares
from tests.clock import BOUNDARY_INSTANTS, NEW_YORK, ManualClock, boundary_instants, frozen_at, new_york
from tests.trading.api_support import (
    MakeAccount,
    MakeAsset,
    assert_alpaca_error,
    buy,
    key_client,
    post_order,
)
from trading import calendar, selectors, services
from trading.api.serializers import AccountSerializer
from trading.models import Account, ApiKey, Asset, CommissionPlan, DailyBar, MinuteBar, Order

pytestmark = pytest.mark.django_db


# --- Authentication -----------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["headers", "basic", "bearer"])
def test_every_way_alpaca_py_sends_a_key_is_accepted(account: Account, style: str) -> None:
    response = key_client(account, style=style).get("/v2/account")
    assert response.status_code == 200, response.content
    assert response.json()["id"] == str(account.pk)


def test_missing_credentials_are_401_in_alpaca_shape() -> None:
    response = APIClient().get("/v2/account")
    assert_alpaca_error(response, 401)
    assert response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_APCA_API_KEY_ID": "PKNOSUCHKEY", "HTTP_APCA_API_SECRET_KEY": "x"},
        {"HTTP_APCA_API_KEY_ID": "PKONLYTHEKEY"},
        {"HTTP_AUTHORIZATION": "Basic !!!notbase64"},
        {"HTTP_AUTHORIZATION": "Bearer an-oauth-token"},
    ],
)
def test_malformed_or_unknown_credentials_are_401(headers: dict[str, str]) -> None:
    client = APIClient()
    client.credentials(**headers)
    assert_alpaca_error(client.get("/v2/account"), 401)


def test_a_wrong_secret_is_refused_even_when_the_key_is_cached(account: Account) -> None:
    client = key_client(account)
    assert client.get("/v2/account").status_code == 200  # now cached
    assert cache.get(services.api_key_cache_key(client.key_id)) is not None

    client.credentials(HTTP_APCA_API_KEY_ID=client.key_id, HTTP_APCA_API_SECRET_KEY=client.secret + "x")
    assert_alpaca_error(client.get("/v2/account"), 401)


def test_a_revoked_key_is_refused_at_once(account: Account, django_capture_on_commit_callbacks) -> None:
    client = key_client(account)
    assert client.get("/v2/account").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        services.api_key_revoke(key_id=client.key_id)

    assert_alpaca_error(client.get("/v2/account"), 401)


def test_a_cached_key_skips_the_key_lookup(
    l1_clock: ManualClock, account: Account, django_assert_num_queries
) -> None:
    client = key_client(account)
    client.get("/v2/clock")
    assert ApiKey.objects.get(pk=client.key_id).last_used_at is not None
    # The key and its owner come from this process's memory: a view that needs no account row
    # takes no query at all.
    with django_assert_num_queries(0):
        assert client.get("/v2/clock").status_code == 200
    # Once that copy is gone (it lives at most a second) the key comes from Redis and the owner's
    # row takes one query; a view that needs the account loads it when it asks.
    l1_clock.advance(settings.CACHE_L1_MAX_SECONDS)
    with django_assert_num_queries(1):
        assert client.get("/v2/clock").status_code == 200
    assert client.get("/v2/account").json()["account_number"] == account.account_number


def test_a_deactivated_owner_is_refused_within_the_memory_bound(
    l1_clock: ManualClock, account: Account
) -> None:
    """The owner's row is kept in memory for at most CACHE_L1_MAX_SECONDS (an injected clock
    stands for the wait): after that a deactivated user's key is refused."""
    client = key_client(account)
    assert client.get("/v2/clock").status_code == 200
    get_user_model().objects.filter(pk=account.user_id).update(is_active=False)
    assert client.get("/v2/clock").status_code == 200  # within the bound: still the cached owner
    l1_clock.advance(settings.CACHE_L1_MAX_SECONDS)
    assert_alpaca_error(client.get("/v2/clock"), 401)


def test_session_login_works_and_csrf_is_enforced(make_account: MakeAccount, asset: Asset) -> None:
    account = make_account(username="dashboard-user")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="dashboard-user", password="pw-123456!")

    assert client.get("/v2/account").json()["id"] == str(account.pk)
    assert_alpaca_error(post_order(client, symbol="AAPL", qty=1), 403)
    assert not Order.objects.exists()


def test_a_user_without_an_account_is_forbidden() -> None:
    get_user_model().objects.create_user(username="staff", password="pw-123456!")
    client = APIClient()
    client.login(username="staff", password="pw-123456!")
    assert_alpaca_error(client.get("/v2/account"), 403)


# --- Account ------------------------------------------------------------------------------------


def test_account_parses_as_trade_account(account: Account, asset: Asset) -> None:
    client = key_client(account)
    buy(client, "AAPL", 10)  # 1,000.10 at the ask
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50")

    body = client.get("/v2/account").json()

    parsed = TradeAccount(**body)
    assert set(TradeAccount.model_fields) <= set(body)
    assert set(body) == set(AccountSerializer().fields)
    assert parsed.status.value == "ACTIVE" and parsed.currency == "USD"
    assert parsed.cash == "98999.90"
    assert parsed.buying_power == "98949.90"
    assert parsed.long_market_value == "1000.00"  # the last trade price, 100.00
    assert parsed.short_market_value == "0.00"
    assert parsed.equity == parsed.portfolio_value == "99999.90"
    # Opened today: the day's starting point is the opening deposit.
    assert parsed.last_equity == "100000.00"


@boundary_instants()
def test_last_equity_is_yesterdays_close(now: dt.datetime, make_asset: MakeAsset) -> None:
    today = calendar.trading_day_of(now)
    yesterday = calendar.day_start(today - dt.timedelta(days=1))
    user = get_user_model().objects.create_user(username="early", password="pw-123456!")
    account = services.account_open(user=user, cash_cents=1_000_000, now=yesterday - dt.timedelta(days=1))
    make_asset("AAPL", price="100.00")
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(10), side="buy", type="market", time_in_force="day"
        ),
        now=yesterday + dt.timedelta(hours=1),
    )
    DailyBar.objects.create(
        symbol="AAPL", start=yesterday, open_units=1_000_000, high_units=1_100_000, low_units=990_000,
        close_units=1_050_000, volume=1, trade_count=1, vwap_units=1_000_000,
    )  # fmt: skip

    body = TradeAccount(**key_client(account).get("/v2/account").json())

    # Cash after the buy (10,000 - 1,000.10) plus 10 shares at yesterday's close of 105.
    assert body.last_equity == "10049.90"
    assert body.equity == "9999.90"  # today's price, 100.00


# --- Configurations -----------------------------------------------------------------------------


def test_configurations_round_trip_through_the_sdk_model(account: Account) -> None:
    client = key_client(account)
    current = AccountConfiguration(**client.get("/v2/account/configurations").json())
    assert current.no_shorting is True and current.fractional_trading is True

    # alpaca-py's set_account_configurations sends model_dump(): every field, nulls included.
    changed = current.model_copy(update={"no_shorting": False, "suspend_trade": True})
    response = client.patch("/v2/account/configurations", changed.model_dump(mode="json"), format="json")

    assert response.status_code == 200, response.content
    updated = AccountConfiguration(**response.json())
    assert updated.no_shorting is False and updated.suspend_trade is True
    account.refresh_from_db()
    assert account.shorting_enabled and account.trading_suspended


def test_configuration_refuses_what_does_not_exist_here(account: Account) -> None:
    client = key_client(account)
    for body in ({"fractional_trading": False}, {"max_margin_multiplier": "4"}, {"trade_confirm_email": "x"}):
        assert_alpaca_error(client.patch("/v2/account/configurations", body, format="json"), 422)


def test_a_suspended_account_cannot_trade(account: Account, asset: Asset) -> None:
    client = key_client(account)
    client.patch("/v2/account/configurations", {"suspend_trade": True}, format="json")
    assert_alpaca_error(post_order(client, symbol="AAPL", qty=1), 403)
    assert TradeAccount(**client.get("/v2/account").json()).trading_blocked is True


# --- Activities ---------------------------------------------------------------------------------


def _activities(
    client: APIClient, path: str = "/v2/account/activities", /, **params: str | int
) -> list[dict]:
    response = client.get(path, params)
    assert response.status_code == 200, response.content
    return list(response.json())


def test_fills_fees_and_cash_movements_are_activities(account: Account, asset: Asset) -> None:
    CommissionPlan.objects.create(name="flat", per_order_cents=100)
    client = key_client(account)
    order = buy(client, "AAPL", 3)
    services.account_grant_cash(account_id=account.pk, amount_cents=5_000)

    items = _activities(client)

    types = [item["activity_type"] for item in items]
    # The fill and its fee share a timestamp; the row ids order them, in no meaningful way.
    assert types[0] == "JNLC" and sorted(types[1:3]) == ["FEE", "FILL"] and types[3] == "CSD"
    grant, deposit = items[0], items[3]
    fee, fill = sorted(items[1:3], key=lambda item: item["activity_type"])
    trade = TradeActivity(**fill)
    assert trade.activity_type == ActivityType.FILL
    assert str(trade.order_id) == order["id"]
    assert trade.price == 100.01 and trade.qty == 3 and trade.leaves_qty == 0 and trade.cum_qty == 3
    assert trade.symbol == "AAPL" and trade.type.value == "fill"
    assert NonTradeActivity(**fee).net_amount == -1.0
    assert NonTradeActivity(**fee).symbol == "AAPL"
    assert NonTradeActivity(**grant).net_amount == 50.0
    assert NonTradeActivity(**deposit).net_amount == 100_000.0
    assert all("::" in item["id"] and len(item["id"].split("::")[0]) == 17 for item in items)


def test_activities_by_type_category_and_direction(account: Account, asset: Asset) -> None:
    client = key_client(account)
    buy(client, "AAPL", 1)
    buy(client, "AAPL", 2)

    fills = _activities(client, "/v2/account/activities/FILL")
    assert [item["qty"] for item in fills] == ["2", "1"]
    assert [item["qty"] for item in _activities(client, "/v2/account/activities/FILL", direction="asc")] == [
        "1",
        "2",
    ]
    assert [item["activity_type"] for item in _activities(client, activity_types="CSD,FILL")] == [
        "FILL",
        "FILL",
        "CSD",
    ]
    assert [item["activity_type"] for item in _activities(client, category="non_trade_activity")] == ["CSD"]


def test_every_alpaca_activity_type_is_accepted(account: Account, asset: Asset) -> None:
    """Every type alpaca-py defines is a valid filter, by path and by query; those the simulator
    never records (dividends, transfers, corporate actions...) answer an empty list."""
    CommissionPlan.objects.create(name="flat", per_order_cents=100)
    client = key_client(account)
    buy(client, "AAPL", 1)
    services.account_grant_cash(account_id=account.pk, amount_cents=5_000)
    produced = {"FILL", "CSD", "JNLC", "FEE"}
    defined = [kind.value for kind in ActivityType if kind.value.isupper()]
    assert len(defined) > 30 and set(defined) <= set(selectors.ALPACA_ACTIVITY_TYPES)
    for activity_type in selectors.ALPACA_ACTIVITY_TYPES:
        by_path = _activities(client, f"/v2/account/activities/{activity_type}")
        assert by_path == _activities(client, activity_types=activity_type), activity_type
        if activity_type in ("TRANS", "MISC"):
            continue
        found = {item["activity_type"] for item in by_path}
        assert found <= {activity_type} and (found == set()) == (activity_type not in produced), activity_type


def test_activity_groups_and_unknown_types(account: Account, asset: Asset) -> None:
    client = key_client(account)
    buy(client, "AAPL", 1)
    services.account_grant_cash(account_id=account.pk, amount_cents=5_000)
    # TRANS is cash transactions (CSD, CSW); MISC every type outside TRANS, dividends and FILL.
    assert [item["activity_type"] for item in _activities(client, "/v2/account/activities/TRANS")] == ["CSD"]
    assert [item["activity_type"] for item in _activities(client, activity_types="MISC")] == ["JNLC"]
    assert [item["activity_type"] for item in _activities(client, activity_types="DIV,FILL")] == ["FILL"]
    assert _activities(client, activity_types="TRANS", category="trade_activity") == []
    assert_alpaca_error(client.get("/v2/account/activities/NOPE"), 422)
    assert_alpaca_error(client.get("/v2/account/activities", {"activity_types": "FILL,NOPE"}), 422)


def test_activities_page_with_the_last_id_as_token(account: Account, asset: Asset) -> None:
    """Property 37: pages concatenate to the ordered set, no duplicates or gaps."""
    client = key_client(account)
    for _ in range(5):
        buy(client, "AAPL", 1)
    everything = [item["id"] for item in _activities(client)]
    assert len(everything) == 6

    pages, token = [], None
    while True:
        params = {"page_size": 2, **({"page_token": token} if token else {})}
        page = _activities(client, **params)
        if not page:
            break
        assert len(page) <= 2
        pages.append([item["id"] for item in page])
        token = page[-1]["id"]

    assert [item for page in pages for item in page] == everything
    assert_alpaca_error(client.get("/v2/account/activities", {"page_token": "garbage"}), 422)


# --- Portfolio history --------------------------------------------------------------------------


def _minute_bars(symbol: str, start: dt.datetime, closes: list[int]) -> None:
    MinuteBar.objects.bulk_create(
        MinuteBar(
            symbol=symbol, start=start + dt.timedelta(minutes=i), open_units=c, high_units=c, low_units=c,
            close_units=c, volume=1, trade_count=1, vwap_units=c,
        )
        for i, c in enumerate(closes)
    )  # fmt: skip


@pytest.mark.parametrize(
    "now",
    [
        frozen_at(new_york(2026, 3, 4, 15, 0, 30)),
        # Opened before New York midnight, read after it.
        frozen_at(new_york(2026, 3, 5, 0, 5, 30)),
        # Opened at 01:55 EST, read at 03:05 EDT: ten minutes across the spring-forward gap.
        frozen_at(new_york(2026, 3, 8, 3, 5, 30)),
    ],
)
def test_portfolio_history_parses_and_follows_the_bars(now: dt.datetime, make_asset: MakeAsset) -> None:
    minute = now.astimezone(dt.UTC).replace(second=0)  # in UTC: New York's wall clock jumps
    opened = minute - dt.timedelta(minutes=10)
    user = get_user_model().objects.create_user(username="hist", password="pw-123456!")
    account = services.account_open(user=user, cash_cents=1_000_000, now=opened)
    make_asset("AAPL", price="100.00")
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(10), side="buy", type="market", time_in_force="day"
        ),
        now=opened + dt.timedelta(seconds=30),
    )  # 10 shares at 100.01
    # Minute closes from the minute the account opened: 100, 101, ... 109.
    _minute_bars("AAPL", opened, [1_000_000 + i * 10_000 for i in range(10)])
    client = key_client(account)

    # 2D, not 1D: in the first ten minutes after New York midnight the account's opening falls
    # in the previous day. Either way the history starts when the account opened.
    body = client.get("/v2/account/portfolio/history", {"period": "2D", "timeframe": "1Min"}).json()

    history = PortfolioHistory(**body)
    assert history.timeframe == "1Min"
    assert history.base_value == 10_000.0
    # Ten whole minutes and the current one.
    assert len(history.timestamp) == 11
    assert history.timestamp[0] == int(opened.timestamp())
    assert history.timestamp[-1] == int(minute.timestamp())
    assert history.timestamp[1] - history.timestamp[0] == 60
    # After minute i closes the 10 shares are worth 10 x (100 + i); cash is 10,000 - 1,000.10.
    assert history.equity[:10] == [pytest.approx(8999.90 + 10 * (100 + i)) for i in range(10)]
    # The live point uses the latest trade (100.00).
    assert history.equity[-1] == pytest.approx(9999.90)
    assert history.profit_loss[1] == pytest.approx(history.equity[1] - 10_000)
    assert history.profit_loss_pct[1] == pytest.approx((history.equity[1] - 10_000) / 10_000, abs=1e-6)


def test_portfolio_history_excludes_deposits_from_profit(
    account: Account, django_capture_on_commit_callbacks
) -> None:
    services.account_grant_cash(account_id=account.pk, amount_cents=50_000)
    history = PortfolioHistory(
        **key_client(account).get("/v2/account/portfolio/history", {"timeframe": "1D"}).json()
    )
    assert history.equity[-1] == pytest.approx(100_500.0)
    assert history.profit_loss[-1] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"period": "1W"},
        {"period": "1M", "timeframe": "1D"},
        {"period": "1A"},
        {"period": "all"},
        {"timeframe": "15Min"},
        {"timeframe": "1H", "date_start": "2020-01-01"},
        {"start": "2020-01-01T00:00:00Z", "end": "2020-01-02T00:00:00+00:00", "timeframe": "5Min"},
        {"date_end": "2030-01-01", "period": "2D", "extended_hours": "True"},
    ],
)
def test_portfolio_history_parameters(account: Account, params: dict[str, str]) -> None:
    response = key_client(account).get("/v2/account/portfolio/history", params)
    assert response.status_code == 200, response.content
    PortfolioHistory(**response.json())


@pytest.mark.parametrize(
    "params",
    [{"period": "1X"}, {"period": "0D"}, {"timeframe": "2Min"}, {"date_start": "yesterday"}],
)
def test_portfolio_history_refuses_bad_parameters(account: Account, params: dict[str, str]) -> None:
    assert_alpaca_error(key_client(account).get("/v2/account/portfolio/history", params), 422)


def _hour_floor(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("now", "first"),
    [
        # The default period (1M) is longer than 30 days here: the window is cut to 30 days.
        frozen_at(new_york(2026, 1, 15, 12, 0, 30), new_york(2025, 12, 16, 12)),
        frozen_at(
            BOUNDARY_INSTANTS["month-end-evening"], new_york(2026, 3, 31, 21), name="month-end-evening"
        ),
        # Here it is shorter (February, or a 30-day month before midnight), so it is all shown.
        frozen_at(new_york(2026, 3, 15, 21, 15), new_york(2026, 2, 16)),
        frozen_at(BOUNDARY_INSTANTS["before-midnight"], new_york(2026, 2, 5), name="before-midnight"),
        frozen_at(BOUNDARY_INSTANTS["after-midnight"], new_york(2026, 2, 6), name="after-midnight"),
        frozen_at(BOUNDARY_INSTANTS["spring-forward"], new_york(2026, 2, 9), name="spring-forward"),
        # October 2 to the second 01:30 of November 1 is 30 days and 2.5 hours (a 25-hour day).
        frozen_at(BOUNDARY_INSTANTS["fall-back"], new_york(2026, 10, 2, 2), name="fall-back"),
    ],
)
def test_intraday_history_is_limited_to_30_days(
    now: dt.datetime, first: dt.datetime, settings: Settings
) -> None:
    settings.MINUTE_BAR_RETENTION_DAYS = 90  # the bars reach past the 30 days
    user = get_user_model().objects.create_user(username="old", password="pw-123456!")
    account = services.account_open(user=user, now=now - dt.timedelta(days=90))
    client = key_client(account)

    assert_alpaca_error(client.get("/v2/account/portfolio/history", {"period": "3M", "timeframe": "1H"}), 422)
    # Asked without a period, the default month shrinks to what the timeframe allows instead.
    shrunk = PortfolioHistory(**client.get("/v2/account/portfolio/history", {"timeframe": "1H"}).json())
    assert shrunk.timestamp[0] == int(first.timestamp())
    assert shrunk.timestamp[-1] == int(_hour_floor(now).timestamp())  # the hour running now
    assert all(b - a == 3600 for a, b in zip(shrunk.timestamp, shrunk.timestamp[1:], strict=False))
    assert len(shrunk.timestamp) <= 24 * 30 + 1
    assert set(shrunk.equity) == {100_000.0}


@boundary_instants()
def test_intraday_history_reaches_back_only_as_far_as_the_minute_bars(
    now: dt.datetime, settings: Settings
) -> None:
    """Intraday points are priced from minute bars: past their retention (21 days by default)
    the first days of a window would be priced at a later close, so the window stops there."""
    settings.MINUTE_BAR_RETENTION_DAYS = 21
    user = get_user_model().objects.create_user(username="old", password="pw-123456!")
    account = services.account_open(user=user, now=now - dt.timedelta(days=90))
    client = key_client(account)

    refused = client.get("/v2/account/portfolio/history", {"period": "4W", "timeframe": "1H"})
    assert_alpaca_error(refused, 422)
    assert "at most 21 days" in refused.json()["message"]
    shrunk = PortfolioHistory(**client.get("/v2/account/portfolio/history", {"timeframe": "1H"}).json())
    assert shrunk.timestamp[0] >= int(_hour_floor(now - dt.timedelta(days=21)).timestamp())
    assert shrunk.timestamp[-1] == int(_hour_floor(now).timestamp())


@boundary_instants()
def test_the_default_history_is_daily_in_every_month(now: dt.datetime) -> None:
    """Alpaca's default is one month of daily points. The timeframe follows the period's name
    (a month counts 30 days), not the calendar: a window of 28 to 31 days must not answer 15Min
    in some months or hours and 1D in others."""
    user = get_user_model().objects.create_user(username="new", password="pw-123456!")
    account = services.account_open(user=user, now=now - dt.timedelta(seconds=1))
    history = PortfolioHistory(**key_client(account).get("/v2/account/portfolio/history").json())
    assert history.timeframe == "1D"
    # The account opened a second ago: its history is today's point, labelled with today's start.
    assert history.timestamp == [int(calendar.day_start(calendar.trading_day_of(now)).timestamp())]


@pytest.mark.parametrize(
    ("now", "query", "first", "hours"),
    [
        frozen_at(new_york(2026, 3, 10, 12), {"date_end": "2026-03-06"}, new_york(2026, 3, 6), 24),
        # The day the clocks go forward has 23 hours, the day they go back 25.
        frozen_at(new_york(2026, 3, 10, 12), {"date_end": "2026-03-08"}, new_york(2026, 3, 8), 23),
        frozen_at(new_york(2026, 11, 3, 12), {"date_end": "2026-11-01"}, new_york(2026, 11, 1), 25),
        # An end at New York midnight, as RFC 3339, ends the day before it.
        frozen_at(new_york(2026, 3, 10, 12), {"end": "2026-03-07T05:00:00Z"}, new_york(2026, 3, 6), 24),
    ],
)
def test_a_one_day_period_ending_on_a_date_covers_that_whole_day(
    now: dt.datetime, query: dict[str, str], first: dt.datetime, hours: int
) -> None:
    user = get_user_model().objects.create_user(username="dated", password="pw-123456!")
    account = services.account_open(user=user, now=now - dt.timedelta(days=60))

    response = key_client(account).get(
        "/v2/account/portfolio/history", {"period": "1D", "timeframe": "1H", **query}
    )

    history = PortfolioHistory(**response.json())
    assert history.timestamp[0] == int(first.timestamp())
    assert len(history.timestamp) == hours
    assert all(b - a == 3600 for a, b in zip(history.timestamp, history.timestamp[1:], strict=False))


@pytest.mark.parametrize("now", [frozen_at(new_york(2026, 3, 12, 12))])
def test_a_daily_history_ending_on_a_date_has_no_point_for_the_day_after(now: dt.datetime) -> None:
    user = get_user_model().objects.create_user(username="weekly", password="pw-123456!")
    account = services.account_open(user=user, now=now - dt.timedelta(days=60))

    body = (
        key_client(account)
        .get("/v2/account/portfolio/history", {"period": "1W", "timeframe": "1D", "date_end": "2026-03-08"})
        .json()
    )

    days = [dt.datetime.fromtimestamp(stamp, NEW_YORK).date() for stamp in PortfolioHistory(**body).timestamp]
    assert days == [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(7)]  # through the 8th


@override_settings(ACCOUNT_STARTING_CASH="100000.00")
def test_history_starts_at_the_last_reset(account: Account, asset: Asset) -> None:
    client = key_client(account)
    buy(client, "AAPL", 10)
    services.account_reset(account_id=account.pk)

    history = PortfolioHistory(**client.get("/v2/account/portfolio/history", {"timeframe": "1D"}).json())
    assert history.base_value == 100_000.0
    assert history.equity == [100_000.0]
