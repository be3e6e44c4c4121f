"""ASGI entry point: daphne serves the WebSocket streams; HTTP goes to Django as well.

Origins are checked against ALLOWED_HOSTS so a page on another site cannot open a socket with a
visitor's session cookie (cross-site WebSocket hijacking). Channels' AllowedHostsOriginValidator
also refuses a handshake with no Origin header, which would shut out every bot (alpaca-py and
most WebSocket libraries send none); browsers always send Origin, so allowing its absence keeps
the protection where it matters.

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
    """ALLOWED_HOSTS origins for browsers; no Origin header (non-browser clients) is allowed."""

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))

    def allows(self, scope: dict[str, Any]) -> bool:
        """OriginValidator.__call__'s check on its own, for a router that wraps no application."""
        parsed_origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                # The last Origin header counts, as in Channels (latin-1 decodes any bytes).
                parsed_origin = urlparse(value.decode("latin1"))
        return self.valid_origin(parsed_origin)


def allowed_origins() -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]  # as Django and Channels do in DEBUG
    return ["*"] if "*" in allowed else allowed


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
