"""Leaderboard, analytics and dashboard routes, relative to /v2/ (config/urls.py)."""

from django.conf import settings
from django.urls import URLPattern, URLResolver, path

from analytics import dashboard_api, game_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("leaderboard", views.LeaderboardView.as_view(), name="leaderboard"),
    path("leaderboard.csv", views.LeaderboardCsvView.as_view(), name="leaderboard-csv"),
    path("analytics/account", views.AccountAnalyticsView.as_view(), name="analytics-account"),
    path("analytics/symbols/<str:symbol>", views.SymbolStatsView.as_view(), name="analytics-symbol"),
    path(
        "games/<str:game_id>/leaderboard", game_views.GameLeaderboardView.as_view(), name="game-leaderboard"
    ),
    path(
        "games/<str:game_id>/standings.csv",
        game_views.GameStandingsCsvView.as_view(),
        name="game-standings-csv",
    ),
    path("dashboard/bootstrap", dashboard_api.DashboardBootstrapView.as_view(), name="dashboard-bootstrap"),
    path("metrics/frontend", dashboard_api.FrontendMetricsView.as_view(), name="frontend-metrics"),
]

if settings.BENCHMARK_ENDPOINTS:
    urlpatterns.append(path("_bench/ping", views.bench_ping, name="bench-ping"))
