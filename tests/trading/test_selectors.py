"""The read side: valuation, last_equity, history reconstruction, keyset pages, query counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from functools import partial

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.builders import set_quote, shares
from tests.clock import boundary_instants, new_york
from trading import calendar, selectors, services
from trading.book import Flow
from trading.models import Account, Asset, CashEntry, DailyBar, Order, Position, StockPriceHistory
from trading.quotes import LatestQuote, latest_quotes_store
from trading.units import QTY_SCALE

# Every test runs with the wall clock stopped at NOW, unless it is pinned to other instants
# (boundary_instants: either side of New York midnight, a month's end, the DST changes).
NOW = new_york(2026, 3, 4, 15, 0)
pytestmark = [pytest.mark.django_db, pytest.mark.time_machine(NOW, tick=False)]


def _day(offset: int) -> dt.datetime:
    """The start of the trading day ``offset`` days from today (the frozen clock's today)."""
    return calendar.day_start(calendar.trading_day_of(timezone.now()) + dt.timedelta(days=offset))


def _account_since(start: dt.datetime, cash_cents: int = 1_000_000) -> Account:
    user = get_user_model().objects.create_user(username=f"u{start.timestamp()}", password="pw-123456!")
    return services.account_open(user=user, cash_cents=cash_cents, now=start)


def _trade(account: Account, symbol: str, qty: int, side: str, at: dt.datetime) -> Order:
    request = services.OrderRequest(
        symbol=symbol, qty=shares(qty), side=side, type="market", time_in_force="day"
    )
    order = services.order_place(account_id=account.pk, request=request, now=at)
    # Selectors read the balances off the Account they are given, as a request loads it.
    account.refresh_from_db()
    return order


def _close(symbol: str, day: dt.datetime, close_units: int) -> None:
    DailyBar.objects.create(
        symbol=symbol, start=day, open_units=close_units, high_units=close_units, low_units=close_units,
        close_units=close_units, volume=1, trade_count=1, vwap_units=close_units,
    )  # fmt: skip


# --- Valuation and last_equity -------------------------------------------------------------------


@boundary_instants()
def test_shares_held_since_yesterday_gain_from_yesterdays_close(
    now: dt.datetime, make_asset: Callable[..., Asset]
) -> None:
    account = _account_since(_day(-2))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-1) + dt.timedelta(hours=1))  # at 100.01
    _close("AAPL", _day(-1), 950_000)
    set_quote("AAPL", price="102.00")

    summary = selectors.account_summary(account=account, now=timezone.now())

    (position,) = summary.positions
    assert position.lastday_price == 950_000
    assert position.unrealized_intraday_pl == 10 * (1_020_000 - 950_000)
    assert position.unrealized_pl == 10 * 1_020_000 - 1_000_100 * 10
    assert summary.last_equity == (1_000_000 - 100_010) * 100 + 10 * 950_000
    assert summary.equity == (1_000_000 - 100_010) * 100 + 10 * 1_020_000


@boundary_instants()
def test_shares_bought_today_gain_from_their_price(
    now: dt.datetime, make_asset: Callable[..., Asset]
) -> None:
    account = _account_since(_day(-2))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-1) + dt.timedelta(hours=1))
    _close("AAPL", _day(-1), 950_000)
    _trade(account, "AAPL", 10, "buy", timezone.now())  # at 100.01, today
    set_quote("AAPL", price="102.00")

    (position,) = selectors.portfolio_positions(account=account)

    assert position.intraday_basis == 10 * 950_000 + 10 * 1_000_100
    assert position.unrealized_intraday_pl == 20 * 1_020_000 - (10 * 950_000 + 10 * 1_000_100)


@boundary_instants()
def test_shares_sold_today_leave_at_average_cost(now: dt.datetime, make_asset: Callable[..., Asset]) -> None:
    account = _account_since(_day(-2))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-1) + dt.timedelta(hours=1))
    _close("AAPL", _day(-1), 950_000)
    _trade(account, "AAPL", 4, "sell", timezone.now())
    set_quote("AAPL", price="102.00")

    summary = selectors.account_summary(account=account)

    (position,) = summary.positions
    assert position.qty == shares(6)
    assert position.intraday_basis == 6 * 950_000
    # The sale does not move last_equity: it is yesterday's state.
    assert summary.last_equity == (1_000_000 - 100_010) * 100 + 10 * 950_000


