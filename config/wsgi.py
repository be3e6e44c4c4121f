"""WSGI entry point: gunicorn serves pages and the REST API (see README, Production topology).

The REST API under ``/v2/`` runs through its own, shorter middleware stack
(``settings.API_MIDDLEWARE``): every view there is a DRF view, so Django's CSRF middleware only
marks it exempt (DRF's SessionAuthentication runs Django's CSRF check itself for session
callers), the API sends no flash messages and whitenoise has no files under ``/v2/``. Each layer
costs a few microseconds on every request, and the cached reads are held to a 10 ms p99 (README,
Benchmarks). Pages, the admin and static files keep the full ``settings.MIDDLEWARE``; so do the
API's two HTML pages (Swagger UI and Redoc under ``/v2/``), which need the pages' Content-Security-
Policy, a header the JSON answers have no use for (a browser renders none of them).
"""

import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.urls import reverse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

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
        if path.startswith(API_PREFIX) and path not in self.pages_under_api:
            return self.api(environ, start_response)
        return self.pages(environ, start_response)


_pages = get_wsgi_application()  # sets Django up, so the URLconf can be read below
application = SplitStackHandler(
    pages=_pages,
    api=handler_for(settings.API_MIDDLEWARE),
    pages_under_api=(reverse("openapi-docs"), reverse("openapi-redoc")),
)
