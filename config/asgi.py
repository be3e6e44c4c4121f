"""ASGI entry point: daphne serves the WebSocket streams; HTTP goes to Django as well.

A browser's Origin must be one of this site's own origins, scheme, host and port compared, so a
page on another site (or another port of the same host) cannot open a socket with a visitor's
session cookie (cross-site WebSocket hijacking); see ``allowed_origins``. Channels'
AllowedHostsOriginValidator compares the host alone, and also refuses a handshake with no Origin
header, which would shut out every bot (alpaca-py and most WebSocket libraries send none);
browsers always send Origin, so allowing its absence keeps the protection where it matters.

The WebSocket routes are served by realtime.routing.StreamRouter (origin check, route, consumer)
rather than Channels' middleware stack, which costs ~6 KB per idle connection; the consumers read
the Django session themselves when a client authenticates with it. ``websocket_app`` keeps the
stock stack for the benchmark's naive baseline (analytics/benchmarks/_stream_naive_asgi.py).
"""

import os
from collections.abc import Awaitable, Mapping
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.auth import AuthMiddlewareStack
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from realtime.routing import StreamRouter, websocket_urlpatterns  # noqa: E402  (needs the app registry)


class BrowserOriginValidator(OriginValidator):
    """The site's own origins for browsers (``allowed_origins``: every pattern carries a scheme,
    so Channels compares scheme, host and port); no Origin header (non-browser clients) is allowed."""

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        try:
            return bool(self.validate_origin(parsed_origin))
        except ValueError:  # a port that is not a number, or out of range
            return False

    def allows(self, scope: dict[str, Any]) -> bool:
        """OriginValidator.__call__'s check on its own, for a router that wraps no application."""
        parsed_origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                # The last Origin header counts, as in Channels (latin-1 decodes any bytes).
                parsed_origin = urlparse(value.decode("latin1"))
        return self.valid_origin(parsed_origin)


_PAGE_SCHEMES = {"ws": "http", "wss": "https"}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def allowed_origins() -> list[str]:
    """The origins whose pages may open the streams, as ``scheme://host:port`` patterns.

    - every ALLOWED_HOSTS name on ``http`` at HTTP_PORT (gunicorn's pages under ``make run``) and
      WS_PORT (daphne answers HTTP too);
    - every ALLOWED_HOSTS name with the scheme and port of STREAM_PUBLIC_URL when it is set
      (``wss://sim.example.com`` means pages at ``https://<host>``: a proxy serving both);
    - every CSRF_TRUSTED_ORIGINS entry, the origins Django already trusts for this site's forms
      (Django's ``https://*.example.com`` is Channels' ``https://.example.com``).

    A leading dot in ALLOWED_HOSTS stands for the domain and its subdomains, as in Django; ``*``
    allows any origin.
    """
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = ["localhost", "127.0.0.1", "[::1]"]  # as Django and Channels do in DEBUG
    if "*" in hosts:
        return ["*"]
    served = {("http", settings.HTTP_PORT), ("http", settings.WS_PORT)}
    public = urlparse(settings.STREAM_PUBLIC_URL) if settings.STREAM_PUBLIC_URL else None
    if public is not None and public.scheme in _PAGE_SCHEMES:
        scheme = _PAGE_SCHEMES[public.scheme]
        served.add((scheme, public.port or _DEFAULT_PORTS[scheme]))
    origins = [f"{scheme}://{host}:{port}" for host in hosts for scheme, port in sorted(served)]
    origins += [origin.replace("://*.", "://.") for origin in settings.CSRF_TRUSTED_ORIGINS]
    return origins


def websocket_app(inner: Any) -> Any:
    """Channels' stock stack (origin check, cookies, session, user) around ``inner``."""
    return BrowserOriginValidator(AuthMiddlewareStack(inner), allowed_origins())


async def _no_application(scope_type: object) -> None:
    raise ValueError(f"No application configured for scope type {scope_type!r}")


class ProtocolRouter:
    """Channels' ProtocolTypeRouter without a coroutine of its own.

    It returns the chosen application's awaitable instead of awaiting it, so no router frame
    (holding the server's scope, headers included) stays on a WebSocket's stack for the socket's
    life. Marked as an ASGI 3 single callable for asgiref's and daphne's detection.
    """

    _asgi_single_callable = True

    def __init__(self, application_mapping: Mapping[str, Any]) -> None:
        self.application_mapping = dict(application_mapping)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        application = self.application_mapping.get(scope["type"])
        if application is None:
            return _no_application(scope["type"])
        routed: Awaitable[None] = application(scope, receive, send)
        return routed


application = ProtocolRouter(
    {
        "http": django_asgi_app,
        "websocket": StreamRouter(
            websocket_urlpatterns, origin_allowed=BrowserOriginValidator(None, allowed_origins()).allows
        ),
    }
)
