"""The pages' Content-Security-Policy: django-csp's middleware and ``settings.CONTENT_SECURITY_POLICY``,
plus the one source that depends on the request.

The dashboard opens its sockets at the WebSocket origin the page is told to use
(``trading.public_urls.stream_base_url``: ``STREAM_PUBLIC_URL``, or this host name on ``WS_PORT``).
``'self'`` does not cover it: it is another port, and under CSP level 2 another scheme (ws:), so
connect-src names it. Subclassing and extending ``get_policy_parts`` is django-csp's documented
way to change the policy per request.

django-csp builds the header from the settings on every response, and asks for the policy twice
(the second time for a report-only header, which this project does not send). The policy is the
same on every response but for two parts, the stream origin and the request's nonce, so it is
built once per process, by django-csp's own ``build_policy``, with a marker in each of the two
places, and each response fills them in (docs/architecture.md, Framework bypasses). A response
that carries a view's own change to the policy (``csp_update`` and the like), a report-only
policy in the settings, or DEBUG's exempted error pages take django-csp's path unchanged.
"""

from __future__ import annotations

import copy
import http.client
from typing import Any

from csp.constants import HEADER
from csp.middleware import CheckableLazyObject, CSPMiddleware, PolicyParts
from csp.utils import build_policy
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from trading.public_urls import stream_base_url

# Where the stream origin and the nonce go in a policy built once; neither can appear in a source
# of the settings' policy (a header value holds no NUL).
_ORIGIN_MARK = "\x00origin\x00"
_NONCE_MARK = "\x00nonce\x00"
# What a view's decorators (csp_update, csp_replace, csp, csp_exempt's report-only half) leave on
# its response for django-csp: such a response takes django-csp's own path.
_PER_VIEW_ATTRIBUTES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)
_DEBUG_EXEMPT_STATUSES = (http.client.INTERNAL_SERVER_ERROR, http.client.NOT_FOUND)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The policies built from one settings dict (a test's override brings another), by whether
        # a stream origin and a nonce go in. Written once per key, so a race only builds one twice.
        self._built: dict[tuple[bool, bool], tuple[object, str]] = {}

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request=request, response=response, report_only=report_only)
        try:
            stream_origin = stream_base_url(request)
        except DisallowedHost:
            # The host check has already answered 400; that answer needs no stream origin.
            return parts
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", ()), stream_origin]
        parts.update = update
        return parts

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if (
            getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
            or any(hasattr(response, name) for name in _PER_VIEW_ATTRIBUTES)
            or (settings.DEBUG and response.status_code in _DEBUG_EXEMPT_STATUSES)
        ):
            return super().process_response(request, response)
        header = self._header(request)
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None) or {}
        if (
            header
            and HEADER not in response
            and getattr(response, "_csp_exempt", False) is False
            and not request.path_info.startswith(tuple(policy.get("EXCLUDE_URL_PREFIXES", None) or ()))
        ):
            response[HEADER] = header
        # As django-csp: a nonce asked for after the header was written would be in no policy.
        if getattr(request, "_csp_nonce", None) is None:
            request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response

    def _header(self, request: HttpRequest) -> str:
        """What django-csp's ``build_policy`` makes of this request's parts, from a policy built once."""
        try:
            origin: str | None = stream_base_url(request)
        except DisallowedHost:
            origin = None
        nonce = getattr(request, "_csp_nonce", None)
        config = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        key = (origin is not None, nonce is not None)
        built = self._built.get(key)
        # Compared by value with a copy, not by identity: a test (or a reload) that changes the
        # policy's dict in place gets the new header (a few microseconds for a dozen directives).
        if built is None or built[0] != config:
            template = build_policy(
                update={"connect-src": [_ORIGIN_MARK]} if origin is not None else None,
                nonce=_NONCE_MARK if nonce is not None else None,
            )
            built = self._built[key] = (copy.deepcopy(config), template)
        header = built[1]
        if origin is not None:
            header = header.replace(_ORIGIN_MARK, origin)
        if nonce is not None:
            header = header.replace(_NONCE_MARK, nonce)
        return header
