"""The ops performance page, relative to /ops/ (config/urls.py)."""

from django.urls import URLPattern, path

from analytics import ops_views

urlpatterns: list[URLPattern] = [
    path("", ops_views.ops_page, name="ops"),
    path("data", ops_views.ops_data, name="ops-data"),
    path("benchmarks/<str:name>", ops_views.ops_benchmark_file, name="ops-benchmark-file"),
]
