"""Builders for statement tests: an account with activity inside last month (no tests here)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.utils import timezone

from analytics import statements
from tests.builders import shares
from trading import services
from trading.models import Account, DailyBar
from trading.units import PRICE_SCALE

STARTING_CASH = 10_000_000  # $100,000.00


@dataclass(frozen=True)
class Month:
    period: str
    start: dt.datetime
    end: dt.datetime

    def at(self, days: float) -> dt.datetime:
        return self.start + dt.timedelta(days=days)


def last_month() -> Month:
    now = timezone.now()
    period = statements.statement_last_period(now=now)
    start, end = statements.statement_period_bounds(period=period, now=now)
    return Month(period=period, start=start, end=end)


def account_with_activity(username: str, month: Month, *, symbol: str = "AAPL") -> Account:
    """Opened on day 1 of ``month`` ($100,000), granted $500 on day 2, bought 10 ``symbol`` on
    day 3 and sold 4 on day 5; one more buy after the month, which its statement must not show.
    ``symbol`` must exist with a quote."""
    user = get_user_model().objects.create_user(username=username, password="pw-123456!")
    account = services.account_open(user=user, cash_cents=STARTING_CASH, now=month.at(0.5))
    # Opened inside the month (the beat's fan-out only covers accounts that existed then).
    Account.objects.filter(pk=account.pk).update(created_at=month.at(0.5))
    services.account_grant_cash(account_id=account.pk, amount_cents=50_000, memo="bonus", now=month.at(1.5))
    for side, qty, day in (("buy", 10, 2.5), ("sell", 4, 4.5)):
        services.order_place(
            account_id=account.pk,
            request=services.OrderRequest(
                symbol=symbol, qty=shares(qty), side=side, type="market", time_in_force="day"
            ),
            now=month.at(day),
        )
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol=symbol, qty=shares(1), side="buy", type="market", time_in_force="gtc"
        ),
        now=month.end + dt.timedelta(hours=1),
    )
    account.refresh_from_db()
    return account


def daily_close(symbol: str, day_start: dt.datetime, price: str) -> None:
    units = int(float(price) * PRICE_SCALE)
    DailyBar.objects.update_or_create(
        symbol=symbol,
        start=day_start,
        defaults={
            "open_units": units,
            "high_units": units,
            "low_units": units,
            "close_units": units,
            "volume": 1000,
            "trade_count": 10,
            "vwap_units": units,
        },
    )
