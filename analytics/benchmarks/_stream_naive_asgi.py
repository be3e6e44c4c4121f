"""ASGI app for ``benchmark stream``'s naive baseline: ``daphne analytics.benchmarks._stream_naive_asgi:application``.

The project's websocket stack (origin check, auth middleware) around one route to
``NaiveTradesConsumer`` (analytics/benchmarks/stream.py): Channels' documented pattern, a group
per symbol and a ``group_send`` per tick, delivered per client through the channel layer.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

# isort: off
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import re_path

from config.asgi import django_asgi_app, websocket_app  # sets Django up, so it comes first

from analytics.benchmarks.stream import NaiveTradesConsumer
# isort: on

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": websocket_app(
            URLRouter([re_path(r"^v2/(?P<feed>[a-z_]{1,20})$", NaiveTradesConsumer.as_asgi())])
        ),
    }
)
