"""The Alpaca-compatible trading endpoints, one module per resource; imported here for urls.py."""

from trading.api import schema  # noqa: F401  (registers the API-key scheme for the OpenAPI schema)
from trading.api.views_account import (
    AccountConfigurationsView,
    AccountResetView,
    AccountView,
    ActivitiesByTypeView,
    ActivitiesView,
    PortfolioHistoryView,
)
from trading.api.views_assets import AssetDetailView, AssetsView, CalendarView, ClockView
from trading.api.views_games import (
    GameAnnouncementsView,
    GameDetailView,
    GameEndView,
    GameJoinView,
    GamePlayerView,
    GamesView,
    GameTradesCsvView,
)
from trading.api.views_orders import OrderByClientIdView, OrderDetailView, OrdersView
from trading.api.views_positions import PositionDetailView, PositionsView
from trading.api.views_watchlists import (
    WatchlistAssetView,
    WatchlistByNameView,
    WatchlistDetailView,
    WatchlistsView,
)

__all__ = [
    "AccountConfigurationsView",
    "AccountResetView",
    "AccountView",
    "ActivitiesByTypeView",
    "ActivitiesView",
    "AssetDetailView",
    "AssetsView",
    "CalendarView",
    "ClockView",
    "GameAnnouncementsView",
    "GameDetailView",
    "GameEndView",
    "GameJoinView",
    "GamePlayerView",
    "GameTradesCsvView",
    "GamesView",
    "OrderByClientIdView",
    "OrderDetailView",
    "OrdersView",
    "PortfolioHistoryView",
    "PositionDetailView",
    "PositionsView",
    "WatchlistAssetView",
    "WatchlistByNameView",
    "WatchlistDetailView",
    "WatchlistsView",
]
