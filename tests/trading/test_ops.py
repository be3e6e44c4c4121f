"""/healthz against real dependencies (a Redis port nobody listens on, an unreachable database),
its details for staff only, and the public OpenAPI schema and docs."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from typing import cast

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser, User
from django.db import connections
from django.db.utils import load_backend
from django.http import HttpResponse
from django.test import Client, RequestFactory

from tests.builders import set_quote
from tests.processes import free_port
from trading.api.ops import HealthCheck, HealthzView
from trading.models import Account, Asset


def dead_redis() -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5)


@pytest.fixture
def unreachable_database() -> Iterator[str]:
    """A database alias whose server is not there: a real connection failure, not a mock.

    The wrapper is registered directly (not through settings), which Django's test case treats as a
    dynamically created connection and lets the test use.
    """
    alias = "unreachable"
    config = copy.deepcopy(connections["default"].settings_dict)
    if connections["default"].vendor == "sqlite":
        config["NAME"] = "/nonexistent-directory/db.sqlite3"
    else:
        config.update(HOST="127.0.0.1", PORT=str(free_port()))
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(config, alias)
    connections[alias] = wrapper
    try:
        yield alias
    finally:
        wrapper.close()
        del connections[alias]


@pytest.fixture
def staff(db: None) -> User:
    return get_user_model().objects.create_user(username="operator", password="pw-123456!", is_staff=True)


def healthz(view_health_check: HealthCheck, *, user: User | None = None) -> HttpResponse:
    """GET /healthz through the view with an injected health check, as ``user`` (default anonymous)."""
    request = RequestFactory().get("/healthz")
    request.user = user or AnonymousUser()
    return cast(HttpResponse, HealthzView.as_view(health_check=view_health_check)(request))


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_only_the_status(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_details_are_for_staff_only(client: Client, make_account: Callable[..., Account]) -> None:
    client.force_login(make_account().user)

    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_healthz_ok(client: Client, staff: User) -> None:
    client.force_login(staff)
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["ok"] is True and body["database"]["latency_ms"] >= 0
    assert body["redis"]["ok"] is True and body["redis"]["latency_ms"] >= 0
    assert body["redis"]["embedded"] is settings.EMBEDDED_REDIS
    assert body["market"] == {"last_tick_at": None, "lag_seconds": None}


@pytest.mark.django_db
def test_healthz_needs_no_authentication_and_no_session(client: Client) -> None:
    client.logout()
    assert (
        client.get("/healthz", HTTP_APCA_API_KEY_ID="bogus", HTTP_APCA_API_SECRET_KEY="bogus").status_code
        == 200
    )


@pytest.mark.django_db
def test_market_lag_comes_from_the_newest_tick() -> None:
    now = dt.datetime(2025, 3, 12, 15, 0, 30, tzinfo=dt.UTC)
    # Each asset's newest tick is read (ticks have no index on time alone).
    Asset.objects.bulk_create(
        Asset(symbol=symbol, name=symbol, sector="Technology") for symbol in ("AAA", "BBB")
    )
    set_quote("AAA", price="10.00", at=now - dt.timedelta(seconds=90))
    set_quote("BBB", price="20.00", at=now - dt.timedelta(seconds=30))  # the newest
    set_quote("AAA", price="10.10", at=now - dt.timedelta(seconds=60))  # higher seq, not newest

    market = HealthCheck(clock=lambda: now).run()["market"]

    assert market == {"last_tick_at": (now - dt.timedelta(seconds=30)).isoformat(), "lag_seconds": 30.0}


@pytest.mark.django_db
def test_redis_down_is_degraded_but_still_200(staff: User) -> None:
    anonymous = healthz(HealthCheck(redis_factory=dead_redis))
    assert anonymous.status_code == 200
    assert json.loads(anonymous.content) == {"status": "degraded"}

    response = healthz(HealthCheck(redis_factory=dead_redis), user=staff)

    assert response.status_code == 200
    body = json.loads(response.content)
    assert body["status"] == "degraded"
    assert body["redis"]["ok"] is False and body["redis"]["latency_ms"] is None
    assert body["database"]["ok"] is True


@pytest.mark.django_db
def test_database_down_is_503(unreachable_database: str, staff: User) -> None:
    anonymous = healthz(HealthCheck(using=unreachable_database))
    assert anonymous.status_code == 503
    assert json.loads(anonymous.content) == {"status": "down"}

    response = healthz(HealthCheck(using=unreachable_database), user=staff)

    assert response.status_code == 503
    body = json.loads(response.content)
    assert body["status"] == "down"
    assert body["database"]["ok"] is False
    assert body["market"] == {"last_tick_at": None, "lag_seconds": None}


def test_openapi_schema_is_public_json(client: Client) -> None:
    response = client.get("/v2/openapi.json")

    assert response.status_code == 200
    assert "json" in response["Content-Type"]
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == settings.SPECTACULAR_SETTINGS["TITLE"]
    assert isinstance(schema["paths"], dict)
    assert all(path.startswith("/v2/") for path in schema["paths"])


def test_swagger_docs_page_is_public_and_self_hosted(client: Client) -> None:
    response = client.get("/v2/docs")

    assert response.status_code == 200
    page = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page  # no CDN
    # The start-up script, which names the schema, is served apart (no inline code on the page).
    assert "/v2/openapi.json" in client.get("/v2/docs?script=").content.decode()


def test_redoc_page_is_public(client: Client) -> None:
    response = client.get("/v2/redoc")

    assert response.status_code == 200
    assert "drf_spectacular_sidecar/redoc" in response.content.decode()