@boundary_instants()
def test_a_position_closed_today_still_counts_in_last_equity(
    now: dt.datetime, make_asset: Callable[..., Asset]
) -> None:
    account = _account_since(_day(-2))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-1) + dt.timedelta(hours=1))
    _close("AAPL", _day(-1), 950_000)
    _trade(account, "AAPL", 10, "sell", timezone.now())

    summary = selectors.account_summary(account=account)

    assert summary.positions == []
    assert summary.last_equity == (1_000_000 - 100_010) * 100 + 10 * 950_000


@boundary_instants()
def test_last_equity_after_a_reset_today_is_the_reset_cash(
    now: dt.datetime, make_asset: Callable[..., Asset], settings
) -> None:
    settings.ACCOUNT_STARTING_CASH = "5000.00"
    account = _account_since(_day(-2))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-1))
    account = services.account_reset(account_id=account.pk)

    assert selectors.account_summary(account=account).last_equity == 500_000 * 100


def test_short_positions_have_negative_market_value(make_asset: Callable[..., Asset]) -> None:
    account = _account_since(_day(-1))
    Account.objects.filter(pk=account.pk).update(shorting_enabled=True)
    account.refresh_from_db()
    make_asset("AAPL", price="100.00", shortable=True)
    _trade(account, "AAPL", 5, "sell", timezone.now())  # at 99.99
    set_quote("AAPL", price="98.00")

    summary = selectors.account_summary(account=account)

    (position,) = summary.positions
    assert position.side == "short" and position.market_value == -5 * 980_000
    assert position.unrealized_pl == -5 * 980_000 + 5 * 999_900  # a gain: the price fell
    assert summary.short_market_value == -5 * 980_000
    assert summary.equity == (1_000_000 + 49_995) * 100 - 5 * 980_000


# --- Property 2 ---------------------------------------------------------------------------------


def _holdings(account: Account, count: int, prefix: str) -> list[str]:
    assets = Asset.objects.bulk_create(
        Asset(symbol=f"{prefix}{i:04d}", name=f"{prefix} {i}", sector="Test") for i in range(count)
    )
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=a.symbol, seq=1, price_units=1_000_000, size=1, bid_units=999_900, bid_size=1,
            ask_units=1_000_100, ask_size=1, recorded_at=NOW,
        )
        for a in assets
    )  # fmt: skip
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol=a.symbol, start=_day(-1), open_units=1, high_units=1, low_units=1, close_units=990_000,
            volume=1, trade_count=1, vwap_units=1,
        )
        for a in assets
    )  # fmt: skip
    Position.objects.bulk_create(
        Position(account=account, asset=a, qty=shares(3), cost_basis_cents=30_000) for a in assets
    )
    return [a.symbol for a in assets]


def _count(read: Callable[[], object]) -> int:
    with CaptureQueriesContext(connection) as captured:
        read()
    return len(captured)


@pytest.mark.parametrize("quotes_in_redis", [False, True])
def test_property_2_portfolio_reads_take_constant_queries(make_account, quotes_in_redis: bool) -> None:
    """Property 2: account_summary and portfolio_positions use as many queries for 200 holdings
    as for 1, whether the latest quotes come from Redis or the database."""
    small, large = make_account(), make_account()
    symbols = _holdings(small, 1, "A") + _holdings(large, 200, "B")
    if quotes_in_redis:
        latest_quotes_store(
            quotes=[LatestQuote(s, 1, 1_000_000, 1, 999_900, 1, 1_000_100, 1, NOW) for s in symbols]
        )

    for read in (selectors.account_summary, selectors.portfolio_positions):
        small_count = _count(partial(read, account=small))
        large_count = _count(partial(read, account=large))
        assert small_count == large_count, read.__name__
        # the book (positions, today's fills, closes and for the summary the ledger: trading/book.py),
        # and the newest stored ticks when Redis has no quotes
        assert small_count == (1 if quotes_in_redis else 2), read.__name__
    assert len(selectors.portfolio_positions(account=large)) == 200


