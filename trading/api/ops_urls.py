"""Operational routes: health at the root, and (under /v2/) the OpenAPI schema and its browsable docs; all public."""

from typing import Any

from csp.constants import SELF
from csp.decorators import csp_update
from django.urls import URLPattern, URLResolver, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularRedocView, SpectacularSwaggerSplitView
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
    # The two HTML pages of the API: config/wsgi.py sends them through the pages' middleware (the
    # Content-Security-Policy among it). Swagger UI's split view serves its start-up script at
    # "docs?script", so the page holds no inline code; Redoc's carries the request's CSP nonce,
    # and Redoc's search runs in a worker it starts from a blob: URL of its own code.
    path(
        "docs",
        SpectacularSwaggerSplitView.as_view(
            url_name="openapi-schema", template_name="api_docs/swagger_ui.html", **_public
        ),
        name="openapi-docs",
    ),
    path(
        "redoc",
        csp_update({"worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(
                url_name="openapi-schema", template_name="api_docs/redoc.html", **_public
            )
        ),
        name="openapi-redoc",
    ),
]
