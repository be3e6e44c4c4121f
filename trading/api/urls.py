"""Alpaca Trading API v2 routes, relative to /v2/ (config/urls.py). No trailing slashes (alpaca-py never follows redirects), and
the ``:by_client_order_id`` / ``:by_name`` forms carry a literal colon."""

from django.urls import URLPattern, URLResolver, path

from trading.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("account", views.AccountView.as_view(), name="account"),
    path("account/reset", views.AccountResetView.as_view(), name="account-reset"),
    path("account/configurations", views.AccountConfigurationsView.as_view(), name="account-configurations"),
    path("account/activities", views.ActivitiesView.as_view(), name="account-activities"),
    path(
        "account/activities/<str:activity_type>",
        views.ActivitiesByTypeView.as_view(),
        name="account-activities-by-type",
    ),
    path("account/portfolio/history", views.PortfolioHistoryView.as_view(), name="portfolio-history"),
    path("orders", views.OrdersView.as_view(), name="orders"),
    path("orders:by_client_order_id", views.OrderByClientIdView.as_view(), name="order-by-client-id"),
    path("orders/<str:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("positions", views.PositionsView.as_view(), name="positions"),
    path("positions/<str:symbol_or_asset_id>", views.PositionDetailView.as_view(), name="position-detail"),
    path("assets", views.AssetsView.as_view(), name="assets"),
    path("assets/<str:symbol_or_asset_id>", views.AssetDetailView.as_view(), name="asset-detail"),
    path("clock", views.ClockView.as_view(), name="clock"),
    path("calendar", views.CalendarView.as_view(), name="calendar"),
    path("games", views.GamesView.as_view(), name="games"),
    path("games/<str:game_id>", views.GameDetailView.as_view(), name="game-detail"),
    path("games/<str:game_id>/join", views.GameJoinView.as_view(), name="game-join"),
    path("games/<str:game_id>/end", views.GameEndView.as_view(), name="game-end"),
    path("games/<str:game_id>/trades.csv", views.GameTradesCsvView.as_view(), name="game-trades-csv"),
    path(
        "games/<str:game_id>/announcements", views.GameAnnouncementsView.as_view(), name="game-announcements"
    ),
    path("games/<str:game_id>/players/<str:username>", views.GamePlayerView.as_view(), name="game-player"),
    path("watchlists", views.WatchlistsView.as_view(), name="watchlists"),
    path("watchlists:by_name", views.WatchlistByNameView.as_view(), name="watchlist-by-name"),
    path("watchlists/<str:watchlist_id>", views.WatchlistDetailView.as_view(), name="watchlist-detail"),
    path(
        "watchlists/<str:watchlist_id>/<str:symbol>",
        views.WatchlistAssetView.as_view(),
        name="watchlist-asset",
    ),
]
