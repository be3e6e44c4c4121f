from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("trading.api.ops_urls")),
    path("", include("trading.api.market_data_urls")),
    path("", include("trading.api.urls")),
]
