"""The benchmark-only floors (benchmarks/views.py), relative to /v2/_bench/; config/urls.py
includes them only under BENCHMARK_ENDPOINTS."""

from django.urls import URLPattern, URLResolver, path

from benchmarks import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("api-ping", views.ApiFloorView.as_view(), name="bench-api-ping"),
    path("insert", views.InsertFloorView.as_view(), name="bench-insert"),
]
