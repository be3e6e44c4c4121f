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
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started, setting_changed
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import reverse

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Sets Django up: the API modules imported below need the app registry.
pages_application = get_wsgi_application()

from analytics.fast_reads import cached_read, is_cached_read_path  # noqa: E402
from config.db_metrics import (  # noqa: E402
    HANDED_QUERIES_ENVIRON,
    request_queries_begin,
    request_queries_end,
)
from config.http_metrics import request_record  # noqa: E402
from config.metrics import metrics_enabled  # noqa: E402
from trading.api.errors import (  # noqa: E402
    DATABASE_UNAVAILABLE_ENVIRON,
    body_too_large_message,
    error_body,
    is_api_path,
)
from trading.api.fast_reads import (  # noqa: E402
    POLLED_READS,
    DatabaseUnavailable,
    FastAnswer,
    polled_read,
)
from trading.api.throttling import HANDED_VERDICT_ENVIRON  # noqa: E402

logger = logging.getLogger(__name__)

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


# The API stack (settings.API_MIDDLEWARE) whose work FastReads does itself, as of when it was
# written. Any other stack turns the fast path off: a middleware added or removed may change what
# an answer carries, and the guard test (tests/analytics/test_fast_reads.py) fails until the fast
# path is checked against it and this list updated.
FAST_READS_MIDDLEWARE = [
    "config.http_metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class FastReads:
    """The cached reads' fast path (analytics/fast_reads.py) with what the API stack does around
    a view's 200 (a framework bypass: docs/architecture.md). Per layer of FAST_READS_MIDDLEWARE:

    - RequestMetricsMiddleware: the same series under the route's name (``request_record``), and
      ``X-DB-Queries`` under BENCHMARK_ENDPOINTS;
    - SecurityMiddleware: its headers, computed once by the middleware itself for a secure and a
      plain request (``is_secure`` as Django decides it); a request it would redirect to HTTPS is
      Django's;
    - SessionMiddleware, AuthenticationMiddleware: nothing for a request without a session cookie
      (an API key's request never reads the session, so no ``Vary: Cookie``). One with the cookie
      is Django's: SessionMiddleware expires a cookie naming no session (``Set-Cookie``,
      ``Vary: Cookie``) whatever authenticated the request; and with SESSION_SAVE_EVERY_REQUEST
      set the fast path is off;
    - CommonMiddleware: ``Content-Length``; a host ALLOWED_HOSTS refuses is Django's (its 400), and
      with PREPEND_WWW or DISALLOWED_USER_AGENTS set the fast path is off;
    - XFrameOptionsMiddleware: its header, computed once by the middleware itself.

    With ``ATOMIC_REQUESTS`` on any database the fast path is off: Django runs every view in a
    transaction there, and the fast path's statement would run outside one. A request handed on
    to the view takes with it the statements counted here (``HANDED_QUERIES_ENVIRON``, added to the
    view's by RequestMetricsMiddleware) and, when the statement met a database outage, the error
    (``DATABASE_UNAVAILABLE_ENVIRON``: the view answers its 503 without connecting again).

    Built from the settings as they are (``application``'s at import, as Django's handlers build
    their middleware). The settings Django reads per request that it keeps rebuild it when a test
    changes them (``_fast_reads_rebuilt``); the middleware's own (SECURE_* headers, X_FRAME_OPTIONS,
    BENCHMARK_ENDPOINTS) stay as built in the API handler's chain too, so a test changing them
    builds its own stacks (tests/analytics/test_fast_reads.py).

    Django's ``request_started``/``request_finished`` are sent around a polled read (its one
    statement, trading/api/fast_reads.py) as Django's handler sends them: their receivers
    (``close_old_connections``, ``reset_queries``, ``reset_urlconf``) close a connection past
    CONN_MAX_AGE or broken (after a PostgreSQL restart) before the read and after it, as under the
    view; ``close_caches`` is off on purpose (config/cache.py). A read handed on to the view had
    ``request_started`` only: the view's handler sends both again. The cached reads use no
    connection and skip them (the next request Django serves closes it, as it would after any
    request that did not query).
    """

    def __init__(self) -> None:
        self.enabled = (
            list(settings.API_MIDDLEWARE) == FAST_READS_MIDDLEWARE
            and not settings.PREPEND_WWW
            and not settings.DISALLOWED_USER_AGENTS
            and not settings.SESSION_SAVE_EVERY_REQUEST
            # Django runs each view in a transaction then; the fast path would not.
            # (Django's handler reads it per request, from ``connections.settings``.)
            and not any(database["ATOMIC_REQUESTS"] for database in connections.settings.values())
        )
        self.frame_headers = _headers_added(XFrameOptionsMiddleware, secure=False)
        self.security_headers = {
            secure: _headers_added(SecurityMiddleware, secure=secure) for secure in (False, True)
        }
        self.ssl_redirect = bool(settings.SECURE_SSL_REDIRECT)
        self.proxy_ssl_header: tuple[str, str] | None = settings.SECURE_PROXY_SSL_HEADER
        self.forwarded_host = bool(settings.USE_X_FORWARDED_HOST)
        allowed = list(settings.ALLOWED_HOSTS)
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]  # as HttpRequest.get_host
        self.allowed_hosts = allowed
        # Host header -> allowed, for the few hosts clients name (bounded: a client can send any).
        self._hosts: dict[str, bool] = {}
        self.metrics = metrics_enabled()
        self.query_header = bool(settings.BENCHMARK_ENDPOINTS)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes] | None:
        """The answer, already started; None when the request is the API stack's."""
        if not self.enabled or environ.get("REQUEST_METHOD") != "GET":
            return None
        polled = POLLED_READS.get(environ.get("PATH_INFO", ""))
        if polled is None and not is_cached_read_path(environ):
            return None
        secure = self._is_secure(environ)
        if (self.ssl_redirect and not secure) or not self._host_allowed(environ):
            return None
        started = time.perf_counter()
        if polled is not None:
            request_started.send(sender=WSGIHandler, environ=environ)
        scope = request_queries_begin(polled.route if polled is not None else "")
        try:
            answer = cached_read(environ) if polled is None else polled_read(environ)
        except Exception:
            # Django's handler answers what went wrong, in the API's error shape.
            logger.exception("a fast read failed; the view answers")
            answer = None
        finally:
            request_queries_end()
        if not isinstance(answer, FastAnswer):
            if scope.count:
                # The statements run here count with the view's (RequestMetricsMiddleware).
                environ[HANDED_QUERIES_ENVIRON] = (scope.count, scope.seconds)
            if isinstance(answer, DatabaseUnavailable):
                environ[DATABASE_UNAVAILABLE_ENVIRON] = answer.error
                answer = answer.verdict
            if answer is not None:
                environ[HANDED_VERDICT_ENVIRON] = answer
            return None
        body = answer.body
        headers = [
            *answer.headers,
            *self.frame_headers,
            ("Content-Length", str(len(body))),
            *self.security_headers[secure],
        ]
        if self.query_header:
            headers.append(("X-DB-Queries", str(scope.count)))
        if self.metrics:
            request_record(
                answer.route, "GET", 200, time.perf_counter() - started, scope.count, scope.seconds
            )
        if polled is not None:
            request_finished.send(sender=WSGIHandler)
        start_response("200 OK", headers)
        return [body]

    def _is_secure(self, environ: dict[str, Any]) -> bool:
        # HttpRequest.scheme's rule.
        if self.proxy_ssl_header is not None:
            header, secure_value = self.proxy_ssl_header
            value = environ.get(header)
            if value is not None:
                return bool(value.split(",", 1)[0].strip() == secure_value)
        return bool(environ.get("wsgi.url_scheme") == "https")

    def _host_allowed(self, environ: dict[str, Any]) -> bool:
        # HttpRequest.get_host's check; a request without a Host header is left to Django.
        host = environ.get("HTTP_X_FORWARDED_HOST") if self.forwarded_host else None
        if host is None:
            host = environ.get("HTTP_HOST")
        if host is None:
            return False
        allowed = self._hosts.get(host)
        if allowed is None:
            domain, _ = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._hosts) < 64:
                self._hosts[host] = allowed
        return allowed


