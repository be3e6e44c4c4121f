"""WSGI entry point: gunicorn serves pages and the REST API (see README, Production topology).

The REST API under ``/v2/`` runs through its own, shorter middleware stack
(``settings.API_MIDDLEWARE``): every view there is a DRF view, so Django's CSRF middleware only
marks it exempt (DRF's SessionAuthentication runs Django's CSRF check itself for session
callers), the API sends no flash messages and whitenoise has no files under ``/v2/``. Each layer
costs a few microseconds on every request, and the cached reads are held to a 10 ms p99 (README,
Benchmarks). Pages, the admin and static files keep the full ``settings.MIDDLEWARE``.
"""

import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

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
    """Routes ``/v2/`` to the API handler and everything else to the pages handler."""

    def __init__(self, *, pages: WSGIHandler, api: WSGIHandler) -> None:
        self.pages = pages
        self.api = api

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        handler = self.api if environ.get("PATH_INFO", "").startswith(API_PREFIX) else self.pages
        return handler(environ, start_response)


application = SplitStackHandler(pages=get_wsgi_application(), api=handler_for(settings.API_MIDDLEWARE))
