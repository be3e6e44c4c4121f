"""WebSocket routes, served by daphne (config/asgi.py), and the router that serves them.

``StreamRouter`` replaces Channels' OriginValidator(AuthMiddlewareStack(URLRouter(...))) for these
routes. Each of those layers is a coroutine that awaits the next for the socket's whole life, and
the cookie, session and auth middlewares each keep a copy of the scope with a lazy session and
user, ~6 KB per idle connection (tracemalloc, ``benchmark stream``). Here the origin is checked
and the route matched before the consumer starts, and nothing of the router stays on the
connection: the consumers resolve the Django session themselves, when they need it, through
Channels' own session store and ``get_user`` (realtime/consumers.py, ``session_user_id``).

A browser's Origin must be one of this site's own origins (``allowed_origins``: scheme, host and
port compared), so a page on another site, or on another port of the same host, cannot open a
socket with a visitor's session cookie (cross-site WebSocket hijacking). Channels'
AllowedHostsOriginValidator compares the host alone, and also refuses a handshake with no Origin
header, which would shut out every bot (alpaca-py and most WebSocket libraries send none);
browsers always send Origin, so allowing its absence keeps the protection where it matters
(``BrowserOriginValidator``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.urls import URLPattern, path, re_path

from realtime import transport
from realtime.consumers import DashboardConsumer, MarketDataConsumer, TradeUpdatesConsumer

websocket_urlpatterns = [
    # Any feed name is accepted at the handshake; one not in STREAM_FEEDS answers 409 at auth,
    # which alpaca-py treats as final instead of reconnecting forever.
    re_path(r"^v2/(?P<feed>[a-z_]{1,20})$", MarketDataConsumer.as_asgi()),
    path("stream", TradeUpdatesConsumer.as_asgi()),
    path("ws/dashboard", DashboardConsumer.as_asgi()),
]

Scope = dict[str, Any]


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


NOT_FOUND = 404


async def _not_found(scope: Scope, receive: Any, send: Any) -> None:
    """A handshake on a path no route serves: refused with HTTP 404.

    Channels' URLRouter raises instead, which daphne logs as a traceback and answers 500. The ASGI
    denial-response extension answers 404 where the server has it; daphne has not, and is told
    directly (realtime/transport.py); any other server refuses the handshake its own way (403 on most).
    """
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": NOT_FOUND,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"Not Found"})
    elif not transport.deny_handshake(send, NOT_FOUND, "Not Found"):
        await send({"type": "websocket.close"})


class StreamRouter:
    """The WebSocket application: origin check, then the matching route's consumer.

    A plain callable that returns the consumer's (or the denier's) coroutine, marked as an ASGI 3
    single callable for asgiref's and daphne's detection: an ``async def`` here would keep one
    more coroutine frame, holding the scope, for every open socket.
    """

    _asgi_single_callable = True

    def __init__(self, routes: Sequence[URLPattern], *, origin_allowed: Callable[[Scope], bool]) -> None:
        self.routes = list(routes)
        self.origin_allowed = origin_allowed

    def __call__(self, scope: Scope, receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "websocket":
            raise ValueError(f"StreamRouter serves WebSocket scopes, not {scope['type']!r}")
        if not self.origin_allowed(scope):
            return WebsocketDenier()(scope, receive, send)
        full_path = str(scope.get("path", ""))
        root_path = str(scope.get("root_path", ""))
        if root_path and not full_path.startswith(root_path):
            return _not_found(scope, receive, send)
        route_path = full_path[len(root_path) :].lstrip("/")
        for route in self.routes:
            match = route.pattern.match(route_path)
            if match:
                _, args, kwargs = match
                url_route = {"args": tuple(args), "kwargs": {**kwargs, **route.default_args}}
                # A new dict, as URLRouter makes: the server's scope is not changed.
                routed_scope = {**scope, "url_route": url_route}
                consumer_class = getattr(route.callback, "consumer_class", None)
                if consumer_class is None:  # any other ASGI application
                    application: Awaitable[None] = route.callback(routed_scope, receive, send)
                    return application
                # The consumer itself, without as_asgi()'s wrapper coroutine around it.
                consumer = consumer_class(**route.callback.consumer_initkwargs)  # type: ignore[attr-defined]
                routed: Awaitable[None] = consumer(routed_scope, receive, send)
                return routed
        return _not_found(scope, receive, send)