class _ProbeRequest(HttpRequest):
    """A request that is secure or not, for asking a middleware what it adds."""

    def __init__(self, *, secure: bool) -> None:
        super().__init__()
        self._probe_scheme = "https" if secure else "http"

    def _get_scheme(self) -> str:
        return self._probe_scheme

    @property
    def scheme(self) -> str:
        return self._probe_scheme


def _headers_added(
    middleware: type[SecurityMiddleware] | type[XFrameOptionsMiddleware], *, secure: bool
) -> list[tuple[str, str]]:
    """The headers ``middleware`` adds to a response that sets none of them, in its order."""
    response = HttpResponse()
    before = set(response.headers)
    instance = middleware(lambda request: response)
    instance.process_response(_ProbeRequest(secure=secure), response)
    return [(name, value) for name, value in response.items() if name not in before]


class SplitStackHandler:
    """Routes ``/v2/`` to the API handler, except ``pages_under_api``, and everything else to the
    pages handler; the API's cached and polled reads first to ``fast`` when given (FastReads)."""

    def __init__(
        self,
        *,
        pages: WSGIHandler,
        api: WSGIHandler,
        pages_under_api: Iterable[str] = (),
        fast: FastReads | None = None,
    ) -> None:
        self.pages = pages
        self.api = api
        self.pages_under_api = frozenset(pages_under_api)
        self.fast = fast

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        declared = environ.get("CONTENT_LENGTH")
        if declared and is_api_path(path) and _too_large(declared):
            return _body_too_large(start_response)
        if path.startswith(API_PREFIX) and path not in self.pages_under_api:
            if self.fast is not None:
                answered = self.fast(environ, start_response)
                if answered is not None:
                    return answered
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
    fast=FastReads(),
)

# What FastReads keeps of the settings Django's request and middleware read on every request, so
# that under a changed one its answers still follow Django's (FastReads' docstring).
_FAST_READS_PER_REQUEST_SETTINGS = frozenset(
    {
        "ALLOWED_HOSTS",
        "DEBUG",
        "USE_X_FORWARDED_HOST",
        "SECURE_PROXY_SSL_HEADER",
        "PREPEND_WWW",
        "DISALLOWED_USER_AGENTS",
        "SESSION_SAVE_EVERY_REQUEST",
        "DATABASES",  # ATOMIC_REQUESTS
    }
)


@receiver(setting_changed)
def _fast_reads_rebuilt(*, setting: str, **kwargs: Any) -> None:
    """``application``'s FastReads built again when a test changes one of those settings (Django
    sends ``setting_changed`` from override_settings only)."""
    if setting in _FAST_READS_PER_REQUEST_SETTINGS and application.fast is not None:
        application.fast = FastReads()
