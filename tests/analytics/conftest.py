"""Analytics fixtures: a clean cache (both layers) for every test, an API-key client, and a real
local HTTP server standing in for the alert webhook."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from rest_framework.test import APIClient

from tests.analytics.webhook import WebhookReceiver
from trading import services
from trading.models import Account


@pytest.fixture(autouse=True)
def _clean_cache(clean_cache: None) -> None:
    """Cached reads are what these tests are about; rate-limit logs are cleared for every test
    (tests/conftest.py)."""


@pytest.fixture
def key_client() -> Callable[[Account], APIClient]:
    def make(account: Account) -> APIClient:
        key, secret = services.api_key_create(account_id=account.pk)
        return APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)

    return make


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """The alert webhook's receiving end: a real HTTP server on a free local port."""
    server = WebhookReceiver()
    yield server
    server.close()
