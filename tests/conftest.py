"""Shared fixtures: real database rows built through the services, a real Redis.

Plain builder functions (ticks, bars, logged-in clients) live in tests/builders.py. Each pytest
process (each xdist worker) keeps its Redis keys and channels under a prefix of its own, set in
``pytest_configure`` below, so parallel workers, another test run and a ``make run`` sharing the
Redis never see each other's quotes, rate-limit logs, cache entries or messages.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from pytest_django.fixtures import Settings

from benchmarks.processes import redis_keys_delete, redis_names
from config.cache import CacheConfig, cache_manager, cache_manager_reset
from config.celery import app as celery_app
from config.embedded_redis import embedded_redis_stop
from config.redis_pools import redis_client
from tests.builders import set_quote
from tests.clock import ManualClock
from trading import services
from trading.models import Account, Asset


def pytest_configure(config: pytest.Config) -> None:
    # After pytest-django has loaded the settings and before any test uses Redis. The processes a
    # test starts get the prefix from tests/processes.py; os.environ carries it to any other.
    prefix = f"test{os.getpid()}"
    for name, value in redis_names(prefix).items():
        setattr(settings, name, value)
    os.environ["REDIS_KEY_PREFIX"] = prefix
    # The broker's keys as the processes a test starts derive them (tests/settings.py), so what
    # this process enqueues reaches their workers.
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
        **settings.CELERY_BROKER_TRANSPORT_OPTIONS,
        "global_keyprefix": f"{prefix}:broker:",
    }
    celery_app.conf.broker_transport_options = settings.CELERY_BROKER_TRANSPORT_OPTIONS


def pytest_unconfigure(config: pytest.Config) -> None:
    # The run's keys (quotes, rate-limit logs, cache entries, stream counts), sub-prefixes included.
    try:
        redis_keys_delete(f"{settings.REDIS_KEY_PREFIX}:*")
    except Exception as error:  # Redis gone: nothing to leave behind, and no reason to fail the run
        print(f"could not delete this run's Redis keys: {error}")


@pytest.fixture
def migrations_back_to_latest() -> Iterator[None]:
    """For a test that moves the database along the migration graph (MIGRATION_TEST_MARKS in
    tests/trading/migration_steps.py): every migration applied again after it, and the content
    types it may have changed forgotten."""
    from django.contrib.contenttypes.models import ContentType

    from tests.trading.migration_steps import migrate_to_latest

    yield
    migrate_to_latest()
    ContentType.objects.clear_cache()


@pytest.fixture
def no_commission(settings: Settings) -> None:
    """No commission, whatever the environment sets: exact cash figures in a test's assertions."""
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0


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


@pytest.fixture(autouse=True)
def _clear_shared_redis_state(request: pytest.FixtureRequest) -> None:
    # Quotes left in Redis by another test would override the database's newest tick.
    redis_client().delete(settings.LATEST_QUOTES_KEY)
    # Rate-limit logs are keyed by user id, and ids restart after each test's database flush,
    # so one test's requests would count against the next test's user.
    redis_keys_delete(f"{settings.RATE_LIMIT_KEY_PREFIX}:*")
    if request.node.get_closest_marker("time_machine") is not None:
        # Cached values expire by the wall clock: in a test that travels back in time, what an
        # earlier test cached (in this process's L1 or in Redis) would look fresh for months.
        cache_manager_reset()
        redis_keys_delete(f"{CacheConfig.from_settings().prefix}:*")


@pytest.fixture(autouse=True)
def _embedded_redis_servers_stopped(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # A process a test starts with VAR_DIR under its tmp_path and no REDIS_URL launches an embedded
    # Redis there as a daemon (settings import alone does it); nothing else would ever stop it.
    tmp_path = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if tmp_path is not None:
        for socket_path in tmp_path.glob("**/redis.sock"):
            embedded_redis_stop(socket_path.parent)


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
def stream_settings(settings: Settings) -> Iterator[Settings]:
    """Redis keys and channels of this test's own, a prefix under the run's, here and in every
    process the test starts: nothing another test left (auth failures counted per address,
    connection counts, windows of a market still stopping) reaches it. The process's cache
    manager is rebuilt around it, as it holds the invalidation channel and key prefix."""
    for name, value in redis_names(f"{settings.REDIS_KEY_PREFIX}:{uuid.uuid4().hex[:10]}").items():
        setattr(settings, name, value)
    cache_manager_reset()
    yield settings
    cache_manager_reset()


@pytest.fixture
def make_asset(db: None) -> Callable[..., Asset]:
    def make(
        symbol: str = "AAPL",
        *,
        price: str = "100.00",
        spread_units: int = 100,
        quote_size: int | None = None,
        **fields: object,
    ) -> Asset:
        asset = Asset.objects.create(
            symbol=symbol, name=f"{symbol} Inc.", sector=str(fields.pop("sector", "Technology")), **fields
        )
        if quote_size is None:
            set_quote(symbol, price=price, spread_units=spread_units)
        else:  # the shares shown at the bid and at the ask
            set_quote(
                symbol, price=price, spread_units=spread_units, bid_size=quote_size, ask_size=quote_size
            )
        return asset

    return make


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
