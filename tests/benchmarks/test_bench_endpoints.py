"""The benchmark-only floors under /v2/_bench/ (benchmarks/views.py, analytics.views.bench_ping)
exist only under BENCHMARK_ENDPOINTS, which `manage.py benchmark` sets for the servers it starts:
anywhere else they answer 404 in Alpaca's error shape, as any unknown path does."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

import pytest
from django.urls import clear_url_caches
from pytest_django.fixtures import Settings

import analytics.urls
import config.urls
from tests.wsgi_calls import Answer, wsgi_call
from trading import services
from trading.models import Account

pytestmark = pytest.mark.django_db

BENCH_ROUTES = [("GET", "/v2/_bench/ping"), ("GET", "/v2/_bench/api-ping"), ("POST", "/v2/_bench/insert")]


def _urls_rebuilt() -> None:
    # Both URLconfs read BENCHMARK_ENDPOINTS once, when imported.
    importlib.reload(analytics.urls)
    importlib.reload(config.urls)
    clear_url_caches()


@pytest.fixture
def bench_endpoints(settings: Settings) -> Iterator[Callable[[bool], None]]:
    def build(enabled: bool) -> None:
        settings.BENCHMARK_ENDPOINTS = enabled
        _urls_rebuilt()

    yield build
    settings.BENCHMARK_ENDPOINTS = False
    _urls_rebuilt()


@pytest.mark.parametrize(("method", "path"), BENCH_ROUTES)
def test_bench_endpoints_are_404_when_benchmark_endpoints_is_off(
    bench_endpoints: Callable[[bool], None], account: Account, method: str, path: str
) -> None:
    key, secret = services.api_key_create(account_id=account.pk, label="test")
    headers = {"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": secret}

    def call() -> Answer:
        return wsgi_call(
            method, path, body=b'{"side": "buy"}', content_type="application/json", headers=headers
        )

    bench_endpoints(True)
    # The same request reaches its floor while the setting is on: the 404 below is the setting's.
    assert call().status_code == 200
    bench_endpoints(False)
    answer = call()
    assert answer.status_code == 404
    assert answer.json() == {"code": 40410000, "message": "endpoint not found"}
