"""WebSocket routes, served by daphne (config/asgi.py)."""

from __future__ import annotations

from django.urls import path, re_path

from realtime.consumers import DashboardConsumer, MarketDataConsumer, TradeUpdatesConsumer

websocket_urlpatterns = [
    # Any feed name is accepted at the handshake; one not in STREAM_FEEDS answers 409 at auth,
    # which alpaca-py treats as final instead of reconnecting forever.
    re_path(r"^v2/(?P<feed>[a-z_]{1,20})$", MarketDataConsumer.as_asgi()),
    path("stream", TradeUpdatesConsumer.as_asgi()),
    path("ws/dashboard", DashboardConsumer.as_asgi()),
]
