"""OpenAPI descriptions drf-spectacular cannot infer: the API-key schemes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


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
