"""The addresses clients reach this server at: the HTTP base for REST clients, and the WebSocket
base for streams (``STREAM_PUBLIC_URL`` behind a proxy, else this host name on ``WS_PORT``, since
daphne serves the streams on a port of its own)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.http.request import split_domain_port


def api_base_url(request: HttpRequest) -> str:
    """What alpaca-py's ``url_override`` should be for REST clients, e.g. ``http://127.0.0.1:8000``."""
    return request.build_absolute_uri("/").rstrip("/")


def stream_base_url(request: HttpRequest) -> str:
    """The WebSocket origin, e.g. ``ws://127.0.0.1:8001``; paths are appended by the caller."""
    if settings.STREAM_PUBLIC_URL:
        return str(settings.STREAM_PUBLIC_URL)
    domain, _port = split_domain_port(request.get_host())
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{domain}:{settings.WS_PORT}"


def stream_urls(request: HttpRequest) -> dict[str, str]:
    """The three streams the dashboard and bots connect to."""
    base = stream_base_url(request)
    return {
        "market_data": f"{base}/v2/{settings.STREAM_FEEDS[0]}",
        "trade_updates": f"{base}/stream",
        "dashboard": f"{base}/ws/dashboard",
    }
