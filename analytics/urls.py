from django.conf import settings
from django.urls import URLPattern, URLResolver, path

from analytics import dashboard_api, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/leaderboard", views.LeaderboardView.as_view(), name="leaderboard"),
    path("v2/leaderboard.csv", views.LeaderboardCsvView.as_view(), name="leaderboard-csv"),
    path("v2/analytics/account", views.AccountAnalyticsView.as_view(), name="analytics-account"),
    path("v2/analytics/symbols/<str:symbol>", views.SymbolStatsView.as_view(), name="analytics-symbol"),
    path(
        "v2/dashboard/bootstrap", dashboard_api.DashboardBootstrapView.as_view(), name="dashboard-bootstrap"
    ),
    path("v2/metrics/frontend", dashboard_api.FrontendMetricsView.as_view(), name="frontend-metrics"),
]

if settings.BENCHMARK_ENDPOINTS:
    urlpatterns.append(path("v2/_bench/ping", views.bench_ping, name="bench-ping"))
