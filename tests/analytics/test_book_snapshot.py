"""The book is read in one snapshot (config/read_snapshot.py): an account reset committed by
another connection between the book's statements leaves the book as it was before the reset,
never cash from before it with positions from after it. Real threads and connections, on SQLite
(WAL) and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from analytics import services
from analytics.services import AccountState
from tests.builders import set_quote, shares
from tests.snapshot_support import reset_after_account_selects
from trading import services as trading
from trading.models import Account, Asset

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def account(make_asset: Callable[..., Asset], make_account: Callable[..., Account]) -> Account:
    make_asset("AAPL", price="100.00")
    account = make_account(cash=1_000_000)
    order = trading.order_place(
        account_id=account.pk,
        request=trading.OrderRequest(
            symbol="AAPL", qty=shares(10), side="buy", type="market", time_in_force="day"
        ),
    )
    assert order.status == "filled"
    set_quote("AAPL", price="50.00")  # holdings worth less than they cost: a reset changes equity
    return account


def _state(book: services.Book, account: Account) -> AccountState:
    (state,) = [state for state in book.accounts if state.account_id == account.pk]
    return state


def test_a_reset_between_the_books_statements_is_not_half_seen(account: Account) -> None:
    before = _state(services.book_load(account_ids=[account.pk]), account)
    assert before.holdings_units > 0
    with reset_after_account_selects(account):
        during = _state(services.book_load(account_ids=[account.pk]), account)
    after = _state(services.book_load(account_ids=[account.pk]), account)
    assert after.holdings_units == 0 and after.equity_cents != before.equity_cents  # the reset is real
    assert (during.cash_cents, during.holdings_units, during.equity_cents) == (
        before.cash_cents,
        before.holdings_units,
        before.equity_cents,
    )


def test_without_the_snapshot_the_same_read_is_torn(account: Account) -> None:
    """The control: the book's statements each in their own snapshot pair the cash from before the
    reset with the positions from after it, an equity the account never had."""
    before = _state(services.book_load(account_ids=[account.pk]), account)
    with reset_after_account_selects(account):
        torn = _state(services._book_read(now=services.timezone.now(), account_ids=[account.pk]), account)
    after = _state(services.book_load(account_ids=[account.pk]), account)
    assert torn.cash_cents == before.cash_cents and torn.holdings_units == 0
    assert torn.equity_cents not in (before.equity_cents, after.equity_cents)


def test_the_analytics_job_reads_its_series_and_tallies_in_the_books_snapshot(account: Account) -> None:
    """analytics_refresh_all's analytics rows come from one snapshot with its book: the reset
    committed after the accounts were read shows in none of them (the next run sees it)."""
    before = _state(services.book_load(account_ids=[account.pk]), account)
    with reset_after_account_selects(account):
        services.analytics_refresh_all()
    row = services.AccountAnalytics.objects.get(account=account)
    assert row.equity_cents == before.equity_cents
    services.analytics_refresh_all()
    row.refresh_from_db()
    assert row.equity_cents == _state(services.book_load(account_ids=[account.pk]), account).equity_cents
    assert row.equity_cents != before.equity_cents
