"""ASGI entry point: daphne serves the WebSocket streams; HTTP goes to Django as well.

The WebSocket routes are served by realtime.routing.StreamRouter (origin check, route, consumer)
rather than Channels' middleware stack; realtime/routing.py says why, and which origins a
browser's handshake may come from (``allowed_origins``, ``BrowserOriginValidator``).
"""

import os
from collections.abc import Awaitable, Mapping
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

from config.metrics import process_identity_set  # noqa: E402

# daphne: one streams process (the per-process series' role; config/metrics.py).
process_identity_set(role="ws")

from realtime.routing import (  # noqa: E402  (needs the app registry)
    BrowserOriginValidator,
    StreamRouter,
    allowed_origins,
    websocket_urlpatterns,
)


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
