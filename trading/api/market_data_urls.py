"""Market Data v2 routes, relative to /v2/stocks/ (config/urls.py). No trailing slashes: alpaca-py never follows redirects.

The fixed paths come before the ``<symbol>`` ones so that e.g. ``bars/latest`` is never read as
a symbol called "bars".
"""

from django.urls import URLPattern, URLResolver, path

from trading.api import market_data as views

urlpatterns: list[URLPattern | URLResolver] = [
    path("bars", views.StockBarsView.as_view(), name="stock-bars"),
    path("trades", views.StockTradesView.as_view(), name="stock-trades"),
    path("quotes", views.StockQuotesView.as_view(), name="stock-quotes"),
    path("bars/latest", views.LatestBarsView.as_view(), name="stock-bars-latest"),
    path("trades/latest", views.LatestTradesView.as_view(), name="stock-trades-latest"),
    path("quotes/latest", views.LatestQuotesView.as_view(), name="stock-quotes-latest"),
    path("snapshots", views.SnapshotsView.as_view(), name="stock-snapshots"),
    path("<str:symbol>/bars", views.SymbolBarsView.as_view(), name="stock-symbol-bars"),
    path("<str:symbol>/trades", views.SymbolTradesView.as_view(), name="stock-symbol-trades"),
    path("<str:symbol>/quotes", views.SymbolQuotesView.as_view(), name="stock-symbol-quotes"),
    path(
        "<str:symbol>/bars/latest",
        views.SymbolLatestBarView.as_view(),
        name="stock-symbol-bar-latest",
    ),
    path(
        "<str:symbol>/trades/latest",
        views.SymbolLatestTradeView.as_view(),
        name="stock-symbol-trade-latest",
    ),
    path(
        "<str:symbol>/quotes/latest",
        views.SymbolLatestQuoteView.as_view(),
        name="stock-symbol-quote-latest",
    ),
    path("<str:symbol>/snapshot", views.SymbolSnapshotView.as_view(), name="stock-symbol-snapshot"),
]
