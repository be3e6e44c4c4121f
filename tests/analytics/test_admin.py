"""The analytics admin: every precomputed table has a read-only change list and detail page for
staff, each loading in a constant number of queries whatever the number of accounts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analytics import services
from analytics.models import (
    AccountAnalytics,
    AccountEquityDay,
    LeaderboardEntry,
    LeaderboardSnapshot,
    SymbolStats,
)
from tests.builders import shares
from trading import calendar, services as trading
from trading.models import Account, Asset
from trading.units import qty_to_str

pytestmark = pytest.mark.django_db

ANALYTICS_MODELS = [LeaderboardSnapshot, LeaderboardEntry, AccountAnalytics, SymbolStats, AccountEquityDay]
# A search term and a filter each change list is expected to take.
QUERIES: dict[type[Any], list[dict[str, str]]] = {
    LeaderboardSnapshot: [{"period__exact": "daily"}, {"trading_day__gte": "2000-01-01"}],
    LeaderboardEntry: [{"q": "trader1"}, {"snapshot__period": "overall"}],
    AccountAnalytics: [{"q": "trader1"}, {"ranked": "top10"}, {"ranked": "unranked"}],
    SymbolStats: [{"q": "aa"}, {"held": "yes"}, {"held": "no"}],
    AccountEquityDay: [{"q": "trader1"}, {"day__gte": "2000-01-01"}],
}


def changelist(model: type[Any]) -> str:
    return reverse(f"admin:analytics_{model._meta.model_name}_changelist")


def change(obj: Any) -> str:
    return reverse(f"admin:analytics_{obj._meta.model_name}_change", args=[obj.pk])


@pytest.fixture
def staff_client(client: Client) -> Client:
    """A staff member who may view the analytics tables (not a superuser)."""
    user = get_user_model().objects.create_user("analyst", password=None, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="analytics", codename__startswith="view_")
    )
    client.force_login(user)
    return client


def _trade(account: Account, symbol: str, qty: int, side: str = "buy") -> None:
    trading.order_place(
        account_id=account.pk,
        request=trading.OrderRequest(
            symbol=symbol, qty=shares(qty), side=side, type="market", time_in_force="day"
        ),
    )


@pytest.fixture
def add_players(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> Callable[[int], None]:
    make_asset("AAPL", price="100.00", sector="Technology")
    make_asset("XOM", price="50.00", sector="Energy")

    listed = iter(range(1, 1000))

    def add(count: int) -> None:
        """``count`` more accounts holding positions, with an equity history, and ``count`` more
        assets, then every analytics table recomputed."""
        for _ in range(count):
            make_asset(f"ZZ{next(listed)}", price="10.00", sector="Utilities")
            account = make_account(cash=1_000_000)
            _trade(account, "AAPL", 3)
            _trade(account, "XOM", 2)
            _trade(account, "XOM", 1, side="sell")
            AccountEquityDay.objects.bulk_create(
                AccountEquityDay(
                    account=account,
                    day=calendar.trading_day_of(timezone.now()) - dt.timedelta(days=back),
                    equity_cents=1_000_000 + back,
                )
                for back in range(1, 4)
            )
        services.analytics_refresh_all()
        services.symbol_stats_refresh()

    return add


def _queries(client: Client, url: str, params: dict[str, str] | None = None) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, response.status_code)
    return len(captured), response.content.decode()


def test_every_precomputed_table_is_registered() -> None:
    assert set(ANALYTICS_MODELS) <= set(admin.site._registry)


@pytest.mark.parametrize("model", ANALYTICS_MODELS, ids=lambda model: model.__name__)
def test_pages_render_in_a_constant_number_of_queries(
    staff_client: Client, add_players: Callable[[int], None], model: type[Any]
) -> None:
    add_players(2)
    # Django caches content types per process on first use: warm it so only the pages are counted.
    _queries(staff_client, change(model.objects.order_by("pk").first()))
    list_before, _ = _queries(staff_client, changelist(model))
    detail_before, _ = _queries(staff_client, change(model.objects.order_by("pk").first()))
    filtered_before = [_queries(staff_client, changelist(model), params)[0] for params in QUERIES[model]]

    rows_before = model.objects.count()
    add_players(6)  # more rows of every kind, each account with its own user
    assert model.objects.count() > rows_before or model is LeaderboardSnapshot  # boards: newest 2 kept

    list_after, page = _queries(staff_client, changelist(model))
    assert list_after == list_before
    assert 'class="action-checkbox"' not in page  # read-only: nothing to select
    detail_after, _ = _queries(staff_client, change(model.objects.order_by("-pk").first()))
    assert detail_after == detail_before
    assert [
        _queries(staff_client, changelist(model), params)[0] for params in QUERIES[model]
    ] == filtered_before


def test_columns_show_money_prices_and_percentages(
    staff_client: Client, add_players: Callable[[int], None]
) -> None:
    add_players(1)
    account = Account.objects.get()
    entry = LeaderboardEntry.objects.filter(snapshot__period="overall").get()
    entries = staff_client.get(changelist(LeaderboardEntry)).content.decode()
    assert f"${entry.equity_cents / 100:,.2f}" in entries and f"{entry.return_pct * 100:.4f}%" in entries
    stats = staff_client.get(changelist(SymbolStats)).content.decode()
    assert "$100.00" in stats and "$50.00" in stats
    held = SymbolStats.objects.exclude(net_shares_held=0).first()
    assert held is not None
    # Net shares in shares (the row holds 1/10^9 share units), not in units.
    assert f'class="field-net_shares">{qty_to_str(held.net_shares_held)}<' in stats
    analytics = staff_client.get(change(AccountAnalytics.objects.get())).content.decode()
    assert account.account_number in analytics and "Technology" in analytics and "Energy" in analytics
    snapshot = LeaderboardSnapshot.objects.filter(period="daily").first()
    assert snapshot is not None
    detail = staff_client.get(change(snapshot)).content.decode()
    assert f"?snapshot__id__exact={snapshot.pk}" in detail
    # The link lists that board only.
    linked = staff_client.get(changelist(LeaderboardEntry), {"snapshot__id__exact": snapshot.pk})
    assert linked.status_code == 200 and linked.context["cl"].result_count == 1


@pytest.mark.parametrize("model", ANALYTICS_MODELS, ids=lambda model: model.__name__)
def test_read_only_and_staff_only(
    staff_client: Client, add_players: Callable[[int], None], model: type[Any]
) -> None:
    add_players(1)
    obj = model.objects.order_by("pk").first()
    count = model.objects.count()
    name = model._meta.model_name
    assert staff_client.get(reverse(f"admin:analytics_{name}_add")).status_code == 403
    assert staff_client.post(change(obj), {}).status_code == 403
    assert (
        staff_client.post(
            reverse(f"admin:analytics_{name}_delete", args=[obj.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert model.objects.count() == count

    outsider = Client()
    outsider.force_login(get_user_model().objects.create_user("player", password=None))
    for url in (changelist(model), change(obj)):
        response = outsider.get(url)
        assert response.status_code == 302 and "/login/" in response["Location"]
