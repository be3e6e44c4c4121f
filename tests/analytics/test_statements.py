"""Statements, a report of the read side: the figures of a finished month, the PDF, the periods a
statement may cover, and the read-only admin."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from analytics import statements
from analytics.models import Statement
from analytics.statement_pdf import statement_pdf_render
from tests.analytics.statement_builders import (
    STARTING_CASH,
    Month,
    account_with_activity,
    daily_close,
    last_month,
)
from tests.builders import shares
from tests.clock import new_york
from tests.trading.api_support import MakeAsset
from trading import services
from trading.errors import InvalidRequest
from trading.models import Account
from trading.units import qty_to_str

pytestmark = pytest.mark.django_db


@pytest.fixture
def month(make_asset: MakeAsset, settings: Any) -> Month:
    settings.COMMISSION_PER_ORDER_CENTS = 100
    make_asset("AAPL", price="100.00")
    month = last_month()
    daily_close("AAPL", month.end - dt.timedelta(days=1), "105.00")
    return month


@pytest.fixture
def trader(month: Month) -> Account:
    return account_with_activity("alice", month)


# --- Figures and PDF ------------------------------------------------------------------------------


def test_statement_figures_reconcile(trader: Account, month: Month) -> None:
    data = statements.statement_data(account_id=trader.pk, period=month.period)

    buy, sell = 100_010, 39_996  # 10 at the ask 100.01, 4 at the bid 99.99, in cents
    assert data.opening_cash_cents == 0
    assert data.external_flows_cents == STARTING_CASH + 50_000
    assert data.trade_cash_cents == sell - buy
    assert data.commissions_cents == 200
    assert data.closing_cash_cents == STARTING_CASH + 50_000 - buy + sell - 200
    assert [(t.symbol, t.side, t.qty) for t in data.trades] == [
        ("AAPL", "buy", shares(10)),
        ("AAPL", "sell", shares(4)),
    ]
    assert [(line.kind, line.amount_cents) for line in data.cash_movements] == [
        ("deposit", STARTING_CASH),
        ("grant", 50_000),
    ]
    # The buy after the month is not in its closing positions; they are valued at its last close.
    assert [(p.symbol, p.qty, p.value_cents) for p in data.closing_positions] == [("AAPL", shares(6), 63_000)]
    assert data.opening_positions == []
    assert data.closing_equity_cents == data.closing_cash_cents + 63_000
    assert data.profit_loss_cents == data.closing_equity_cents - STARTING_CASH - 50_000
    assert data.realized_pl_cents == sum(t.realized_pl_cents for t in data.trades)


def test_fractional_trades_and_positions_show_their_decimals(trader: Account, month: Month) -> None:
    """A fractional sell in the month: the trade, its value as the ledger moved it and the
    closing position keep every decimal."""
    services.order_place(
        account_id=trader.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares("0.25"), side="sell", type="market", time_in_force="day"
        ),
        now=month.at(6.5),
    )
    data = statements.statement_data(account_id=trader.pk, period=month.period)
    last = data.trades[-1]
    assert (last.side, last.qty, last.value_cents) == (
        "sell",
        shares("0.25"),
        2_500,
    )  # 0.25 x 99.99 = 24.9975
    (closing,) = data.closing_positions
    assert (closing.qty, closing.value_cents) == (shares("5.75"), 60_375)  # 5.75 x $105.00
    assert data.realized_pl_cents == sum(t.realized_pl_cents for t in data.trades)
    assert qty_to_str(closing.qty) == "5.75"


def test_pdf_is_a_real_pdf(trader: Account, month: Month) -> None:
    pdf = statement_pdf_render(data=statements.statement_data(account_id=trader.pk, period=month.period))
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")


# --- Periods ---------------------------------------------------------------------------------------


def test_last_period_is_the_previous_trading_month() -> None:
    assert statements.statement_last_period(now=dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.UTC)) == "2026-01"
    assert statements.statement_last_period(now=dt.datetime(2026, 3, 1, 6, 0, tzinfo=dt.UTC)) == "2026-02"
    assert statements.statement_last_period(now=dt.datetime(2026, 1, 15, tzinfo=dt.UTC)) == "2025-12"


@pytest.mark.parametrize(
    ("period", "start", "end"),
    [
        ("2026-03", new_york(2026, 3, 1), new_york(2026, 4, 1)),  # 31 days less the hour DST takes
        ("2026-11", new_york(2026, 11, 1), new_york(2026, 12, 1)),  # 30 days and the hour it gives back
        ("2026-12", new_york(2026, 12, 1), new_york(2027, 1, 1)),
    ],
)
def test_a_period_is_a_calendar_month_in_new_york_time(
    period: str, start: dt.datetime, end: dt.datetime
) -> None:
    assert statements.statement_period_bounds(period=period, now=new_york(2027, 2, 1)) == (start, end)
    with pytest.raises(InvalidRequest, match="has not ended"):
        statements.statement_period_bounds(period=period, now=end - dt.timedelta(microseconds=1))
    assert statements.statement_period_bounds(period=period, now=end)[1] == end


@pytest.mark.parametrize(
    "period", ["2026-13", "2026-00", "2026-1", "26-01", "abc", "", "2026-01-01", "1969-12"]
)
def test_malformed_periods_refused(period: str) -> None:
    with pytest.raises(InvalidRequest):
        statements.statement_period_bounds(period=period, now=timezone.now())


# --- Admin ----------------------------------------------------------------------------------------


def test_staff_read_statements_in_the_admin_and_cannot_add_them(
    admin_client: Client, trader: Account, month: Month
) -> None:
    data = statements.statement_data(account_id=trader.pk, period=month.period)
    statement = Statement.objects.create(
        account=trader,
        period=data.period,
        period_start=data.start,
        period_end=data.end,
        opening_cash_cents=data.opening_cash_cents,
        closing_cash_cents=data.closing_cash_cents,
        opening_equity_cents=data.opening_equity_cents,
        closing_equity_cents=data.closing_equity_cents,
        commissions_cents=data.commissions_cents,
        realized_pl_cents=data.realized_pl_cents,
        trade_count=len(data.trades),
        pdf=f"statements/{trader.pk}/{month.period}.pdf",
    )
    listing = admin_client.get("/admin/analytics/statement/")
    assert listing.status_code == 200 and trader.account_number.encode() in listing.content
    assert admin_client.get(f"/admin/analytics/statement/{statement.pk}/change/").status_code == 200
    assert admin_client.get("/admin/analytics/statement/add/").status_code == 403
