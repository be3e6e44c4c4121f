"""seed_demo: the universe, reproducible consistent history, one tick per symbol, demo logins."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import stat
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Max, Min

from trading import services
from trading.management.commands.seed_demo import HistoryGenerator, read_logins
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


def _as_rows(bars: list[DailyBar] | list[MinuteBar]) -> list[tuple[object, ...]]:
    return [
        (b.symbol, b.start, b.open_units, b.high_units, b.low_units, b.close_units, b.volume, b.vwap_units)
        for b in bars
    ]


def test_history_is_reproducible_from_the_seed() -> None:
    now = dt.datetime.fromisoformat(NOW)
    asset = sp500()[0]

    def run(seed: int) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
        history = HistoryGenerator(seed=seed, now=now, days=5, minutes=60).history(asset)
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


@pytest.mark.django_db
def test_seed_demo_creates_market_users_and_keys(tmp_path: Path) -> None:
    output = seed(tmp_path, *SMALL)

    assert Asset.objects.count() == 20
    assert set(Asset.objects.values_list("symbol", flat=True)) == {a.symbol for a in sp500()[:20]}
    assert DailyBar.objects.count() == 20 * 3
    assert MinuteBar.objects.count() == 20 * 30
    assert StockPriceHistory.objects.count() == 20
    assert set(StockPriceHistory.objects.values_list("seq", flat=True)) == {1}
    assert "history 100% (20/20 symbols)" in output

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

    assert [bar.start.date() for bar in history.daily] == [dt.date(2025, 3, d) for d in (12, 13, 14)]
    friday_close = dt.datetime(2025, 3, 14, 20, 0, tzinfo=dt.UTC)  # 16:00 New York
    assert len(history.minute) == 120
    assert history.minute[-1].start == friday_close - dt.timedelta(minutes=1)
    assert history.daily[-1].close_units == history.minute[-1].close_units == asset.initial_price_units

    # Fifteen minutes after Monday's open, only those fifteen minutes are seeded.
    monday_early = HistoryGenerator(
        seed=42, now=dt.datetime(2025, 3, 17, 13, 45, tzinfo=dt.UTC), days=3, minutes=120
    )
    minutes = monday_early.history(asset).minute
    assert [bar.start for bar in minutes][:1] == [dt.datetime(2025, 3, 17, 13, 30, tzinfo=dt.UTC)]
    assert len(minutes) == 15
