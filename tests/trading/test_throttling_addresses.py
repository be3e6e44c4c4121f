"""Every per-address limit (anonymous API calls, logins, sign-ups) counts by the client address
that TRUSTED_PROXIES decides (config/client_address.py): behind a trusted proxy each forwarded
client has its own budget; anyone else's X-Forwarded-For is ignored."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from trading.models import Account

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"
UNTRUSTED_PEER = "203.0.113.9"
STRONG_PASSWORD = "correct-horse-battery-9"
# An anonymous API view: it answers without a key, so the "anon" limit is the one that applies.
ANONYMOUS_API_PATH = "/v2/docs"


@pytest.fixture(autouse=True)
def _trusted_proxy(settings: SettingsWrapper) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]


def _via(peer: str, forwarded_for: str) -> Client:
    return Client(REMOTE_ADDR=peer, HTTP_X_FORWARDED_FOR=forwarded_for)


# --- Anonymous API limits -------------------------------------------------------------------------


def test_anonymous_api_clients_behind_a_trusted_proxy_have_separate_budgets(
    settings: SettingsWrapper,
) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "anon": "2/min"}
    first = _via(PROXY, "198.51.100.1")

    assert [first.get(ANONYMOUS_API_PATH).status_code for _ in range(3)] == [200, 200, 429]
    assert _via(PROXY, "198.51.100.2").get(ANONYMOUS_API_PATH).status_code == 200


def test_an_untrusted_peer_cannot_pick_a_fresh_address_per_request(settings: SettingsWrapper) -> None:
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "anon": "2/min"}

    statuses = [
        _via(UNTRUSTED_PEER, f"198.51.100.{index}").get(ANONYMOUS_API_PATH).status_code
        for index in range(1, 4)
    ]

    assert statuses == [200, 200, 429]


# --- Login throttle -------------------------------------------------------------------------------


def _log_in(client: Client, username: str, password: str) -> int:
    return client.post("/login", {"username": username, "password": password}).status_code


def test_logins_behind_a_trusted_proxy_are_throttled_per_forwarded_client(
    settings: SettingsWrapper, make_account: Callable[..., Account]
) -> None:
    settings.LOGIN_IP_RATE_LIMIT = "2/15min"
    make_account(username="owner")
    attacker = _via(PROXY, "198.51.100.1")
    assert [_log_in(attacker, f"guess{i}", "wrong-password-1") for i in range(3)] == [200, 200, 429]

    # Another client behind the same proxy is not locked out with the attacker.
    assert _log_in(_via(PROXY, "198.51.100.2"), "owner", "pw-123456!") == 302


def test_an_untrusted_peers_forwarded_address_does_not_reset_the_login_throttle(
    settings: SettingsWrapper,
) -> None:
    settings.LOGIN_IP_RATE_LIMIT = "2/15min"

    statuses = [
        _log_in(_via(UNTRUSTED_PEER, f"198.51.100.{index}"), f"guess{index}", "wrong-password-1")
        for index in range(1, 4)
    ]

    assert statuses == [200, 200, 429]


# --- Sign-up throttle -----------------------------------------------------------------------------


def _sign_up(client: Client, username: str) -> int:
    return client.post(
        "/signup",
        {
            "username": username,
            "email": f"{username}@example.com",
            "password": STRONG_PASSWORD,
            "password_confirm": STRONG_PASSWORD,
        },
    ).status_code


def test_sign_ups_behind_a_trusted_proxy_are_limited_per_forwarded_client(
    settings: SettingsWrapper,
) -> None:
    settings.SIGNUP_MODE = "open"
    settings.SIGNUP_IP_RATE_LIMIT = "1/hour"

    assert _sign_up(_via(PROXY, "198.51.100.1"), "first") == 302
    assert _sign_up(_via(PROXY, "198.51.100.1"), "second") == 429
    assert _sign_up(_via(PROXY, "198.51.100.2"), "third") == 302


def test_an_untrusted_peers_forwarded_address_does_not_reset_the_sign_up_limit(
    settings: SettingsWrapper,
) -> None:
    settings.SIGNUP_MODE = "open"
    settings.SIGNUP_IP_RATE_LIMIT = "1/hour"

    assert _sign_up(_via(UNTRUSTED_PEER, "198.51.100.1"), "first") == 302
    assert _sign_up(_via(UNTRUSTED_PEER, "198.51.100.2"), "second") == 429
