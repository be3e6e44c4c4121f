"""Alpaca Trading API v2 routes. No trailing slashes (alpaca-py never follows redirects), and
the ``:by_client_order_id`` / ``:by_name`` forms carry a literal colon."""

from django.urls import URLPattern, URLResolver, path

from trading.api import views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/account", views.AccountView.as_view(), name="account"),
    path("v2/account/reset", views.AccountResetView.as_view(), name="account-reset"),
    path(
        "v2/account/configurations", views.AccountConfigurationsView.as_view(), name="account-configurations"
    ),
    path("v2/account/activities", views.ActivitiesView.as_view(), name="account-activities"),
    path(
        "v2/account/activities/<str:activity_type>",
        views.ActivitiesByTypeView.as_view(),
        name="account-activities-by-type",
    ),
    path("v2/account/portfolio/history", views.PortfolioHistoryView.as_view(), name="portfolio-history"),
    path("v2/orders", views.OrdersView.as_view(), name="orders"),
    path("v2/orders:by_client_order_id", views.OrderByClientIdView.as_view(), name="order-by-client-id"),
    path("v2/orders/<str:order_id>", views.OrderDetailView.as_view(), name="order-detail"),
    path("v2/positions", views.PositionsView.as_view(), name="positions"),
    path("v2/positions/<str:symbol_or_asset_id>", views.PositionDetailView.as_view(), name="position-detail"),
    path("v2/assets", views.AssetsView.as_view(), name="assets"),
    path("v2/assets/<str:symbol_or_asset_id>", views.AssetDetailView.as_view(), name="asset-detail"),
    path("v2/clock", views.ClockView.as_view(), name="clock"),
    path("v2/calendar", views.CalendarView.as_view(), name="calendar"),
    path("v2/watchlists", views.WatchlistsView.as_view(), name="watchlists"),
    path("v2/watchlists:by_name", views.WatchlistByNameView.as_view(), name="watchlist-by-name"),
    path("v2/watchlists/<str:watchlist_id>", views.WatchlistDetailView.as_view(), name="watchlist-detail"),
    path(
        "v2/watchlists/<str:watchlist_id>/<str:symbol>",
        views.WatchlistAssetView.as_view(),
        name="watchlist-asset",
    ),
]
