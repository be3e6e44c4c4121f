"""Shared fixtures: real database rows built through the services, a real Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from _pytest.mark import ParameterSet
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from pytest_django.fixtures import Settings

from config.cache import CacheConfig, cache_manager, cache_manager_reset
from config.redis_pools import redis_client
from trading import services
from trading.models import Account, Asset, DailyBar, MinuteBar, StockPriceHistory
from trading.units import price_to_units

NEW_YORK = ZoneInfo("America/New_York")


def new_york(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, *, fold: int = 0
) -> dt.datetime:
    """An instant named by New York wall-clock time (``fold=1``: the second 01:xx of the night
    the clocks go back), in UTC: arithmetic on a datetime in a zone with DST is wall-clock
    arithmetic (03:05 EDT minus an hour is 02:05, which does not exist), so tests add and
    subtract on UTC datetimes."""
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=NEW_YORK, fold=fold).astimezone(dt.UTC)


# Instants that tests of time-dependent behaviour are pinned to (with time-machine, e.g.
# ``@pytest.mark.time_machine(instant, tick=False)``, or an explicit ``now``), so they pass at any
# hour: either side of a New York midnight (the trading-day boundary), the last evening of a
# month (already the next month in UTC), and the days the clocks change in New York (2026-03-08
# has 23 hours, 2026-11-01 has 25).
BOUNDARY_INSTANTS: dict[str, dt.datetime] = {
    "before-midnight": new_york(2026, 3, 4, 23, 59, 59),
    "after-midnight": new_york(2026, 3, 5, 0, 0, 1),
    "month-end-evening": new_york(2026, 4, 30, 21, 15),
    "new-month": new_york(2026, 5, 1, 0, 0, 30),
    "spring-forward": new_york(2026, 3, 8, 3, 5),  # five minutes after 02:00 EST became 03:00 EDT
    "fall-back": new_york(2026, 11, 1, 1, 30, fold=1),  # the second 01:30, EST
}


def boundary_instants(*names: str) -> pytest.MarkDecorator:
    """Parametrize ``now`` over the named BOUNDARY_INSTANTS (all of them when none are named),
    with the wall clock stopped there for the whole test, its fixtures included."""
    chosen = names or tuple(BOUNDARY_INSTANTS)
    return pytest.mark.parametrize("now", [frozen_at(BOUNDARY_INSTANTS[name], name=name) for name in chosen])


def frozen_at(now: dt.datetime, *values: object, name: str | None = None) -> ParameterSet:
    """Parameters (``now`` first) whose test runs with the wall clock stopped at ``now``
    (time-machine's marker starts before any fixture, so rows the fixtures create are dated then
    too)."""
    return pytest.param(
        now, *values, id=name or now.isoformat(), marks=pytest.mark.time_machine(now, tick=False)
    )


class ManualClock:
    """A clock that moves only when told, for code that takes one (``clock=``, e.g. the L1
    cache's monotonic clock)."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def l1_clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    """This process's L1 cache on a stopped clock: an entry (a verified API key and its owner
    among them) lives until the test advances the clock past CACHE_L1_MAX_SECONDS. A query count
    taken after a warming request then cannot depend on how fast a busy machine ran them."""
    clock = ManualClock()
    manager = cache_manager()
    monkeypatch.setattr(manager.l1, "clock", clock)
    # A new manager's invalidation listener empties L1 once it has subscribed: let that happen
    # now rather than between a test's warming request and its count.
    manager._ensure_listener()
    if manager._listener is not None:
        assert manager._listener.subscribed.wait(5)
    return clock


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings: Settings) -> None:
    # PBKDF2 at production strength costs ~0.3 s per user created; tests test logic, not hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _delete_matching(pattern: str) -> None:
    client = redis_client()
    stale = list(client.scan_iter(match=pattern, count=1000))
    if stale:
        client.delete(*stale)


@pytest.fixture(autouse=True)
def _clear_shared_redis_state(request: pytest.FixtureRequest) -> None:
    # Quotes left in Redis by another test would override the database's newest tick.
    redis_client().delete(settings.LATEST_QUOTES_KEY)
    # Rate-limit logs are keyed by user id, and ids restart after each test's database flush,
    # so one test's requests would count against the next test's user.
    _delete_matching(f"{settings.RATE_LIMIT_KEY_PREFIX}:*")
    if request.node.get_closest_marker("time_machine") is not None:
        # Cached values expire by the wall clock: in a test that travels back in time, what an
        # earlier test cached (in this process's L1 or in Redis) would look fresh for months.
        cache_manager_reset()
        _delete_matching(f"{CacheConfig.from_settings().prefix}:*")


@pytest.fixture
def clean_cache() -> Iterator[None]:
    """A new process-wide cache manager and no cached values in Redis, before and after the test.

    The manager keeps L1 entries across tests, and Redis outlives each test's database rollback:
    both would serve rows another test wrote."""
    cache_manager_reset()
    client = redis_client()
    stale = list(client.scan_iter(match=f"{CacheConfig.from_settings().prefix}:*", count=1000))
    if stale:
        client.delete(*stale)
    yield
    cache_manager_reset()


@pytest.fixture
def make_asset(db: None) -> Callable[..., Asset]:
    def make(
        symbol: str = "AAPL", *, price: str = "100.00", spread_units: int = 100, **fields: object
    ) -> Asset:
        asset = Asset.objects.create(
            symbol=symbol, name=f"{symbol} Inc.", sector=str(fields.pop("sector", "Technology")), **fields
        )
        set_quote(symbol, price=price, spread_units=spread_units)
        return asset

    return make


def list_symbols(*symbols: str) -> None:
    """Listed assets (active, tradable) without prices: the symbols a stream may subscribe to.
    Symbols already listed are left as they are."""
    Asset.objects.bulk_create(
        [Asset(symbol=symbol, name=f"{symbol} Inc.", sector="Technology") for symbol in symbols],
        ignore_conflicts=True,
    )


def add_tick(
    symbol: str, *, price_units: int, spread_units: int = 100, at: dt.datetime | None = None
) -> StockPriceHistory:
    """Store the symbol's next tick: trade at ``price_units``, bid/ask ``spread_units`` either side."""
    last = (
        StockPriceHistory.objects.filter(symbol=symbol).order_by("-seq").values_list("seq", flat=True).first()
    )
    return StockPriceHistory.objects.create(
        symbol=symbol,
        seq=(last or 0) + 1,
        price_units=price_units,
        size=100,
        bid_units=price_units - spread_units,
        bid_size=300,
        ask_units=price_units + spread_units,
        ask_size=400,
        recorded_at=at or timezone.now(),
    )


def set_quote(
    symbol: str, *, price: str, spread_units: int = 100, at: dt.datetime | None = None
) -> StockPriceHistory:
    """Store a tick at a dollar ``price`` ("190.00"), exactly converted to price units."""
    return add_tick(symbol, price_units=price_to_units(price), spread_units=spread_units, at=at)


def add_minute_bar_ramps(bases: Mapping[str, int], *, start: dt.datetime, minutes: int) -> None:
    """Minute bars rising one cent a minute from each symbol's base (price units), from ``start``."""
    MinuteBar.objects.bulk_create(
        MinuteBar(
            symbol=symbol,
            start=start + dt.timedelta(minutes=i),
            open_units=base + i * 100,
            high_units=base + i * 100 + 500,
            low_units=base + i * 100 - 500,
            close_units=base + i * 100 + 200,
            volume=1000 + i,
            trade_count=10 + i,
            vwap_units=base + i * 100 + 50,
        )
        for symbol, base in bases.items()
        for i in range(minutes)
    )


def session_cookie(user_id: int) -> tuple[Client, str]:
    """A test client logged in as the user, and its session as a Cookie header value."""
    client = Client()
    client.force_login(get_user_model().objects.get(pk=user_id))
    return client, f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


Bar = TypeVar("Bar", MinuteBar, DailyBar)


def flat_bar(model: type[Bar], symbol: str, start: dt.datetime) -> Bar:
    """A bar whose every price and count is 1, for tests about which rows exist or are read."""
    return model(
        symbol=symbol,
        start=start,
        open_units=1,
        high_units=1,
        low_units=1,
        close_units=1,
        volume=1,
        trade_count=1,
        vwap_units=1,
    )


def add_flat_minute_bars(symbols: Iterable[str], *, start: dt.datetime, minutes: int) -> None:
    """``flat_bar`` minute bars for each symbol, ``minutes`` of them from ``start``."""
    MinuteBar.objects.bulk_create(
        (
            flat_bar(MinuteBar, symbol, start + dt.timedelta(minutes=i))
            for symbol in symbols
            for i in range(minutes)
        ),
        batch_size=5000,
    )


@pytest.fixture
def make_account(db: None) -> Callable[..., Account]:
    counter = iter(range(1, 1_000_000))

    def make(*, cash: int = 10_000_000, username: str | None = None) -> Account:
        user = get_user_model().objects.create_user(
            username=username or f"trader{next(counter)}", password="pw-123456!"
        )
        return services.account_open(user=user, cash_cents=cash)

    return make


@pytest.fixture
def account(make_account: Callable[..., Account]) -> Account:
    return make_account()


@pytest.fixture
def asset(make_asset: Callable[..., Asset]) -> Asset:
    return make_asset("AAPL", price="100.00")
