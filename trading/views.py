"""The landing page: what is running and how to connect, until the dashboard replaces it."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from trading.models import Asset


def home(request: HttpRequest) -> HttpResponse:
    base_url = request.build_absolute_uri("/").rstrip("/")
    return render(
        request,
        "home.html",
        {
            "base_url": base_url,
            "asset_count": Asset.objects.filter(active=True).count(),
            "market_hours": settings.MARKET_HOURS,
        },
    )
