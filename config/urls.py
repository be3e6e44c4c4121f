from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("trading.page_urls")),
    path("admin/", admin.site.urls),
    path("", include("trading.api.ops_urls")),
    path("", include("trading.api.market_data_urls")),
    path("", include("trading.api.urls")),
    path("", include("analytics.urls")),
    path("", include("jobs.urls")),
]

# Alpaca clients expect JSON errors in their shape, also for unknown routes and crashes.
handler404 = "trading.api.errors.json_not_found"
handler500 = "trading.api.errors.json_server_error"
