"""OpenAPI descriptions drf-spectacular cannot infer: the API-key schemes and the error answers.

Every operation lists the error statuses it can answer, in Alpaca's shape (``Error``), so a client
generated from the schema, or a conformance test such as schemathesis, meets no undocumented
status. Most follow from the operation's shape (``ApiSchema.error_statuses``); views add the
ones their own logic raises with ``with_errors(..., 403, 404)`` (trading/api/views_base.py).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ComponentRegistry
from rest_framework.permissions import SAFE_METHODS, AllowAny, IsAuthenticated

from trading.api.serializers import ErrorSerializer

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "malformed request body (not JSON, or nested too deeply)",
    401: "missing or invalid API key",
    403: "forbidden: insufficient buying power or shares, a session without its CSRF token, "
    "a user without a trading account, or not allowed",
    404: "not found",
    413: "request body over the upload limit (2.5 MB by default)",
    415: "request body that is not JSON",
    422: "invalid parameters",
    429: "rate limit reached; Retry-After says when to try again",
}
# gunicorn answers a request line longer than its limit (4094 bytes by default) itself, before the
# API sees it, with an HTML page; a reverse proxy in front does the same with its own limit.
_URI_TOO_LONG = {
    "description": "request line (path and query) longer than the web server accepts; "
    "answered by the server (gunicorn or the proxy), as an HTML page",
    "content": {"text/html": {"schema": {"type": "string"}}},
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before the next request",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


class ApiSchema(AutoSchema):
    """The project's schema class (``DEFAULT_SCHEMA_CLASS``): adds each operation's error answers."""

    def get_operation(
        self, path: str, path_regex: str, path_prefix: str, method: str, registry: ComponentRegistry
    ) -> dict[str, Any] | None:
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        responses: dict[str, Any] = operation["responses"]
        for error in self.error_statuses(operation):
            responses.setdefault(str(error), self._error_response(error))
        if any(parameter["in"] == "query" for parameter in operation.get("parameters", [])):
            responses.setdefault("414", _URI_TOO_LONG)
        if "429" in responses:
            responses["429"].setdefault("headers", {}).update(_RETRY_AFTER)
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def error_statuses(self, operation: dict[str, Any]) -> set[int]:
        """What any operation of this shape can answer, whatever its view does."""
        view = self.view
        statuses = {413}  # config/wsgi.py refuses any API request with a body over the limit
        permissions = view.get_permissions()
        if not any(isinstance(permission, AllowAny) for permission in permissions):
            statuses.add(401)
            if self.method not in SAFE_METHODS:
                statuses.add(403)  # a session caller without its CSRF token
            if any(type(permission) is not IsAuthenticated for permission in permissions):
                statuses.add(403)  # staff only
        if view.get_throttles():
            statuses.add(429)
        if "requestBody" in operation:
            statuses |= {400, 415, 422}
        locations = {parameter["in"] for parameter in operation.get("parameters", [])}
        if "query" in locations:
            statuses.add(422)
        if "path" in locations:
            statuses.add(404)
        return statuses

    def _error_response(self, status: int) -> dict[str, Any]:
        component = self.resolve_serializer(ErrorSerializer, "response")
        return {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {"application/json": {"schema": component.ref}},
        }


class APIKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "trading.api.authentication.APIKeyAuthentication"
    name = ["ApiKeyId", "ApiSecretKey", "BasicKeyPair"]

    def get_security_requirement(self, auto_schema: AutoSchema) -> list[dict[str, list[Any]]]:
        # Both headers together, or the pair as HTTP Basic.
        return [{"ApiKeyId": [], "ApiSecretKey": []}, {"BasicKeyPair": []}]

    def get_security_definition(self, auto_schema: AutoSchema) -> list[dict[str, Any]]:
        return [
            {"type": "apiKey", "in": "header", "name": "APCA-API-KEY-ID"},
            {"type": "apiKey", "in": "header", "name": "APCA-API-SECRET-KEY"},
            {"type": "http", "scheme": "basic", "description": "base64(key_id:secret)"},
        ]
