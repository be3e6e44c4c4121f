"""Market Data v2 routes. No trailing slashes: alpaca-py never follows redirects.

The fixed paths come before the ``<symbol>`` ones so that e.g. ``bars/latest`` is never read as
a symbol called "bars".
"""

from django.urls import URLPattern, URLResolver, path

from trading.api import market_data as views

urlpatterns: list[URLPattern | URLResolver] = [
    path("v2/stocks/bars", views.StockBarsView.as_view(), name="stock-bars"),
    path("v2/stocks/trades", views.StockTradesView.as_view(), name="stock-trades"),
    path("v2/stocks/quotes", views.StockQuotesView.as_view(), name="stock-quotes"),
    path("v2/stocks/bars/latest", views.LatestBarsView.as_view(), name="stock-bars-latest"),
    path("v2/stocks/trades/latest", views.LatestTradesView.as_view(), name="stock-trades-latest"),
    path("v2/stocks/quotes/latest", views.LatestQuotesView.as_view(), name="stock-quotes-latest"),
    path("v2/stocks/snapshots", views.SnapshotsView.as_view(), name="stock-snapshots"),
    path("v2/stocks/<str:symbol>/bars", views.SymbolBarsView.as_view(), name="stock-symbol-bars"),
    path("v2/stocks/<str:symbol>/trades", views.SymbolTradesView.as_view(), name="stock-symbol-trades"),
    path("v2/stocks/<str:symbol>/quotes", views.SymbolQuotesView.as_view(), name="stock-symbol-quotes"),
    path(
        "v2/stocks/<str:symbol>/bars/latest",
        views.SymbolLatestBarView.as_view(),
        name="stock-symbol-bar-latest",
    ),
    path(
        "v2/stocks/<str:symbol>/trades/latest",
        views.SymbolLatestTradeView.as_view(),
        name="stock-symbol-trade-latest",
    ),
    path(
        "v2/stocks/<str:symbol>/quotes/latest",
        views.SymbolLatestQuoteView.as_view(),
        name="stock-symbol-quote-latest",
    ),
    path("v2/stocks/<str:symbol>/snapshot", views.SymbolSnapshotView.as_view(), name="stock-symbol-snapshot"),
]
