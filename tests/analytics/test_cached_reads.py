"""Cached reads of the precomputed analytics rows through the cache layers and the API: a miss fills
the cache, later reads take no query, and the answers are what DRF would render."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from analytics import services
from tests.clock import ManualClock
from trading.models import Account, Asset

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
    from config.cache import cache_manager

    for read in (
        lambda: selectors.leaderboard_get_or_refresh(period="overall"),
        lambda: selectors.account_analytics_get_or_compute(account=account),
        lambda: selectors.symbol_stats_get_or_compute(symbol="AAPL"),
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
    assert response.content == JSONRenderer().render(
        selectors.leaderboard_get_or_refresh(period="overall", limit=1)
    )
    stats = client.get("/v2/analytics/symbols/AAPL")
    assert stats.content == JSONRenderer().render(selectors.symbol_stats_get_or_compute(symbol="AAPL"))
    before = client.get("/v2/leaderboard").json()["as_of"]
    make_account()  # a new player: the next refresh's board differs
    with django_capture_on_commit_callbacks(execute=True):  # the invalidation goes out after commit
        services.leaderboard_refresh()
    after = client.get("/v2/leaderboard").json()
    assert after["as_of"] != before and len(after["entries"]) == 2


@pytest.mark.django_db
def test_symbol_stats_cached_in_whole_shares_before_the_rescale_are_never_read(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    """Symbol statistics hold quantities, so their cache key names the unit (1/10^9 share): an entry
    a process cached under the old key, in whole shares, is not what a read returns."""
    from analytics import selectors
    from config.cache import cache_manager
    from tests.builders import shares
    from trading import services as trading

    make_asset("AAPL", price="100.00")
    account = make_account()
    trading.order_place(
        account_id=account.pk,
        request=trading.OrderRequest(
            symbol="AAPL", qty=shares("2.5"), side="buy", type="market", time_in_force="day"
        ),
    )
    services.symbol_stats_refresh(symbols=["AAPL"])
    stale = {"symbol": "AAPL", "net_shares_held": 2, "holders": 1}  # as cached before the rescale
    manager = cache_manager()
    manager.cached("symbol_stats:AAPL", "symbol_stats", lambda: stale)
    assert services.symbol_stats_cache_key("AAPL") != "symbol_stats:AAPL"
    assert selectors.symbol_stats_get_or_compute(symbol="AAPL")["net_shares_held"] == "2.5"
