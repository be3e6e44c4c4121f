"""Analytics fixtures: a clean cache (both layers) and clean rate-limit logs for every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from analytics.cache import CacheConfig, cache_manager_reset
from config.redis_pools import redis_client
from trading import services
from trading.models import Account


def _delete_matching(pattern: str) -> None:
    client = redis_client()
    keys = list(client.scan_iter(match=pattern, count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _clean_cache_and_limits() -> Iterator[None]:
    # The process-wide manager keeps L1 entries across tests, and Redis outlives each test's
    # database rollback: both would serve rows another test wrote.
    cache_manager_reset()
    _delete_matching(f"{CacheConfig.from_settings().prefix}:*")
    _delete_matching(f"{settings.RATE_LIMIT_KEY_PREFIX}:*")
    yield
    cache_manager_reset()


@pytest.fixture
def key_client() -> Callable[[Account], APIClient]:
    def make(account: Account) -> APIClient:
        key, secret = services.api_key_create(account_id=account.pk)
        return APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)

    return make
