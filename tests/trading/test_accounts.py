"""Several accounts per user: a key acts on its own account only, a browser session on the account
it selected (its user's default one until then), and rate limits count per account."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from tests.trading.api_support import assert_alpaca_error, key_client, post_order
from trading import selectors, services
from trading.errors import InvalidRequest
from trading.models import Account, Asset, CashEntry, Order

MakeAccount = Callable[..., Account]


@pytest.fixture
def two_accounts(make_account: MakeAccount) -> tuple[Account, Account]:
    """One user's default account and a further one beside it."""
    default = make_account(cash=1_000_000)
    further = services.account_create(user=default.user, cash_cents=2_000_000)
    return default, further


def test_a_further_account_has_its_own_opening_deposit(two_accounts: tuple[Account, Account]) -> None:
    default, further = two_accounts
    assert (default.is_default, further.is_default) == (True, False)
    assert further.account_number != default.account_number
    assert list(CashEntry.objects.filter(account=further).values_list("kind", "amount_cents")) == [
        ("deposit", 2_000_000)
    ]
    assert selectors.accounts_list(user_id=default.user_id) == [default, further]


def test_one_default_account_per_user(db: None) -> None:
    user = get_user_model().objects.create_user("solo", password="pw-123456!")
    with pytest.raises(InvalidRequest, match="default account first"):
        services.account_create(user=user)
    services.account_open(user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        services.account_open(user=user)
    services.account_create(user=user)
    assert Account.objects.filter(user=user, is_default=True).count() == 1


def test_a_key_never_reads_or_trades_another_account_of_its_user(
    two_accounts: tuple[Account, Account], asset: Asset
) -> None:
    default, further = two_accounts
    on_default, on_further = key_client(default), key_client(further)

    placed = post_order(on_further, symbol="AAPL", qty="3")
    assert placed.status_code == 200, placed.content
    order_id = placed.json()["id"]
    assert Order.objects.get(pk=order_id).account_id == further.pk

    assert on_default.get("/v2/account").json()["account_number"] == default.account_number
    assert on_further.get("/v2/account").json()["account_number"] == further.account_number
    assert on_default.get("/v2/orders", {"status": "all"}).json() == []
    assert [o["id"] for o in on_further.get("/v2/orders", {"status": "all"}).json()] == [order_id]
    assert_alpaca_error(on_default.get(f"/v2/orders/{order_id}"), 404)
    assert_alpaca_error(on_default.delete(f"/v2/orders/{order_id}"), 404)
    assert on_default.get("/v2/positions").json() == []
    assert [p["symbol"] for p in on_further.get("/v2/positions").json()] == ["AAPL"]
    assert_alpaca_error(on_default.delete("/v2/positions/AAPL"), 404)
    activities = on_default.get("/v2/account/activities").json()
    assert {a["activity_type"] for a in activities} <= {"CSD"}  # its opening deposit only
    # Closing everything through one key leaves the other account's position alone.
    assert on_default.delete("/v2/positions").status_code == 207
    assert selectors.position_symbols(account_id=further.pk) == ["AAPL"]
    # A reset through one key resets its own account only.
    assert on_default.post("/v2/account/reset").status_code == 200
    assert selectors.position_symbols(account_id=further.pk) == ["AAPL"]


def _logged_in(account: Account) -> Client:
    client = Client()
    client.force_login(account.user)
    return client


def test_a_session_acts_on_its_selected_account(two_accounts: tuple[Account, Account], asset: Asset) -> None:
    default, further = two_accounts
    browser = _logged_in(default)
    assert browser.get("/v2/account").json()["account_number"] == default.account_number
    page = browser.get("/")
    assert page.status_code == 200
    assert b'id="account-switcher"' in page.content

    switched = browser.post("/account/select", {"account_id": str(further.pk)})
    assert (switched.status_code, switched["Location"]) == (302, "/")
    assert browser.get("/v2/account").json()["account_number"] == further.account_number
    placed = browser.post(
        "/v2/orders",
        {"symbol": "AAPL", "qty": "2", "side": "buy", "type": "market", "time_in_force": "day"},
        content_type="application/json",
    )
    assert placed.status_code == 200, placed.content
    assert Order.objects.get(pk=placed.json()["id"]).account_id == further.pk
    assert browser.get("/v2/dashboard/bootstrap").json()["account"]["id"] == str(further.pk)
    # The keys page lists and makes keys of the selected account.
    browser.post("/keys", {"label": "bot"})
    assert further.api_keys.count() == 1 and default.api_keys.count() == 0
    # Another browser of the same user still acts on the default account.
    assert _logged_in(default).get("/v2/account").json()["account_number"] == default.account_number

    # Back to the default one.
    browser.post("/account/select", {"account_id": str(default.pk)})
    assert browser.get("/v2/account").json()["account_number"] == default.account_number


def test_a_session_cannot_select_an_account_not_its_users(
    two_accounts: tuple[Account, Account], make_account: MakeAccount
) -> None:
    default, further = two_accounts
    stranger = make_account()
    browser = _logged_in(default)
    for wrong in (str(stranger.pk), "not-a-uuid", ""):
        assert browser.post("/account/select", {"account_id": wrong}).status_code == 404
    assert browser.get("/v2/account").json()["account_number"] == default.account_number
    assert browser.get("/account/select").status_code == 405
    assert Client().post("/account/select", {"account_id": str(further.pk)}).status_code == 302  # to login


def test_a_selected_account_that_is_gone_falls_back_to_the_default(
    two_accounts: tuple[Account, Account],
) -> None:
    default, further = two_accounts
    browser = _logged_in(default)
    browser.post("/account/select", {"account_id": str(further.pk)})
    Account.objects.filter(pk=further.pk).delete()
    assert browser.get("/v2/account").json()["account_number"] == default.account_number


def test_the_switcher_shows_only_with_several_accounts(make_account: MakeAccount) -> None:
    account = make_account()
    page = _logged_in(account).get("/")
    assert page.status_code == 200
    assert b"account-switcher" not in page.content


@pytest.mark.usefixtures("clean_cache")
def test_rate_limits_count_per_account(
    settings: SettingsWrapper, two_accounts: tuple[Account, Account], asset: Asset
) -> None:
    """Each account has its own budget, shared by its keys and the sessions acting on it; another
    account of the same user is not throttled by it."""
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "read": "3/min"}
    default, further = two_accounts
    first_key, second_key = key_client(default), key_client(default)
    assert [first_key.get("/v2/account").status_code for _ in range(2)] == [200, 200]
    assert second_key.get("/v2/account").status_code == 200
    assert_alpaca_error(first_key.get("/v2/account"), 429)
    assert_alpaca_error(second_key.get("/v2/account"), 429)
    on_session = _logged_in(default).get("/v2/account")  # a session on the default account
    assert on_session.status_code == 429

    assert [key_client(further).get("/v2/account").status_code for _ in range(3)] == [200] * 3
    browser = _logged_in(default)
    browser.post("/account/select", {"account_id": str(further.pk)})
    assert browser.get("/v2/account").status_code == 429  # the further account's budget is spent too


def test_an_order_through_a_key_moves_only_its_accounts_cash(
    two_accounts: tuple[Account, Account], asset: Asset
) -> None:
    default, further = two_accounts
    assert post_order(key_client(further), symbol="AAPL", qty="1").status_code == 200
    default.refresh_from_db()
    further.refresh_from_db()
    assert default.cash_cents == 1_000_000
    assert further.cash_cents < 2_000_000
