"""The pages' Content-Security-Policy: django-csp's middleware and ``settings.CONTENT_SECURITY_POLICY``,
plus the one source that depends on the request.

The dashboard opens its sockets at the WebSocket origin the page is told to use
(``trading.public_urls.stream_base_url``: ``STREAM_PUBLIC_URL``, or this host name on ``WS_PORT``).
``'self'`` does not cover it: it is another port, and under CSP level 2 another scheme (ws:), so
connect-src names it. Subclassing and extending ``get_policy_parts`` is django-csp's documented
way to change the policy per request.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase

from trading.public_urls import stream_base_url


class ContentSecurityPolicyMiddleware(CSPMiddleware):
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
