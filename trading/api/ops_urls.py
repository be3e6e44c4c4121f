"""Operational routes: health at the root, and (under /v2/) the OpenAPI schema and its browsable docs; all public."""

from typing import Any

from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from trading.api.ops import HealthzView

# The schema describes the public API surface, so reading it needs no key; serving it without
# authentication classes also keeps it free of the API-key lookup.
_public: dict[str, Any] = {"permission_classes": [AllowAny], "authentication_classes": []}

urlpatterns: list[URLPattern | URLResolver] = [
    path("healthz", HealthzView.as_view(), name="healthz"),
]

schema_urlpatterns: list[URLPattern | URLResolver] = [
    path("openapi.json", SpectacularJSONAPIView.as_view(**_public), name="openapi-schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="openapi-schema", **_public), name="openapi-docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="openapi-schema", **_public), name="openapi-redoc"),
]
