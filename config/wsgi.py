"""WSGI entry point: gunicorn serves pages and the REST API (see README, Production topology).

The REST API under ``/v2/`` runs through its own, shorter middleware stack
(``settings.API_MIDDLEWARE``: ``MIDDLEWARE`` minus ``API_MIDDLEWARE_SKIPPED``, which gives each
skip its reason; anything else reaches the API). Each layer costs a few microseconds on every
request, and the cached reads are held to a 10 ms p99 (README, Benchmarks; docs/architecture.md,
Framework bypasses). Pages, the admin and static files keep the full ``settings.MIDDLEWARE``; so
do the API's two HTML pages (Swagger UI and Redoc under ``/v2/``), which need the pages'
Content-Security-Policy, a header the JSON answers have no use for (a browser renders none of
them).

An API request (``trading.api.errors.is_api_path``) whose declared body is larger than
``DATA_UPLOAD_MAX_MEMORY_SIZE`` is answered 413 in Alpaca's error shape here, before Django reads
anything, whichever operation it names: the views that read a body get the same answer from
Django's own check (trading/api/errors.py), and the others must not act on such a request either.
"""

import json
import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.urls import reverse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Sets Django up: the API modules imported below need the app registry.
pages_application = get_wsgi_application()

from trading.api.errors import body_too_large_message, error_body, is_api_path  # noqa: E402

API_PREFIX = "/v2/"


def handler_for(middleware: list[str]) -> WSGIHandler:
    """A Django WSGI handler whose chain is built from ``middleware`` instead of
    ``settings.MIDDLEWARE``.

    Django builds the chain from that setting once, in the handler's constructor, so it is
    swapped for the duration of the constructor only (at import, before any request is served).
    """
    configured = settings.MIDDLEWARE
    settings.MIDDLEWARE = middleware
    try:
        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = configured


class SplitStackHandler:
    """Routes ``/v2/`` to the API handler, except ``pages_under_api``, and everything else to the
    pages handler."""

    def __init__(self, *, pages: WSGIHandler, api: WSGIHandler, pages_under_api: Iterable[str] = ()) -> None:
        self.pages = pages
        self.api = api
        self.pages_under_api = frozenset(pages_under_api)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        declared = environ.get("CONTENT_LENGTH")
        if declared and is_api_path(path) and _too_large(declared):
            return _body_too_large(start_response)
        if path.startswith(API_PREFIX) and path not in self.pages_under_api:
            return self.api(environ, start_response)
        return self.pages(environ, start_response)


def _too_large(declared: str) -> bool:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    try:
        return limit is not None and int(declared) > limit
    except ValueError:
        return False  # Django treats a malformed length as no body


def _body_too_large(start_response: Any) -> list[bytes]:
    body = json.dumps(error_body(413, body_too_large_message())).encode()
    start_response(
        "413 Content Too Large",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("X-Content-Type-Options", "nosniff"),
        ],
    )
    return [body]


application = SplitStackHandler(
    pages=pages_application,
    api=handler_for(settings.API_MIDDLEWARE),
    pages_under_api=(reverse("openapi-docs"), reverse("openapi-redoc")),
)
