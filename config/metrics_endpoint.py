"""``GET /metrics``: the Prometheus text of every process on this host (config/metrics.py).

Outside ``/v2/`` and its JSON error shape, as Prometheus expects: an anonymous caller gets a plain
401 with ``WWW-Authenticate: Bearer``, a signed-in non-staff user a plain 403. Readers: a staff
member's session, or ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time; with
no token set, staff only).
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from config.metrics import CONTENT_TYPE, metrics_exposition


def _bearer_token_valid(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not given:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _bearer_token_valid(request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            response = HttpResponse(
                "401 Unauthorized\n", status=401, content_type="text/plain; charset=utf-8"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not user.is_staff:
            return HttpResponse("403 Forbidden\n", status=403, content_type="text/plain; charset=utf-8")
    response = HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE)
    response["Cache-Control"] = "no-store"
    return response
