"""Which address a per-address limit counts: the peer, or a trusted proxy's forwarded client."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from pytest_django.fixtures import Settings

from config.client_address import client_address, request_client_address, scope_client_address


def test_without_trusted_proxies_the_peer_is_the_client(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = []
    assert client_address(peer="10.0.0.5", forwarded_for=["1.2.3.4"]) == "10.0.0.5"


def test_a_trusted_proxy_forwards_the_client(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(peer="10.0.0.5", forwarded_for=["1.2.3.4"]) == "1.2.3.4"


def test_a_client_cannot_choose_its_address_through_the_header(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    # The client sent "X-Forwarded-For: 6.6.6.6"; the proxy appended the client's real address.
    assert client_address(peer="10.0.0.5", forwarded_for=["6.6.6.6, 1.2.3.4"]) == "1.2.3.4"
    # An untrusted peer's header is ignored altogether.
    assert client_address(peer="1.2.3.4", forwarded_for=["6.6.6.6"]) == "1.2.3.4"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.168.1.1"]
    assert client_address(peer="10.0.0.5", forwarded_for=["1.2.3.4, 192.168.1.1"]) == "1.2.3.4"
    assert client_address(peer="10.0.0.5", forwarded_for=["1.2.3.4", "192.168.1.1"]) == "1.2.3.4"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", "10.0.0.5"),  # nothing forwarded: the proxy itself is all we know
        ("garbage, 1.2.3.4", "1.2.3.4"),
        ("1.2.3.4, garbage", "10.0.0.5"),  # a garbled hop inside the trusted chain: stop there
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("1.2.3.4:5678", "1.2.3.4"),
    ],
)
def test_forwarded_values_are_parsed_strictly(settings: Settings, header: str, expected: str) -> None:
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_address(peer="10.0.0.5", forwarded_for=[header]) == expected


def test_requests_and_scopes_read_the_same_headers(settings: Settings) -> None:
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    request = RequestFactory().get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="8.8.8.8")
    assert request_client_address(request) == "8.8.8.8"
    scope = {"client": ("127.0.0.1", 5555), "headers": [(b"x-forwarded-for", b"8.8.8.8")]}
    assert scope_client_address(scope) == "8.8.8.8"
    assert scope_client_address({"client": None, "headers": []}) == "unknown"
