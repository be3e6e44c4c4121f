"""Which browser origins may open the WebSocket streams: the site's own, scheme, host and port
compared (config/asgi.py), so another site, or another port or scheme of the same host, cannot
open a socket with a visitor's session cookie."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
from pytest_django.fixtures import Settings

from realtime.routing import BrowserOriginValidator, allowed_origins


def allows(origin: str | None) -> bool:
    validator = BrowserOriginValidator(None, allowed_origins())
    headers = [] if origin is None else [(b"origin", origin.encode("latin1"))]
    return validator.allows({"type": "websocket", "headers": headers})


@pytest.fixture
def site(settings: Settings) -> Settings:
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["sim.example.com", ".example.org", "[::1]"]
    settings.HTTP_PORT = 8000
    settings.WS_PORT = 8001
    settings.STREAM_PUBLIC_URL = "wss://sim.example.com"
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.trusted.example", "http://admin.example.net:9000"]
    return settings


@pytest.mark.parametrize(
    "origin",
    [
        None,  # bots send no Origin
        "http://sim.example.com:8000",  # the pages under `make run` (HTTP_PORT)
        "http://sim.example.com:8001",  # pages daphne serves itself (WS_PORT)
        "https://sim.example.com",  # behind the proxy STREAM_PUBLIC_URL names
        "https://sim.example.com:443",
        "http://example.org:8000",  # a leading-dot host: the domain...
        "https://www.example.org",  # ...and its subdomains
        "http://[::1]:8000",
        "https://app.trusted.example",  # CSRF_TRUSTED_ORIGINS, Django's wildcard included
        "http://admin.example.net:9000",
    ],
)
def test_the_sites_own_origins_are_allowed(site: Settings, origin: str | None) -> None:
    assert allows(origin), origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://sim.example.com",  # the right host on another port (80)...
        "http://sim.example.com:3000",  # ...a dev server beside it...
        "https://sim.example.com:8000",  # ...or another scheme
        "https://evil.example",
        "https://sim.example.com.evil.example",
        "http://admin.example.net:9001",
        "https://admin.example.net",
        "null",  # sandboxed frames and file:// pages
        "http://sim.example.com:notaport",
        "http://sim.example.com:99999",
        "",
    ],
)
def test_other_origins_are_refused(site: Settings, origin: str) -> None:
    assert not allows(origin), origin


def test_without_a_public_url_only_the_local_ports_are_the_site(settings: Settings) -> None:
    settings.ALLOWED_HOSTS = ["localhost"]
    settings.HTTP_PORT, settings.WS_PORT = 9000, 9001
    settings.STREAM_PUBLIC_URL = ""
    settings.CSRF_TRUSTED_ORIGINS = []
    assert {urlparse(origin).netloc for origin in allowed_origins()} == {"localhost:9000", "localhost:9001"}
    assert allows("http://localhost:9000") and not allows("http://localhost:8000")


def test_a_wildcard_host_allows_any_origin(settings: Settings) -> None:
    settings.ALLOWED_HOSTS = ["*"]
    assert allowed_origins() == ["*"]
    assert allows("https://anywhere.example")