def test_property_2_history_takes_constant_queries(make_account) -> None:
    """Property 2: portfolio history reads a fixed number of queries whatever the holdings."""
    small, large = make_account(), make_account()
    _holdings(small, 1, "A")
    _holdings(large, 200, "B")
    for timeframe in ("1D", "15Min"):
        counts = [
            _count(partial(selectors.portfolio_history, account=owner, timeframe=timeframe))
            for owner in (small, large)
        ]
        assert counts[0] == counts[1], timeframe


# --- Portfolio history --------------------------------------------------------------------------


@boundary_instants()
def test_daily_history_uses_each_days_close(now: dt.datetime, make_asset: Callable[..., Asset]) -> None:
    account = _account_since(_day(-3))
    make_asset("AAPL", price="100.00")
    _trade(account, "AAPL", 10, "buy", _day(-2) + dt.timedelta(hours=12))  # at 100.01
    _close("AAPL", _day(-3), 990_000)
    _close("AAPL", _day(-2), 1_010_000)
    _close("AAPL", _day(-1), 1_050_000)
    set_quote("AAPL", price="110.00")

    history = selectors.portfolio_history(account=account, period="1W", timeframe="1D")

    assert history.timestamp == [int(_day(offset).timestamp()) for offset in (-3, -2, -1, 0)]
    cash = 1_000_000 - 100_010
    assert history.base_value == 10_000.0
    assert history.equity == [
        10_000.0,
        pytest.approx((cash * 100 + 10 * 1_010_000) / 10_000),
        pytest.approx((cash * 100 + 10 * 1_050_000) / 10_000),
        pytest.approx((cash * 100 + 10 * 1_100_000) / 10_000),
    ]
    assert history.profit_loss[-1] == pytest.approx(history.equity[-1] - 10_000)


def test_history_before_the_account_existed_is_empty(account: Account) -> None:
    history = selectors.portfolio_history(account=account, end=timezone.now() - dt.timedelta(days=5))
    assert history.timestamp == [] and history.equity == []


def test_period_arithmetic() -> None:
    end = calendar.day_start(dt.date(2025, 3, 31)) + dt.timedelta(hours=10)
    assert selectors._period_start("1D", end) == calendar.day_start(dt.date(2025, 3, 31))
    assert selectors._period_start("1W", end) == calendar.day_start(dt.date(2025, 3, 25))
    assert selectors._period_start("1M", end) == calendar.day_start(dt.date(2025, 3, 1))
    assert selectors._period_start("1A", end) == calendar.day_start(dt.date(2024, 4, 1))


# --- Orders and activities --------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(min_value=-5, max_value=2_000))
def test_property_3_order_pages_never_exceed_the_limit(account: Account, asset: Asset, limit: int) -> None:
    """Property 3: a page never holds more orders than asked for, nor more than 500."""
    if not Order.objects.filter(account=account).exists():
        Order.objects.bulk_create(
            Order(account=account, asset=asset, client_order_id=f"c{i}", side="buy", type="limit",
                  time_in_force="gtc", qty=shares(1), limit_price_units=1, submitted_at=NOW - dt.timedelta(seconds=i))
            for i in range(520)
        )  # fmt: skip
    page = selectors.orders_list(account_id=account.pk, status="all", limit=limit)
    assert len(page) == min(max(limit, 1), 500)
    assert [order.submitted_at for order in page] == sorted(
        (order.submitted_at for order in page), reverse=True
    )


