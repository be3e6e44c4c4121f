"""ASGI app for ``benchmark stream``'s naive baseline: ``daphne benchmarks._stream_naive_asgi:application``.

Channels' stock websocket stack (the project's origin check, cookies, session, user) around one
route to ``NaiveTradesConsumer`` (benchmarks/stream.py): Channels' documented pattern, a group
per symbol and a ``group_send`` per tick, delivered per client through the channel layer.
"""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.urls import re_path

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi_app = get_asgi_application()

# isort: off
from benchmarks.stream import NaiveTradesConsumer  # noqa: E402  (needs the app registry)
from realtime.routing import BrowserOriginValidator, allowed_origins  # noqa: E402
# isort: on

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": BrowserOriginValidator(
            AuthMiddlewareStack(
                URLRouter([re_path(r"^v2/(?P<feed>[a-z_]{1,20})$", NaiveTradesConsumer.as_asgi())])
            ),
            allowed_origins(),
        ),
    }
)
