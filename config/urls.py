from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from analytics import urls as analytics_urls
from config.metrics_endpoint import metrics_view
from jobs import urls as jobs_urls
from trading.api import urls as trading_api_urls
from trading.api.ops_urls import schema_urlpatterns

# Django tries routes in order, one pattern at a time (~1.5 us each, more under load): with
# every app included at "" an API request walked ~60 patterns before its own. Under one "v2/"
# prefix, market data under "v2/stocks/", an API request now tries at most ~30 and a page ~15.
# The app modules' routes are relative to these prefixes and spliced in rather than included at
# "" (each include is one more resolver, and its match object, on every request); none overlap,
# so order only decides speed: the cached reads (analytics) and jobs before the trading routes,
# schema pages last.
api_v2: list[URLPattern | URLResolver] = [
    path("stocks/", include("trading.api.market_data_urls")),
    *analytics_urls.urlpatterns,
    *jobs_urls.urlpatterns,
    *trading_api_urls.urlpatterns,
    *schema_urlpatterns,
]
if settings.BENCHMARK_ENDPOINTS:
    # The benchmarks' API floors (benchmarks/views.py), first: one prefix that fails fast for
    # every other path, so the floors resolve no slower than the endpoints measured against them.
    api_v2.insert(0, path("_bench/", include("benchmarks.urls")))

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/", include(api_v2)),
    path("", include("trading.page_urls")),
    path("", include("analytics.game_page_urls")),
    path("", include("trading.api.ops_urls")),
    path("admin/", admin.site.urls),
    # The staff-only ops performance page (analytics/ops_views.py).
    path("ops/", include("analytics.ops_urls")),
    # Prometheus's scrape target, outside /v2/ and its error shape (config/metrics_endpoint.py).
    path("metrics", metrics_view, name="metrics"),
]

# Alpaca clients expect JSON errors in their shape, also for unknown routes and crashes.
handler400 = "trading.api.errors.json_bad_request"
handler404 = "trading.api.errors.json_not_found"
handler500 = "trading.api.errors.json_server_error"
