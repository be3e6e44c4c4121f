"""The cache layers: LRU bound, per-type TTLs, cache-through, invalidation across L1s, stampedes."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator

import pytest
import redis
from hypothesis import given, strategies as st
from rest_framework.test import APIClient

from analytics import services
from analytics.cache import CacheConfig, CacheManager, LRUCache, RenderedBodies
from config.redis_pools import redis_client
from tests.conftest import ManualClock
from tests.processes import free_port
from trading.models import Account, Asset


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --- Property 22 ----------------------------------------------------------------------------------

operations = st.lists(
    st.tuples(st.sampled_from(["get", "set", "delete"]), st.integers(min_value=0, max_value=12)),
    max_size=200,
)


@given(capacity=st.integers(min_value=1, max_value=8), ops=operations)
def test_lru_cache_evicts_the_least_recently_used(capacity: int, ops: list[tuple[str, int]]) -> None:
    """Property 22: bounded, and what goes is always the least recently used entry."""
    cache = LRUCache(max_entries=capacity, clock=FakeClock())
    model: OrderedDict[int, int] = OrderedDict()
    for step, (op, key) in enumerate(ops):
        name = str(key)
        if op == "set":
            cache.set(name, step, ttl=60)
            model[key] = step
            model.move_to_end(key)
            if len(model) > capacity:
                model.popitem(last=False)
        elif op == "get":
            assert cache.get(name) == model.get(key)
            if key in model:
                model.move_to_end(key)
        else:
            cache.delete(name)
            model.pop(key, None)
        assert len(cache) <= capacity
        assert cache.keys() == [str(k) for k in model]


def test_lru_entries_expire_by_the_clock() -> None:
    clock = FakeClock()
    cache = LRUCache(max_entries=4, clock=clock)
    cache.set("a", 1, ttl=1.0)
    clock.advance(0.999)
    assert cache.get("a") == 1
    clock.advance(0.001)
    assert cache.get("a") is None and len(cache) == 0


# --- CacheManager against the real Redis -----------------------------------------------------------


def _config(**changes: object) -> CacheConfig:
    base = dataclasses.replace(CacheConfig.from_settings(), lock_wait_seconds=2.0)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(time.time())


@pytest.fixture
def manager(clock: FakeClock) -> Iterator[CacheManager]:
    made = CacheManager(config=_config(ttls={"fast": 5.0, "slow": 30.0}), clock=clock, listen=False)
    yield made
    made.close()


class Loader:
    def __init__(self, value: object = "v") -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> object:
        self.calls += 1
        return self.value


def test_each_data_type_expires_after_its_own_ttl(manager: CacheManager, clock: FakeClock) -> None:
    """Property 26: per-type TTLs from the one table, judged by the (injected) clock."""
    loaders = {"fast": Loader(), "slow": Loader()}
    for data_type, loader in loaders.items():
        manager.cached(f"k-{data_type}", data_type, loader)
    pttl = redis_client().pttl(f"{manager.config.prefix}:v:k-slow")
    assert 29_000 < pttl <= 30_000  # Redis reclaims the memory on the same schedule
    origin = clock.now
    for elapsed, fast_calls, slow_calls in (
        (4.9, 1, 1),
        (5.0, 2, 1),  # "fast" expired at exactly its 5 s and was reloaded, "slow" still cached
        (9.9, 2, 1),
        (10.0, 3, 1),
        (29.9, 4, 1),
        (30.0, 4, 2),  # "slow" expires at exactly 30 s
    ):
        clock.now = origin + elapsed
        manager.l1.clear()  # L1 caps at 1 s anyway; this checks the L2 expiry on its own
        manager.cached("k-fast", "fast", loaders["fast"])
        manager.cached("k-slow", "slow", loaders["slow"])
        assert (loaders["fast"].calls, loaders["slow"].calls) == (fast_calls, slow_calls), elapsed


def test_l1_copies_live_at_most_the_l1_cap(manager: CacheManager, clock: FakeClock) -> None:
    loader = Loader()
    manager.cached("k", "slow", loader)
    assert manager.l1.get("k") == "v"
    clock.advance(manager.config.l1_max_seconds)
    assert manager.l1.get("k") is None  # gone from L1 after 1 s although the type's TTL is 30 s
    assert manager.cached("k", "slow", loader) == "v" and loader.calls == 1  # L2 still answers


def test_unknown_data_types_are_refused(manager: CacheManager) -> None:
    with pytest.raises(ValueError, match="CACHE_TTLS"):
        manager.cached("k", "nope", Loader())


def test_one_recompute_per_key_under_a_stampede(manager: CacheManager) -> None:
    calls = 0
    gate = threading.Barrier(12)

    def slow_loader() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        return 42

    results: list[int] = []

    def read() -> None:
        gate.wait()
        results.append(manager.cached("hot", "slow", slow_loader))

    threads = [threading.Thread(target=read) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [42] * 12 and calls == 1


def test_a_load_overtaken_by_an_invalidation_is_not_stored(manager: CacheManager) -> None:
    def loader_racing_a_write() -> str:
        manager.invalidate("k")  # a write commits while the old rows are being read
        return "old"

    assert manager.cached("k", "slow", loader_racing_a_write) == "old"
    fresh = Loader("new")
    assert manager.cached("k", "slow", fresh) == "new" and fresh.calls == 1


def test_invalidation_reaches_every_processes_l1(clock: FakeClock) -> None:
    """Another manager (standing for another process) drops its L1 copy on the published message."""
    config = _config(ttls={"slow": 30.0}, l1_max_seconds=3600.0)
    writer, reader = CacheManager(config=config, clock=clock), CacheManager(config=config, clock=clock)
    try:
        for made in (writer, reader):
            made.cached("warm", "slow", Loader())  # starts the listener
            assert made._listener is not None and made._listener.subscribed.wait(5)
        assert reader.cached("k", "slow", Loader("old")) == "old"
        writer.invalidate("k")
        deadline = time.monotonic() + 5
        while reader.l1.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.cached("k", "slow", Loader("new")) == "new"
    finally:
        writer.close()
        reader.close()


def test_locally_cached_values_expire_with_l1_and_are_invalidated_everywhere(clock: FakeClock) -> None:
    """``cached_locally`` (the verified API keys' owners): kept in this process only, for at most
    the L1 bound, and dropped in every process by an invalidation (a revoked key)."""
    config = _config(ttls={"slow": 30.0}, l1_max_seconds=1.0)
    writer, reader = CacheManager(config=config, clock=clock), CacheManager(config=config, clock=clock)
    try:
        loader = Loader(("owner", 1))
        assert reader.cached_locally("apikey:k", loader) == ("owner", 1)
        assert reader.cached_locally("apikey:k", loader) == ("owner", 1) and loader.calls == 1
        assert not any(redis_client().scan_iter(match=f"{config.prefix}:v:apikey:*"))  # no Redis copy
        clock.advance(1.0)
        reader.cached_locally("apikey:k", loader)
        assert loader.calls == 2  # past the L1 bound: loaded again

        assert reader._listener is not None and reader._listener.subscribed.wait(5)
        writer.invalidate("apikey:k")
        deadline = time.monotonic() + 5
        while reader.l1.get("apikey:k") is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        reader.cached_locally("apikey:k", loader)
        assert loader.calls == 3
    finally:
        writer.close()
        reader.close()

    disabled = CacheManager(config=dataclasses.replace(config, enabled=False), clock=clock, listen=False)
    uncached = Loader()
    disabled.cached_locally("apikey:k", uncached)
    disabled.cached_locally("apikey:k", uncached)
    assert uncached.calls == 2


def test_without_redis_reads_use_the_loader_and_writes_succeed(clock: FakeClock) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    manager = CacheManager(
        config=_config(ttls={"slow": 30.0}),
        redis_factory=lambda: redis.Redis.from_url(dead, socket_connect_timeout=0.5),
        clock=clock,
        listen=False,
    )
    loader = Loader()
    assert manager.cached("k", "slow", loader) == "v"
    assert manager.cached("k", "slow", loader) == "v" and loader.calls == 1  # L1 still spares the loader
    manager.invalidate("k")  # does not raise; kept to retry when Redis answers
    assert manager._pending == {"k"}
    with manager.single_flight("job") as holder:
        assert holder


# --- Property 28 through the API ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_miss_populates_the_cache_and_the_next_read_skips_the_database(
    l1_clock: ManualClock,
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
    key_client: Callable[[Account], APIClient],
    django_assert_num_queries,
) -> None:
    """Property 28: after one miss, reads of the same data take no query (L1, then L2)."""
    make_asset("AAPL")
    account = make_account()
    services.analytics_refresh_all()
    client = key_client(account)
    # The selectors first, without the HTTP layer; then the endpoints, authentication included.
    from analytics import selectors
    from analytics.cache import cache_manager

    for read in (
        lambda: selectors.leaderboard_get(period="overall"),
        lambda: selectors.account_analytics_get(account=account),
        lambda: selectors.symbol_stats_get(symbol="AAPL"),
    ):
        first = read()
        with django_assert_num_queries(0):
            assert read() == first  # L1
        cache_manager().l1.clear()
        with django_assert_num_queries(0):
            assert read() == first  # L2
    for path in ("/v2/leaderboard", "/v2/analytics/account", "/v2/analytics/symbols/AAPL"):
        client.get(path)
        # The key's owner is in memory too, and these views need no account row: no query at all.
        with django_assert_num_queries(0):
            assert client.get(path).status_code == 200


# --- Rendered bodies ------------------------------------------------------------------------------


def test_a_body_is_rendered_once_per_cached_value_and_again_for_a_new_one() -> None:
    renders: list[object] = []

    def render(data: object) -> bytes:
        renders.append(data)
        return repr(data).encode()

    bodies = RenderedBodies(render=render, max_entries=2)
    board = {"entries": [1, 2, 3]}
    assert bodies.get(board) == b"{'entries': [1, 2, 3]}"
    assert bodies.get(board) == b"{'entries': [1, 2, 3]}" and len(renders) == 1
    # A variant (the leaderboard's limit) renders its own payload from the same value.
    assert (
        bodies.get(board, variant=1, payload=lambda: {"entries": board["entries"][:1]}) == b"{'entries': [1]}"
    )
    assert len(renders) == 2
    # An equal but new object (a reload after an invalidation) is rendered again.
    reloaded = {"entries": [1, 2, 3]}
    bodies.get(reloaded)
    assert len(renders) == 3
    # Bounded: the oldest entry went, so the first value renders again.
    bodies.get(board)
    assert len(renders) == 4


@pytest.mark.django_db
def test_cached_endpoints_answer_what_drf_would_render_and_follow_invalidation(
    make_asset: Callable[..., Asset],
    make_account: Callable[..., Account],
    key_client: Callable[[Account], APIClient],
    django_capture_on_commit_callbacks,
) -> None:
    from rest_framework.renderers import JSONRenderer

    from analytics import selectors

    make_asset("AAPL")
    account = make_account()
    services.analytics_refresh_all()
    client = key_client(account)
    response = client.get("/v2/leaderboard?limit=1")
    assert response["Content-Type"] == "application/json"
    assert response.content == JSONRenderer().render(selectors.leaderboard_get(period="overall", limit=1))
    stats = client.get("/v2/analytics/symbols/AAPL")
    assert stats.content == JSONRenderer().render(selectors.symbol_stats_get(symbol="AAPL"))
    before = client.get("/v2/leaderboard").json()["as_of"]
    make_account()  # a new player: the next refresh's board differs
    with django_capture_on_commit_callbacks(execute=True):  # the invalidation goes out after commit
        services.leaderboard_refresh()
    after = client.get("/v2/leaderboard").json()
    assert after["as_of"] != before and len(after["entries"]) == 2
