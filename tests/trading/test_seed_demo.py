"""seed_demo: the universe, reproducible consistent history, one tick per symbol, demo logins."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import stat
from fractions import Fraction
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Max, Min
from rest_framework.test import APIClient

from realtime.market import resume_starts, unbarred_ticks
from trading import calendar, services
from trading.demo_history import Bars, HistoryGenerator
from trading.management.commands.seed_demo import read_logins
from trading.models import Account, ApiKey, Asset, CashEntry, DailyBar, Exchange, MinuteBar, StockPriceHistory
from trading.universe import GICS_SECTORS, SYMBOL_PATTERN, assets_from_records, sp500, starting_price_units

NOW = "2025-03-12T15:30:20+00:00"  # a Wednesday: 3 trading days back are Mon-Wed in either calendar mode
SMALL = ["--symbols", "20", "--days", "3", "--minutes", "30", "--users", "2", "--now", NOW]


def seed(tmp_path: Path, *args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, "--credentials-file", str(tmp_path / "creds.txt"), stdout=out)
    return out.getvalue()


def printed_keys(output: str) -> dict[str, str]:
    return dict(re.findall(r"API key id: (PK\w+)\s+secret: (\S+)", output))


# --- the universe --------------------------------------------------------------------------------


def test_sp500_universe_is_clean() -> None:
    universe = sp500()
    symbols = [asset.symbol for asset in universe]
    assert len(universe) >= 490
    assert len(set(symbols)) == len(symbols)
    assert all(SYMBOL_PATTERN.fullmatch(symbol) for symbol in symbols)
    assert {asset.exchange for asset in universe} == {Exchange.NYSE, Exchange.NASDAQ}
    assert {asset.sector for asset in universe} <= set(GICS_SECTORS)
    assert all(100_000 <= asset.initial_price_units <= 9_000_000 for asset in universe)  # $10 to $900
    assert all(asset.initial_price_units % 100 == 0 for asset in universe)  # whole cents
    by_symbol = {asset.symbol: asset for asset in universe}
    assert by_symbol["AAPL"].exchange == "NASDAQ"
    assert by_symbol["AAPL"].sector == "Information Technology"
    assert by_symbol["MMM"].exchange == "NYSE"
    assert symbols[0] == "AAPL"  # well-known names first


def test_universe_mapping_rules() -> None:
    records: list[dict[str, Any]] = [
        {
            "symbol": "ZZZ",
            "name": "Zed",
            "industries": ["Energy", "Utilities"],
            "symbols": [{"google": "NASDAQ:ZZZ"}],
        },
        {"symbol": "ZZZ", "name": "Duplicate", "industries": [], "symbols": []},
        {"symbol": "BAD-1", "name": "Bad symbol", "industries": [], "symbols": []},
        {
            "symbol": "QQQQ",
            "name": "No venue",
            "industries": ["Healthcare"],
            "symbols": [{"google": "FRA:Q"}],
        },
        {
            "symbol": "YYY",
            "name": "From the note",
            "industries": ["Financials", "Real Estate"],
            "symbols": [{"google": "YYY"}],
            "metadata": {"traded_as": "Nasdaq : YYY S&P 500 component"},
        },
    ]
    assets = {asset.symbol: asset for asset in assets_from_records(records)}
    assert set(assets) == {"ZZZ", "QQQQ", "YYY"}
    assert (assets["ZZZ"].name, assets["ZZZ"].sector, assets["ZZZ"].exchange) == (
        "Zed",
        "Utilities",
        "NASDAQ",
    )
    assert (assets["QQQQ"].sector, assets["QQQQ"].exchange) == ("Health Care", "NYSE")  # alias; default venue
    assert (assets["YYY"].sector, assets["YYY"].exchange) == ("Real Estate", "NASDAQ")
    assert starting_price_units("ZZZ") == starting_price_units("ZZZ") == assets["ZZZ"].initial_price_units


# --- history -------------------------------------------------------------------------------------


def _as_rows(bars: Bars) -> list[tuple[object, ...]]:
    return list(bars.rows("X"))


def test_history_is_reproducible_from_the_seed() -> None:
    now = dt.datetime.fromisoformat(NOW)
    asset = sp500()[0]

    def run(seed: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        history = HistoryGenerator(seed=seed, now=now, days=5, minute_days=2).history(asset)
        return _as_rows(history.daily), _as_rows(history.minute)

    assert run(42) == run(42)
    assert run(42) != run(7)


def test_history_does_not_depend_on_the_other_symbols() -> None:
    now = dt.datetime.fromisoformat(NOW)
    first, second = sp500()[0], sp500()[1]
    alone = HistoryGenerator(seed=1, now=now, days=3, minutes=30)
    together = HistoryGenerator(seed=1, now=now, days=3, minutes=30)
    together.history(first)
    assert _as_rows(alone.history(second).minute) == _as_rows(together.history(second).minute)
    assert _as_rows(alone.history(second).daily) == _as_rows(together.history(second).daily)


@pytest.mark.django_db
def test_seed_demo_creates_market_users_and_keys(tmp_path: Path) -> None:
    output = seed(tmp_path, *SMALL)

    assert Asset.objects.count() == 20
    assert set(Asset.objects.values_list("symbol", flat=True)) == {a.symbol for a in sp500()[:20]}
    assert DailyBar.objects.count() == 20 * 3
    assert MinuteBar.objects.count() == 20 * 30
    assert StockPriceHistory.objects.count() == 20
    assert set(StockPriceHistory.objects.values_list("seq", flat=True)) == {1}
    assert "history 100% (20/20 symbols" in output

    # Minute bars cover the 30 minutes before --now, one per minute.
    span = MinuteBar.objects.aggregate(first=Min("start"), last=Max("start"))
    assert span["last"] == dt.datetime(2025, 3, 12, 15, 29, tzinfo=dt.UTC)
    assert span["first"] == dt.datetime(2025, 3, 12, 15, 0, tzinfo=dt.UTC)

    # The newest close, the tick and the asset's starting price are the same price.
    for asset in Asset.objects.all():
        tick = StockPriceHistory.objects.get(symbol=asset.symbol)
        daily = list(DailyBar.objects.filter(symbol=asset.symbol).order_by("start"))
        minute = list(MinuteBar.objects.filter(symbol=asset.symbol).order_by("start"))
        assert (
            daily[-1].close_units == minute[-1].close_units == tick.price_units == asset.initial_price_units
        )
        assert tick.bid_units < tick.price_units < tick.ask_units
        for bars in (daily, minute):
            for previous, bar in itertools.pairwise(bars):
                assert bar.open_units == previous.close_units
            for bar in bars:
                assert bar.low_units <= min(bar.open_units, bar.close_units)
                assert bar.high_units >= max(bar.open_units, bar.close_units)
                assert bar.volume > 0 and bar.trade_count > 0
                assert bar.low_units <= bar.vwap_units <= bar.high_units
        assert daily[-1].high_units >= max(bar.high_units for bar in minute)
        assert daily[-1].volume >= sum(bar.volume for bar in minute)

    # Logins: a staff superuser and two demo users with accounts and working keys.
    users = get_user_model().objects
    admin = users.get(username="admin")
    assert admin.is_staff and admin.is_superuser
    assert set(users.values_list("username", flat=True)) == {"admin", "demo1", "demo2"}
    assert Account.objects.count() == 2
    assert CashEntry.objects.filter(kind=CashEntry.Kind.DEPOSIT).count() == 2
    keys = printed_keys(output)
    assert len(keys) == 2 == ApiKey.objects.count()
    for key_id, secret in keys.items():
        assert services.api_key_secret_hmac(secret) == ApiKey.objects.get(key_id=key_id).secret_hmac

    saved = {login.username: login for login in read_logins(tmp_path / "creds.txt")}
    assert set(saved) == {"admin", "demo1", "demo2"}
    assert stat.S_IMODE((tmp_path / "creds.txt").stat().st_mode) == 0o600
    for login in saved.values():
        assert users.get(username=login.username).check_password(login.password)
        assert login.password in output
    assert {
        saved["demo1"].api_key_id: saved["demo1"].api_secret,
        saved["demo2"].api_key_id: saved["demo2"].api_secret,
    } == keys


@pytest.mark.django_db
def test_if_empty_on_a_seeded_database_only_prints_the_logins(tmp_path: Path) -> None:
    first = seed(tmp_path, *SMALL)
    counts = [
        model.objects.count() for model in (Asset, DailyBar, MinuteBar, StockPriceHistory, ApiKey, Account)
    ]

    again = seed(tmp_path, "--if-empty", *SMALL)

    assert [
        model.objects.count() for model in (Asset, DailyBar, MinuteBar, StockPriceHistory, ApiKey, Account)
    ] == counts
    assert "nothing to seed" in again
    assert printed_keys(again) == printed_keys(first)


@pytest.mark.django_db
def test_if_empty_on_an_empty_database_seeds(tmp_path: Path) -> None:
    output = seed(tmp_path, "--if-empty", "--symbols", "3", "--days", "2", "--minutes", "5", "--users", "1")
    assert Asset.objects.count() == 3
    assert len(printed_keys(output)) == 1


@pytest.mark.django_db
def test_rerun_adds_what_is_missing_and_keeps_the_rest(tmp_path: Path) -> None:
    first = seed(tmp_path, *SMALL)
    bars_before = DailyBar.objects.count()
    first_keys = printed_keys(first)

    output = seed(tmp_path, "--symbols", "22", "--days", "3", "--minutes", "30", "--users", "3", "--now", NOW)

    assert Asset.objects.count() == 22
    assert DailyBar.objects.count() == bars_before + 2 * 3
    assert StockPriceHistory.objects.count() == 22
    assert "20 assets already exist" in output
    assert "left unchanged: admin, demo1, demo2" in output
    assert ApiKey.objects.count() == 3
    # Every login, old and new, is still listed; the old secrets are unchanged.
    saved = {login.username: login for login in read_logins(tmp_path / "creds.txt")}
    assert set(saved) == {"admin", "demo1", "demo2", "demo3"}
    keys = printed_keys(output)
    assert first_keys.items() <= keys.items()
    assert len(keys) == 3


@pytest.mark.django_db
def test_negative_counts_are_refused(tmp_path: Path) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--days"):
        seed(tmp_path, "--days", "-1")
    with pytest.raises(CommandError, match="--now"):
        seed(tmp_path, "--now", "yesterday")


def test_real_hours_history_stops_at_the_last_close(settings: Any) -> None:
    settings.MARKET_HOURS = "xnys"
    sunday = dt.datetime(2025, 3, 16, 12, 0, tzinfo=dt.UTC)
    asset = sp500()[0]

    history = HistoryGenerator(seed=42, now=sunday, days=3, minutes=120).history(asset)

    assert [bar.date() for bar in history.daily.starts] == [dt.date(2025, 3, d) for d in (12, 13, 14)]
    friday_close = dt.datetime(2025, 3, 14, 20, 0, tzinfo=dt.UTC)  # 16:00 New York
    assert len(history.minute) == 120
    assert history.minute.starts[-1] == friday_close - dt.timedelta(minutes=1)
    assert history.daily.close[-1] == history.minute.close[-1] == asset.initial_price_units
    assert history.tick.recorded_at == friday_close - dt.timedelta(milliseconds=1)  # in the last minute

    # Fifteen minutes after Monday's open, the window reaches back into Friday's session.
    monday_early = HistoryGenerator(
        seed=42, now=dt.datetime(2025, 3, 17, 13, 45, tzinfo=dt.UTC), days=3, minutes=120
    )
    starts = monday_early.history(asset).minute.starts
    assert len(starts) == 120
    assert starts[-15] == dt.datetime(2025, 3, 17, 13, 30, tzinfo=dt.UTC)  # Monday's open
    assert starts[-16] == friday_close - dt.timedelta(minutes=1)


def _aggregate(minutes: list[MinuteBar]) -> tuple[int, ...]:
    volume = sum(bar.volume for bar in minutes)
    return (
        minutes[0].open_units,
        max(bar.high_units for bar in minutes),
        min(bar.low_units for bar in minutes),
        minutes[-1].close_units,
        volume,
        sum(bar.trade_count for bar in minutes),
        round(Fraction(sum(bar.vwap_units * bar.volume for bar in minutes), volume)),
    )


def _daily(bar: DailyBar) -> tuple[int, ...]:
    return (
        bar.open_units, bar.high_units, bar.low_units, bar.close_units, bar.volume, bar.trade_count,
        bar.vwap_units,
    )  # fmt: skip


def _check_seeded_history(
    symbols: list[str], *, days: int, minute_days: int, minutes_per_day: list[int]
) -> None:
    """Counts, the minute bars of each day aggregating to its daily bar, unbroken chains, and the
    stored tick continuing from the newest close."""
    for symbol in symbols:
        daily = list(DailyBar.objects.filter(symbol=symbol).order_by("start"))
        minute = list(MinuteBar.objects.filter(symbol=symbol).order_by("start"))
        assert len(daily) == days and len(minute) == sum(minutes_per_day)
        by_day: dict[dt.datetime, list[MinuteBar]] = {}
        for bar in minute:
            by_day.setdefault(calendar.day_start(calendar.trading_day_of(bar.start)), []).append(bar)
        assert [len(bars) for bars in by_day.values()] == minutes_per_day
        days_by_start = {bar.start: bar for bar in daily}
        assert list(by_day) == [bar.start for bar in daily[-minute_days:]]
        for start, day_minutes in by_day.items():
            assert _daily(days_by_start[start]) == _aggregate(day_minutes), start
        chains: tuple[list[DailyBar] | list[MinuteBar], ...] = (daily, minute)
        for chain in chains:
            for previous, following in itertools.pairwise(chain):
                assert following.open_units == previous.close_units
            for each in chain:
                assert each.low_units <= min(each.open_units, each.close_units) <= each.high_units
                assert each.low_units <= each.vwap_units <= each.high_units and each.volume > 0
        tick = StockPriceHistory.objects.get(symbol=symbol)
        assert (
            tick.price_units == minute[-1].close_units == Asset.objects.get(symbol=symbol).initial_price_units
        )
        assert minute[-1].start <= tick.recorded_at < minute[-1].start + dt.timedelta(minutes=1)
    # The market resumes from that close, and no stored tick is left outside a bar.
    assets = list(Asset.objects.filter(symbol__in=symbols))
    assert {start.symbol: start.price_units for start in resume_starts(assets)} == {
        asset.symbol: asset.initial_price_units for asset in assets
    }
    assert unbarred_ticks(symbols=symbols) == []


@pytest.mark.django_db
def test_default_history_is_400_days_and_5_days_of_consistent_minutes(tmp_path: Path) -> None:
    output = seed(tmp_path, "--symbols", "3", "--users", "0", "--now", NOW)

    symbols = [asset.symbol for asset in sp500()[:3]]
    # 2025-03-12 15:30:20 UTC is 11:30 in New York; the 9th of March has 23 hours (DST begins).
    _check_seeded_history(symbols, days=400, minute_days=5, minutes_per_day=[1440, 1380, 1440, 1440, 690])
    assert DailyBar.objects.filter(symbol=symbols[0]).aggregate(first=Min("start"))["first"] == (
        calendar.day_start(dt.date(2024, 2, 7))
    )
    assert "400 trading days of daily bars, minute bars for 5 trading days" in output
    assert "history 100% (3/3 symbols" in output


@pytest.mark.django_db
def test_real_hours_history_has_the_nyse_sessions(tmp_path: Path, settings: Any) -> None:
    settings.MARKET_HOURS = "xnys"
    seed(tmp_path, "--symbols", "2", "--users", "0", "--days", "30", "--now", "2025-03-16T12:00:00+00:00")

    symbols = [asset.symbol for asset in sp500()[:2]]
    _check_seeded_history(symbols, days=30, minute_days=5, minutes_per_day=[390] * 5)
    first = MinuteBar.objects.filter(symbol=symbols[0]).aggregate(first=Min("start"))["first"]
    assert first == dt.datetime(2025, 3, 10, 13, 30, tzinfo=dt.UTC)  # Monday's open, 09:30 New York
    weekdays = {bar.weekday() for bar in DailyBar.objects.values_list("start", flat=True)}
    assert weekdays <= {0, 1, 2, 3, 4}  # sessions only


@pytest.mark.django_db
def test_a_200_day_average_from_the_seeded_daily_bars(tmp_path: Path, make_account: Any) -> None:
    seed(tmp_path, "--symbols", "1", "--users", "0", "--minute-days", "1", "--now", NOW)
    key, secret = services.api_key_create(account_id=make_account().pk)
    api = APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
    symbol = sp500()[0].symbol

    def bars(**params: str) -> Any:
        response = api.get(
            "/v2/stocks/bars", {"symbols": symbol, "timeframe": "1Day", "limit": "200", **params}
        )
        assert response.status_code == 200, response.content
        return response.json()

    newest = bars(sort="desc")["bars"][symbol]
    stored = list(DailyBar.objects.filter(symbol=symbol).order_by("-start")[:200])
    assert len(newest) == 200 and newest[0]["t"] == "2025-03-12T04:00:00Z"  # today's bar so far
    sma = sum(bar["c"] for bar in newest) / 200
    assert sma == pytest.approx(sum(bar.close_units for bar in stored) / 200 / 10_000)
    # The same 200 days, oldest first, from a start 199 trading days back.
    ranged = bars(start="2024-08-25T04:00:00Z")
    assert ranged["bars"][symbol] == newest[::-1] and ranged["next_page_token"] is None
    # Without a start, the first page holds the oldest 200 of the 400 and a token for the rest.
    oldest = bars()
    assert len(oldest["bars"][symbol]) == 200 and oldest["next_page_token"] is not None
