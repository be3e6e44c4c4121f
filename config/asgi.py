"""ASGI entry point: daphne serves the WebSocket streams; HTTP goes to Django as well.

Origins are checked against ALLOWED_HOSTS so a page on another site cannot open a socket with a
visitor's session cookie (cross-site WebSocket hijacking). Channels' AllowedHostsOriginValidator
also refuses a handshake with no Origin header, which would shut out every bot (alpaca-py and
most WebSocket libraries send none); browsers always send Origin, so allowing its absence keeps
the protection where it matters.
"""

import os
from typing import Any
from urllib.parse import ParseResult

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import OriginValidator
from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from realtime.routing import websocket_urlpatterns  # noqa: E402  (needs the app registry)


class BrowserOriginValidator(OriginValidator):
    """ALLOWED_HOSTS origins for browsers; no Origin header (non-browser clients) is allowed."""

    def valid_origin(self, parsed_origin: ParseResult | None) -> bool:
        if parsed_origin is None:
            return True
        return bool(self.validate_origin(parsed_origin))


def websocket_app(inner: Any) -> Any:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]  # as Django and Channels do in DEBUG
    return BrowserOriginValidator(AuthMiddlewareStack(inner), ["*"] if "*" in allowed else allowed)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_app(URLRouter(websocket_urlpatterns)),
    }
)