def test_property_37_activity_pages_concatenate_exactly(account: Account, asset: Asset) -> None:
    """Property 37: keyset pages of activities join to the full ordered list, even when several
    rows share a timestamp and new rows arrive between pages."""
    same_time = timezone.now()
    for _ in range(4):
        services.account_grant_cash(account_id=account.pk, amount_cents=100, now=same_time)
    for _ in range(3):
        _trade(account, "AAPL", 1, "buy", same_time)
    expected = [activity.id for activity in selectors.account_activities(account_id=account.pk)]
    assert len(expected) == 8

    for direction in ("desc", "asc"):
        seen: list[str] = []
        token = None
        while True:
            page = selectors.account_activities(
                account_id=account.pk, direction=direction, page_size=3, page_token=token
            )
            if not page:
                break
            seen.extend(activity.id for activity in page)
            token = page[-1].id
            if direction == "asc" and len(seen) == 3:
                # Appended after the reader's position: it must show up once, at the end.
                services.account_grant_cash(
                    account_id=account.pk, amount_cents=1, now=same_time + dt.timedelta(seconds=1)
                )
        if direction == "desc":
            assert seen == expected
        else:
            assert seen[:8] == list(reversed(expected))
            assert len(seen) == 9 and len(set(seen)) == 9


def test_activity_ids_sort_like_their_times(account: Account) -> None:
    entry = CashEntry.objects.get(account=account)
    activity_id = selectors.activity_id(entry.created_at, entry.pk)
    stamp = entry.created_at.astimezone(dt.UTC)
    assert activity_id.startswith(f"{stamp:%Y%m%d%H%M%S}")
    assert activity_id.endswith(f"::{entry.pk}")


def _intraday_basis_by_decimal(*, qty_now: int, start_price: int, flow: Flow) -> int:
    """The intraday basis as it was computed before its integer path: all in Decimal."""
    sign = 1 if qty_now > 0 else -1
    qty_then = qty_now - flow.net_qty
    if qty_now > 0:
        opened_qty, opened_value, closed_qty = flow.buy_qty, flow.buy_value, flow.sell_qty
    else:
        opened_qty, opened_value, closed_qty = flow.sell_qty, flow.sell_value, flow.buy_qty
    held = abs(qty_then) if qty_then * sign > 0 else 0
    basis = Decimal(held * start_price) / QTY_SCALE + opened_value
    held += opened_qty
    if closed_qty and held:
        basis -= basis * min(closed_qty, held) / held
    return sign * int(basis.to_integral_value())


_shares = st.integers(0, 10**6).map(lambda n: n * QTY_SCALE // 1000)  # to a thousandth of a share


@given(
    qty_now=_shares.flatmap(lambda q: st.sampled_from([q or QTY_SCALE, -(q or QTY_SCALE)])),
    start_price=st.integers(0, 10**8),
    buy_qty=st.one_of(st.just(0), _shares),
    sell_qty=st.one_of(st.just(0), _shares),
    buy_value=st.integers(0, 10**12),
    sell_value=st.integers(0, 10**12),
)
def test_intraday_basis_integer_path_matches_the_decimal_one(
    qty_now: int, start_price: int, buy_qty: int, sell_qty: int, buy_value: int, sell_value: int
) -> None:
    """_intraday_basis rounds in integers when nothing closed today: the same figure as the
    Decimal arithmetic it replaced, half-way ties included (prices in units, odd quantities)."""
    flow = Flow(buy_qty=buy_qty, buy_value=buy_value, sell_qty=sell_qty, sell_value=sell_value)
    assert selectors._intraday_basis(
        qty_now=qty_now, start_price=start_price, flow=flow
    ) == _intraday_basis_by_decimal(qty_now=qty_now, start_price=start_price, flow=flow)


def test_intraday_basis_ties_round_half_even() -> None:
    # Half a share (5 x 10^8 units) at 1 and 3 price units: 0.5 and 1.5 units, to 0 and 2.
    half = QTY_SCALE // 2
    assert selectors._intraday_basis(qty_now=half, start_price=1, flow=Flow()) == 0
    assert selectors._intraday_basis(qty_now=half, start_price=3, flow=Flow()) == 2
    assert selectors._intraday_basis(qty_now=-half, start_price=3, flow=Flow()) == -2
