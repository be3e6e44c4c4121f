"""Every API error in Alpaca's shape: ``{"code": <status * 100000 + 10000>, "message": str}``.

alpaca-py turns any non-2xx answer into ``APIError`` and reads ``code`` and ``message`` from the
body, so the shape must hold for DRF's own errors, domain errors, 404s and crashes alike.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core.exceptions import (
    PermissionDenied as DjangoPermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
    ValidationError as DjangoValidationError,
)
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import set_rollback

from trading.errors import TradingError
from trading.units import UnitError

logger = logging.getLogger(__name__)

# Alpaca answers invalid parameters with 422, where DRF would say 400.
VALIDATION_STATUS = status.HTTP_422_UNPROCESSABLE_ENTITY
# The database cannot be reached (stopped, restarting, connection lost, connect timeout): the
# request is answered 503 at once, and the next request tries a new connection.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# Where the fast reads (trading/api/fast_reads.py) hand on the database-unavailable error their
# statement met: the view raises it where it would have connected (``TradingAPIView.initial``), so
# the request gets the view's own 503 after one connection attempt, not two.
DATABASE_UNAVAILABLE_ENVIRON = "trading.database_unavailable"
UNAVAILABLE_MESSAGE = "service unavailable: the database is not answering, try again shortly"
UNAVAILABLE_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Service unavailable</title>'
    "</head><body><h1>Service unavailable</h1><p>The database is not answering. Try again in a "
    "moment.</p></body></html>"
)

# Paths whose first segment is an API version (v2, v1beta1, v1beta3...) belong to the API, known
# or not: Alpaca's SDKs call several such prefixes (news, crypto, options, screener) on the same
# base URL, and alpaca-py crashes reading an error that is not JSON. Everything else is a page.
_API_PATH_RE = re.compile(r"/v[0-9]+(?:beta[0-9]+)?(?:/|$)", re.ASCII)


def is_api_path(path: str) -> bool:
    return _API_PATH_RE.match(path) is not None


def body_too_large_message() -> str:
    return f"request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"


def error_code(status_code: int) -> int:
    return status_code * 100000 + 10000


def error_body(status_code: int, message: str) -> dict[str, Any]:
    return {"code": error_code(status_code), "message": message}


def flatten_detail(detail: Any, prefix: str = "") -> list[str]:
    """DRF's nested error details as 'field: message' lines, in field order."""
    if isinstance(detail, Mapping):
        lines: list[str] = []
        for key, value in detail.items():
            name = "" if key == "non_field_errors" else str(key)
            lines.extend(flatten_detail(value, f"{prefix}.{name}" if prefix and name else prefix or name))
        return lines
    if isinstance(detail, Sequence) and not isinstance(detail, str):
        return [line for item in detail for line in flatten_detail(item, prefix)]
    return [f"{prefix}: {detail}" if prefix else str(detail)]


def _status_and_message(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, DATABASE_UNAVAILABLE):
        return status.HTTP_503_SERVICE_UNAVAILABLE, UNAVAILABLE_MESSAGE
    if isinstance(exc, TradingError):
        return exc.status, exc.message
    if isinstance(exc, UnitError):
        return VALIDATION_STATUS, str(exc)
    if isinstance(exc, Http404):
        return status.HTTP_404_NOT_FOUND, str(exc) or "not found"
    if isinstance(exc, DjangoPermissionDenied):
        return status.HTTP_403_FORBIDDEN, str(exc) or "forbidden"
    if isinstance(exc, RequestDataTooBig):
        # Django refuses a body over DATA_UPLOAD_MAX_MEMORY_SIZE before reading it.
        return status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, body_too_large_message()
    if isinstance(exc, SuspiciousOperation):
        # Django's other refusals of a request (too many form fields, a malformed header...).
        return status.HTTP_400_BAD_REQUEST, "bad request"
    if isinstance(exc, DjangoValidationError):
        # A model or field refusing a value (e.g. a malformed UUID reaching a query) is bad input.
        return VALIDATION_STATUS, "; ".join(exc.messages) or "invalid request"
    if isinstance(exc, exceptions.ValidationError):
        return VALIDATION_STATUS, "; ".join(flatten_detail(exc.detail)) or "invalid request"
    if isinstance(exc, exceptions.ParseError):
        return status.HTTP_400_BAD_REQUEST, f"request body format is invalid: {exc.detail}"
    if isinstance(exc, exceptions.APIException):
        return exc.status_code, "; ".join(flatten_detail(exc.detail))
    return status.HTTP_500_INTERNAL_SERVER_ERROR, "internal server error"


def alpaca_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    status_code, message = _status_and_message(exc)
    headers: dict[str, str] = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = str(auth_header)
    if isinstance(exc, exceptions.Throttled):
        # alpaca-py retries 429 on its own schedule; other clients need the hint.
        headers["Retry-After"] = str(max(1, int(getattr(exc, "wait", None) or 1)))
    view = context.get("view")
    if isinstance(exc, DATABASE_UNAVAILABLE):
        # One line per request, no traceback: during an outage every request ends here.
        logger.warning("%s: database unavailable: %s", type(view).__name__ if view else "API view", exc)
    elif status_code >= 500:
        logger.error("unhandled error in %s", type(view).__name__ if view else "API view", exc_info=exc)
    set_rollback()
    return Response(error_body(status_code, message), status=status_code, headers=headers)


def json_bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler400`` (Django refused the request, e.g. its body over DATA_UPLOAD_MAX_MEMORY_SIZE
    or a disallowed host): Alpaca-shaped for the API, Django's page for everything else."""
    if is_api_path(request.path):
        status_code, message = _status_and_message(exception or SuspiciousOperation())
        if not 400 <= status_code < 500:
            status_code, message = status.HTTP_400_BAD_REQUEST, "bad request"
        return JsonResponse(error_body(status_code, message), status=status_code)
    return defaults.bad_request(request, exception or SuspiciousOperation())


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler404``: Alpaca-shaped for the API (``is_api_path``), Django's page for everything else."""
    if is_api_path(request.path):
        return JsonResponse(error_body(404, "endpoint not found"), status=404)
    return defaults.page_not_found(request, exception or Http404())


def json_server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: Alpaca-shaped for the API, Django's page for everything else; 503 instead
    when the database could not be reached (a page's view, or a middleware such as the session's,
    raised it; Django calls this handler while handling that exception)."""
    api = is_api_path(request.path)
    if isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        if api:
            return JsonResponse(error_body(503, UNAVAILABLE_MESSAGE), status=503)
        return HttpResponse(UNAVAILABLE_PAGE, status=503, content_type="text/html; charset=utf-8")
    if api:
        return JsonResponse(error_body(500, "internal server error"), status=500)
    return defaults.server_error(request)
