"""The operator's admin: every page loads with data present, the ops actions go through the
services, history is read-only, and the big tables are listed without counting them."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from tests.builders import shares
from trading import services
from trading.admin import EstimatedCountPaginator
from trading.models import (
    Account,
    ApiKey,
    Asset,
    CashEntry,
    CommissionPlan,
    DailyBar,
    Fill,
    Game,
    MinuteBar,
    Order,
    OrderStatus,
    Position,
    StockPriceHistory,
    Watchlist,
    WatchlistEntry,
)
from trading.units import qty_to_str

TRADING_MODELS = [
    Asset,
    Account,
    ApiKey,
    Order,
    Fill,
    Position,
    CashEntry,
    CommissionPlan,
    Game,
    StockPriceHistory,
    MinuteBar,
    DailyBar,
    Watchlist,
    WatchlistEntry,
]


def changelist(model: type[Any]) -> str:
    return reverse(f"admin:trading_{model._meta.model_name}_changelist")


def change(obj: Any) -> str:
    return reverse(f"admin:trading_{obj._meta.model_name}_change", args=[obj.pk])


def bar(model: type[MinuteBar] | type[DailyBar], symbol: str, start: dt.datetime) -> Any:
    return model.objects.create(
        symbol=symbol,
        start=start,
        open_units=1_000_000,
        high_units=1_010_000,
        low_units=990_000,
        close_units=1_005_000,
        volume=1000,
        trade_count=10,
        vwap_units=1_002_000,
    )


def place(account: Account, *, side: str = "buy", type: str = "market", qty: int = 1, **extra: Any) -> Order:
    request = services.OrderRequest(
        symbol="AAPL", qty=shares(qty), side=side, type=type, time_in_force="gtc", **extra
    )
    return services.order_place(account_id=account.pk, request=request)


@pytest.fixture
def superuser_client(client: Client, db: None) -> Client:
    # No password: force_login needs none, and hashing one costs a third of a second per test.
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", None)
    client.force_login(user)
    return client


@pytest.fixture
def market(make_asset: Callable[..., Asset], make_account: Callable[..., Account]) -> dict[str, Any]:
    """One row or more in every trading table."""
    asset = make_asset("AAPL", price="100.00")
    make_asset("MSFT", price="300.00")
    account = make_account(cash=10_000_000)
    filled = place(account, qty=5)
    resting = place(account, type="limit", qty=2, limit_price_units=500_000)
    key, _ = services.api_key_create(account_id=account.pk, label="bot")
    CommissionPlan.objects.create(name="Flat", per_order_cents=100)
    now = timezone.now().replace(second=0, microsecond=0)
    bar(MinuteBar, "AAPL", now)
    bar(DailyBar, "AAPL", now.replace(hour=0, minute=0))
    watchlist = services.watchlist_create(account_id=account.pk, name="Tech", symbols=["AAPL", "MSFT"])
    # A game without players: joining would give the fixture's user a second account.
    services.game_create(
        organiser=account.user,
        rules=services.GameRules(
            name="AAPL cup", starts_at=now, ends_at=now + dt.timedelta(days=1), starting_cash_cents=100
        ),
        now=now,
    )
    return {
        "asset": asset,
        "account": account,
        "filled": filled,
        "resting": resting,
        "key": key,
        "watchlist": watchlist,
    }


def test_every_trading_model_is_registered() -> None:
    registered = {model for model in admin.site._registry if model._meta.app_label == "trading"}
    assert registered == set(TRADING_MODELS)


@pytest.mark.django_db
@pytest.mark.parametrize("model", TRADING_MODELS, ids=lambda model: model.__name__)
def test_changelist_and_change_pages_load(
    superuser_client: Client, market: dict[str, Any], model: type[Any]
) -> None:
    assert model.objects.exists()
    response = superuser_client.get(changelist(model))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1

    if model is not StockPriceHistory:  # keyed by (symbol, seq): no page of one row (below)
        obj = model.objects.order_by("pk").first()
        assert superuser_client.get(change(obj)).status_code == 200

    search = superuser_client.get(changelist(model), {"q": "AAPL"})
    assert search.status_code == 200


@pytest.mark.django_db
def test_money_is_shown_in_dollars(superuser_client: Client, market: dict[str, Any]) -> None:
    page = superuser_client.get(changelist(Account)).content.decode()
    assert "$100,000.00" not in page  # the fixture account starts with $100,000 and bought shares
    account = Account.objects.get()
    assert f"${account.cash_cents / 100:,.2f}" in page

    ticks = superuser_client.get(changelist(StockPriceHistory)).content.decode()
    assert "$100.00" in ticks and "$99.99" in ticks and "$100.01" in ticks  # price, bid, ask


def test_quantities_are_shown_in_shares(superuser_client: Client, market: dict[str, Any]) -> None:
    account = Account.objects.get()
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=None, notional_cents=5_000, side="buy", type="market", time_in_force="day"
        ),
    )
    orders = superuser_client.get(changelist(Order)).content.decode()
    assert "$50.00 (0.499950004)" in orders  # a notional order: its amount and what it bought
    fills = superuser_client.get(changelist(Fill)).content.decode()
    assert 'class="field-quantity">0.499950004<' in fills
    positions = superuser_client.get(changelist(Position)).content.decode()
    held = Position.objects.get(account=account, asset__symbol="AAPL")
    assert f'class="field-quantity">{qty_to_str(held.qty)}<' in positions


@pytest.mark.django_db
@pytest.mark.parametrize("model", [Account, Order, Fill, CashEntry, ApiKey, Position, WatchlistEntry])
def test_changelists_take_a_constant_number_of_queries(
    superuser_client: Client, market: dict[str, Any], make_account: Callable[..., Account], model: type[Any]
) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert superuser_client.get(changelist(model)).status_code == 200
        return len(captured)

    before = queries()
    for _ in range(3):  # more rows of every kind, each with its own account and user
        account = make_account(cash=10_000_000)
        place(account, qty=1)
        services.api_key_create(account_id=account.pk)
        services.watchlist_create(account_id=account.pk, name="More", symbols=["MSFT"])
    assert queries() == before


# --- actions -------------------------------------------------------------------------------------


def post_action(client: Client, model: type[Any], action: str, objects: list[Any], **data: Any) -> Any:
    payload = {"action": action, ACTION_CHECKBOX_NAME: [str(obj.pk) for obj in objects], **data}
    return client.post(changelist(model), payload)


@pytest.mark.django_db
def test_reset_action_asks_then_resets(superuser_client: Client, market: dict[str, Any]) -> None:
    account = market["account"]
    assert Position.objects.filter(account=account).exists()

    confirm = post_action(superuser_client, Account, "reset_accounts", [account])
    assert confirm.status_code == 200
    assert "Reset these accounts" in confirm.content.decode()
    assert not CashEntry.objects.filter(kind=CashEntry.Kind.RESET).exists()

    done = post_action(superuser_client, Account, "reset_accounts", [account], apply="yes")
    assert done.status_code == 302
    account.refresh_from_db()
    assert account.cash_cents == services.starting_cash_cents()
    assert account.reserved_cents == 0
    assert not Position.objects.filter(account=account).exists()
    assert CashEntry.objects.filter(account=account, kind=CashEntry.Kind.RESET).count() == 1
    market["resting"].refresh_from_db()
    assert market["resting"].status == OrderStatus.CANCELED


@pytest.mark.django_db
def test_grant_cash_form(
    superuser_client: Client, market: dict[str, Any], make_account: Callable[..., Account]
) -> None:
    first, second = market["account"], make_account(cash=0)
    first.refresh_from_db()
    cash_before = {a.pk: a.cash_cents for a in (first, second)}

    form_page = post_action(superuser_client, Account, "grant_cash", [first, second])
    assert form_page.status_code == 200
    assert 'name="amount"' in form_page.content.decode()

    invalid = post_action(superuser_client, Account, "grant_cash", [first, second], apply="yes", amount="0")
    assert invalid.status_code == 200
    assert "must not be zero" in invalid.content.decode()

    done = post_action(
        superuser_client, Account, "grant_cash", [first, second], apply="yes", amount="250.50", memo="prize"
    )
    assert done.status_code == 302
    for account in (first, second):
        account.refresh_from_db()
        assert account.cash_cents == cash_before[account.pk] + 25_050
        entry = CashEntry.objects.get(account=account, kind=CashEntry.Kind.GRANT)
        assert (entry.amount_cents, entry.memo) == (25_050, "prize")


@pytest.mark.django_db
def test_grant_cash_withdrawal_beyond_cash_is_refused(
    superuser_client: Client, make_account: Callable[..., Account]
) -> None:
    account = make_account(cash=1_000)
    response = post_action(superuser_client, Account, "grant_cash", [account], apply="yes", amount="-20.00")
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.cash_cents == 1_000
    assert not CashEntry.objects.filter(kind=CashEntry.Kind.GRANT).exists()
    messages = [str(m) for m in superuser_client.get(changelist(Account)).context["messages"]]
    assert any("Not granted" in message for message in messages)


@pytest.mark.django_db
def test_halt_and_resume(superuser_client: Client, market: dict[str, Any]) -> None:
    asset = market["asset"]
    post_action(superuser_client, Asset, "halt_trading", [asset])
    asset.refresh_from_db()
    assert asset.halted is True

    post_action(superuser_client, Asset, "resume_trading", [asset])
    asset.refresh_from_db()
    assert asset.halted is False


@pytest.mark.django_db
def test_revoke_keys(superuser_client: Client, market: dict[str, Any]) -> None:
    key = market["key"]
    response = post_action(superuser_client, ApiKey, "revoke_keys", [key])
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


@pytest.mark.django_db
def test_create_api_key_shows_the_secret_once(superuser_client: Client, market: dict[str, Any]) -> None:
    account = market["account"]
    response = post_action(superuser_client, Account, "create_api_key", [account])

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    (row,) = response.context["created"]
    key = ApiKey.objects.get(key_id=row["key_id"])
    assert key.account_id == account.pk
    assert services.api_key_secret_hmac(row["secret"]) == key.secret_hmac
    assert row["secret"] in response.content.decode()
    # Not kept anywhere it could be shown again.
    assert row["secret"] not in superuser_client.get(change(key)).content.decode()
    assert row["secret"] not in superuser_client.get(change(account)).content.decode()


@pytest.mark.django_db
def test_cancel_orders_action(superuser_client: Client, market: dict[str, Any]) -> None:
    resting, filled = market["resting"], market["filled"]
    post_action(superuser_client, Order, "cancel_orders", [resting, filled])
    resting.refresh_from_db()
    filled.refresh_from_db()
    assert resting.status == OrderStatus.CANCELED
    assert filled.status == OrderStatus.FILLED


@pytest.mark.django_db
def test_adding_an_account_opens_it_through_the_service(superuser_client: Client) -> None:
    user = get_user_model().objects.create_user("newbie", password="pw-123456!")
    response = superuser_client.post(reverse("admin:trading_account_add"), {"user": user.pk})
    assert response.status_code == 302
    account = Account.objects.get(user=user)
    assert account.cash_cents == services.starting_cash_cents()
    assert account.is_default
    assert CashEntry.objects.get(account=account).kind == CashEntry.Kind.DEPOSIT
    # Adding another for the same user opens a further, non-default one.
    assert superuser_client.post(reverse("admin:trading_account_add"), {"user": user.pk}).status_code == 302
    assert sorted(Account.objects.filter(user=user).values_list("is_default", flat=True)) == [False, True]


# --- read-only history ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model",
    [Fill, CashEntry, MinuteBar, DailyBar, Position, Order],
    ids=lambda m: m.__name__,
)
def test_history_cannot_be_changed_or_deleted(
    superuser_client: Client, market: dict[str, Any], model: type[Any]
) -> None:
    obj = model.objects.order_by("pk").first()
    count = model.objects.count()
    model_admin = admin.site._registry[model]
    request = superuser_client.get(changelist(model)).wsgi_request
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, obj)
    assert not model_admin.has_delete_permission(request, obj)

    name = model._meta.model_name
    assert superuser_client.post(change(obj), {}).status_code == 403
    assert (
        superuser_client.post(
            reverse(f"admin:trading_{name}_delete", args=[obj.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert superuser_client.get(reverse(f"admin:trading_{name}_add")).status_code == 403
    assert model.objects.count() == count


@pytest.mark.django_db
def test_ticks_have_a_change_list_and_no_page_that_could_change_one(
    superuser_client: Client, market: dict[str, Any]
) -> None:
    """Ticks are keyed by (symbol, seq), which Django's admin has no row pages for: the list shows
    every column, links nowhere, offers no action, and no add, change, delete or history URL exists."""
    model_admin = admin.site._registry[StockPriceHistory]
    response = superuser_client.get(changelist(StockPriceHistory))
    assert response.status_code == 200
    assert not model_admin.has_add_permission(response.wsgi_request)
    assert not model_admin.has_change_permission(response.wsgi_request)
    assert not model_admin.has_delete_permission(response.wsgi_request)
    page = response.content.decode()
    assert 'href="/admin/trading/stockpricehistory/"' in page  # the list itself
    assert not re.search(r'href="/admin/trading/stockpricehistory/[^"?]', page)  # no row's page
    assert "action-select" not in page
    for name in ("add", "change", "delete", "history"):
        with pytest.raises(NoReverseMatch):
            reverse(f"admin:trading_stockpricehistory_{name}", args=[] if name == "add" else ["AAPL,1"])
    count = StockPriceHistory.objects.count()
    assert (
        superuser_client.post(changelist(StockPriceHistory) + "AAPL,1/delete/", {"post": "yes"}).status_code
        == 404
    )
    assert StockPriceHistory.objects.count() == count
    # Newest first down the key when searched for one symbol.
    seqs = [tick.seq for tick in response.context["cl"].result_list if tick.symbol == "AAPL"]
    assert seqs == sorted(seqs, reverse=True) and seqs


# --- big tables ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tick_changelist_never_counts_the_whole_table(
    superuser_client: Client, market: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.builders import set_quote

    for cents in range(30):
        set_quote("AAPL", price=f"100.{cents:02d}")
    monkeypatch.setattr(EstimatedCountPaginator, "cap", 10)

    with CaptureQueriesContext(connection) as captured:
        response = superuser_client.get(changelist(StockPriceHistory))
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 31  # an estimate of the table size
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()]
    assert counts == []

    with CaptureQueriesContext(connection) as captured:
        response = superuser_client.get(changelist(StockPriceHistory), {"q": "aapl"})
    assert response.status_code == 200
    assert response.context["cl"].result_count == 11  # capped: COUNT over at most cap + 1 rows
    counts = [q["sql"] for q in captured if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)
    assert all("UPPER(" not in q["sql"].upper() for q in captured if "stockpricehistory" in q["sql"].lower())


@pytest.mark.django_db
def test_paginator_counts_small_tables_exactly(market: dict[str, Any]) -> None:
    paginator = EstimatedCountPaginator(StockPriceHistory.objects.order_by("-pk"), 100)
    assert paginator.count == StockPriceHistory.objects.count()
    assert EstimatedCountPaginator([1, 2, 3], 2).count == 3


@pytest.mark.django_db
def test_a_game_accounts_shorting_is_read_only_its_game_rules_decide_it(
    superuser_client: Client, make_account: Callable[..., Account]
) -> None:
    """A game account's shorting_enabled follows GamePlayer.no_shorting (the game's rules): the
    admin shows it but does not edit it; a default account's stays editable."""
    before = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)
    organiser = make_account(username="teacher").user
    game = services.game_create(
        organiser=organiser,
        rules=services.GameRules(
            name="No shorts",
            starts_at=before + dt.timedelta(hours=1),
            ends_at=before + dt.timedelta(days=5),
            starting_cash_cents=1_000_000,
        ),
        now=before,
    )
    player = make_account(username="ada")
    game_account = services.game_join(game_id=game.pk, user=player.user, now=before).account

    page = superuser_client.get(change(game_account))
    assert page.status_code == 200
    assert "shorting_enabled" not in page.context["adminform"].form.fields
    default = superuser_client.get(change(player))
    assert "shorting_enabled" in default.context["adminform"].form.fields
