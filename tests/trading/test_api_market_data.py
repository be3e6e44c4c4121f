"""Market Data v2 endpoints, checked through alpaca-py's own models and its real data client."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import StockHistoricalDataClient
from alpaca.data.historical.utils import parse_obj_as_symbol_dict
from alpaca.data.models import Bar, BarSet, Quote, QuoteSet, Snapshot, Trade, TradeSet
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockQuotesRequest,
    StockSnapshotRequest,
    StockTradesRequest,
)
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from rest_framework.test import APIClient

from tests.builders import add_minute_bar_ramps
from tests.clock import ManualClock
from trading import calendar, services
from trading.models import Account, Asset, DailyBar, StockPriceHistory

BASE = dt.datetime(2024, 3, 4, 14, 30, tzinfo=dt.UTC)
TICKS = 20
MINUTES = 30
PRICES = {"AAPL": 1_900_000, "MSFT": 4_100_000}


@pytest.fixture
def market(db: None) -> None:
    Asset.objects.bulk_create(Asset(symbol=symbol, name=symbol, sector="Technology") for symbol in PRICES)
    StockPriceHistory.objects.bulk_create(
        StockPriceHistory(
            symbol=symbol,
            seq=seq,
            price_units=base + seq * 100,
            size=seq,
            bid_units=base + seq * 100 - 50,
            bid_size=300,
            ask_units=base + seq * 100 + 50,
            ask_size=400,
            recorded_at=BASE + dt.timedelta(seconds=seq, microseconds=250_000),
        )
        for symbol, base in PRICES.items()
        for seq in range(1, TICKS + 1)
    )
    add_minute_bar_ramps(PRICES, start=BASE, minutes=MINUTES)
    DailyBar.objects.bulk_create(
        DailyBar(
            symbol=symbol,
            start=calendar.day_start(dt.date(2024, 3, 1) + dt.timedelta(days=i)),
            open_units=base,
            high_units=base + 10_000,
            low_units=base - 10_000,
            close_units=base + i,
            volume=100_000,
            trade_count=1000,
            vwap_units=base,
        )
        for symbol, base in PRICES.items()
        for i in range(4)
    )


@pytest.fixture
def credentials(make_account: Callable[..., Account]) -> tuple[str, str]:
    key, secret = services.api_key_create(account_id=make_account().pk, label="market data")
    return key.key_id, secret


@pytest.fixture
def api(credentials: tuple[str, str]) -> APIClient:
    key_id, secret = credentials
    return APIClient(HTTP_APCA_API_KEY_ID=key_id, HTTP_APCA_API_SECRET_KEY=secret)


def get(api: APIClient, path: str, params: Mapping[str, Any] | None = None, status: int = 200) -> Any:
    response = api.get(path, params or {})
    assert response.status_code == status, response.content
    return response.json()


# --- The real SDK ---------------------------------------------------------------------------------


class DjangoAdapter(BaseAdapter):
    """Hands alpaca-py's HTTP requests to Django's test client: the SDK's whole path runs
    (parameters, headers, paging loop, parsing) without a server process."""

    def __init__(self) -> None:
        super().__init__()
        self.client = Client()
        self.requests: list[str] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        url = urlsplit(request.url or "")
        self.requests.append(f"{url.path}?{url.query}")
        headers = {key: value for key, value in request.headers.items() if key.lower() != "content-length"}
        answer = self.client.generic(
            str(request.method), f"{url.path}?{url.query}", data=request.body or b"", headers=headers
        )
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.content
        response.headers = CaseInsensitiveDict(dict(answer.items()))
        response.url = request.url or ""
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass


@pytest.fixture
def sdk(credentials: tuple[str, str]) -> tuple[StockHistoricalDataClient, DjangoAdapter]:
    client = StockHistoricalDataClient(*credentials, url_override="http://testserver")
    adapter = DjangoAdapter()
    client._session.mount("http://testserver", adapter)
    return client, adapter


@override_settings(HISTORY_PAGE_MAX=7)  # small pages, so the SDK must follow next_page_token
def test_alpaca_py_client_pages_through_history(
    market: None, sdk: tuple[StockHistoricalDataClient, DjangoAdapter]
) -> None:
    client, adapter = sdk
    start = BASE - dt.timedelta(minutes=1)

    bars = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=["MSFT", "AAPL"], timeframe=TimeFrame.Minute, start=start)
    )
    assert {symbol: len(series) for symbol, series in bars.data.items()} == {"AAPL": MINUTES, "MSFT": MINUTES}
    assert sum("/v2/stocks/bars?" in line for line in adapter.requests) == -(-2 * MINUTES // 7)
    first = bars.data["AAPL"][0]
    assert first.timestamp == BASE and first.open == 190.0 and first.close == 190.02
    assert first.volume == 1000 and first.trade_count == 10 and first.vwap == 190.005
    assert list(bars.df.index.names) == ["symbol", "timestamp"]

    five = client.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL", timeframe=TimeFrame(5, TimeFrameUnit.Minute), start=start, limit=4
        )
    )
    assert [bar.timestamp for bar in five.data["AAPL"]] == [
        BASE + dt.timedelta(minutes=5 * i) for i in range(4)
    ]
    assert five.data["AAPL"][0].volume == sum(1000 + i for i in range(5))
    assert five.data["AAPL"][0].high == pytest.approx(190.09)

    trades = client.get_stock_trades(
        StockTradesRequest(
            symbol_or_symbols=["AAPL", "MSFT"], start=start, end=BASE + dt.timedelta(minutes=1)
        )
    )
    assert [trade.id for trade in trades.data["MSFT"]] == list(range(1, TICKS + 1))
    assert trades.data["AAPL"][0].price == pytest.approx(190.01)
    assert trades.data["AAPL"][0].timestamp == BASE + dt.timedelta(seconds=1, microseconds=250_000)

    quotes = client.get_stock_quotes(
        StockQuotesRequest(symbol_or_symbols="MSFT", start=start, limit=10, sort="desc")
    )
    assert len(quotes.data["MSFT"]) == 10
    assert quotes.data["MSFT"][0].ask_price == pytest.approx(410.205)
    assert quotes.data["MSFT"][0].bid_size == 300

    trade = client.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=["AAPL", "NOPE"]))
    assert set(trade) == {"AAPL"} and trade["AAPL"].id == TICKS
    quote = client.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="MSFT"))["MSFT"]
    assert quote.bid_price == pytest.approx(410.195) and quote.ask_price == pytest.approx(410.205)
    bar = client.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert bar.timestamp == BASE + dt.timedelta(minutes=MINUTES - 1)

    snapshots = client.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols=["AAPL", "MSFT", "NOPE"]))
    assert set(snapshots) == {"AAPL", "MSFT"}
    snapshot = snapshots["MSFT"]
    assert snapshot.latest_trade is not None and snapshot.latest_trade.id == TICKS
    assert snapshot.latest_quote is not None and snapshot.minute_bar is not None
    assert snapshot.daily_bar is not None and snapshot.daily_bar.close == pytest.approx(410.0003)
    assert snapshot.previous_daily_bar is not None and snapshot.previous_daily_bar.close == pytest.approx(
        410.0002
    )


def test_alpaca_py_client_sees_alpaca_errors(
    market: None, sdk: tuple[StockHistoricalDataClient, DjangoAdapter]
) -> None:
    client, _ = sdk
    with pytest.raises(APIError) as raised:
        client.get_stock_bars(
            StockBarsRequest(
                symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=BASE, end=BASE - dt.timedelta(days=1)
            )
        )
    assert raised.value.status_code == 422
    assert json.loads(str(raised.value))["code"] == 42210000


# --- Shapes, through alpaca-py's models ------------------------------------------------------------


def test_history_shapes_parse_with_alpaca_models(market: None, api: APIClient) -> None:
    raw = get(api, "/v2/stocks/bars", {"symbols": "AAPL,MSFT", "timeframe": "1Min", "limit": 3})
    assert set(raw) == {"bars", "next_page_token"} and isinstance(raw["next_page_token"], str)
    assert list(raw["bars"]) == ["AAPL"]
    assert set(raw["bars"]["AAPL"][0]) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
    assert raw["bars"]["AAPL"][0]["t"] == "2024-03-04T14:30:00Z"
    assert BarSet(raw["bars"]).data["AAPL"][2].close == pytest.approx(190.04)

    raw = get(api, "/v2/stocks/trades", {"symbols": "MSFT", "limit": 2})
    trade = raw["trades"]["MSFT"][0]
    assert trade == {
        "t": "2024-03-04T14:30:01.25Z",
        "x": "V",
        "p": 410.01,
        "s": 1,
        "c": ["@"],
        "i": 1,
        "z": "C",
    }
    assert TradeSet(raw["trades"]).data["MSFT"][1].size == 2

    raw = get(api, "/v2/stocks/quotes", {"symbols": "MSFT", "limit": 1})
    quote = raw["quotes"]["MSFT"][0]
    assert set(quote) == {"t", "ax", "ap", "as", "bx", "bp", "bs", "c", "z"}
    parsed = QuoteSet(raw["quotes"]).data["MSFT"][0]
    assert (parsed.bid_price, parsed.ask_price, parsed.ask_size) == (410.005, 410.015, 400)


def test_latest_and_snapshot_shapes_parse_with_alpaca_models(market: None, api: APIClient) -> None:
    trades = get(api, "/v2/stocks/trades/latest", {"symbols": "AAPL,MSFT,NOPE"})
    assert set(trades) == {"trades"} and set(trades["trades"]) == {"AAPL", "MSFT"}
    assert parse_obj_as_symbol_dict(Trade, trades["trades"])["AAPL"].id == TICKS
    quotes = get(api, "/v2/stocks/quotes/latest", {"symbols": "AAPL"})
    assert parse_obj_as_symbol_dict(Quote, quotes["quotes"])["AAPL"].bid_size == 300
    bars = get(api, "/v2/stocks/bars/latest", {"symbols": "MSFT"})
    assert parse_obj_as_symbol_dict(Bar, bars["bars"])["MSFT"].volume == 1000 + MINUTES - 1

    snapshots = get(api, "/v2/stocks/snapshots", {"symbols": "AAPL,NOPE"})
    assert set(snapshots) == {"AAPL"}
    assert set(snapshots["AAPL"]) == {"latestTrade", "latestQuote", "minuteBar", "dailyBar", "prevDailyBar"}
    parsed = parse_obj_as_symbol_dict(Snapshot, snapshots)["AAPL"]
    assert parsed.daily_bar is not None and parsed.daily_bar.timestamp == calendar.day_start(
        dt.date(2024, 3, 4)
    )


def test_single_symbol_forms(market: None, api: APIClient) -> None:
    bars = get(api, "/v2/stocks/AAPL/bars", {"timeframe": "1Hour"})
    assert set(bars) == {"bars", "symbol", "next_page_token"} and bars["symbol"] == "AAPL"
    assert bars["next_page_token"] is None and len(bars["bars"]) == 1
    assert Bar("AAPL", bars["bars"][0]).trade_count == sum(10 + i for i in range(MINUTES))

    trades = get(api, "/v2/stocks/msft/trades", {"limit": 5, "sort": "desc"})
    assert trades["symbol"] == "MSFT" and [t["i"] for t in trades["trades"]] == [20, 19, 18, 17, 16]
    following = get(
        api, "/v2/stocks/MSFT/trades", {"limit": 5, "sort": "desc", "page_token": trades["next_page_token"]}
    )
    assert [t["i"] for t in following["trades"]] == [15, 14, 13, 12, 11]
    assert get(api, "/v2/stocks/NOPE/quotes") == {"quotes": [], "symbol": "NOPE", "next_page_token": None}

    latest = get(api, "/v2/stocks/AAPL/trades/latest")
    assert latest["symbol"] == "AAPL" and Trade("AAPL", latest["trade"]).id == TICKS
    assert Quote("AAPL", get(api, "/v2/stocks/AAPL/quotes/latest")["quote"]).ask_size == 400
    assert Bar("AAPL", get(api, "/v2/stocks/AAPL/bars/latest")["bar"]).volume == 1000 + MINUTES - 1
    snapshot = get(api, "/v2/stocks/AAPL/snapshot")
    assert snapshot["symbol"] == "AAPL"
    assert Snapshot("AAPL", snapshot).latest_trade is not None
    assert get(api, "/v2/stocks/NOPE/trades/latest", status=404)["code"] == 40410000
    assert get(api, "/v2/stocks/NOPE/snapshot", status=404)["code"] == 40410000


def test_last_page_token_is_json_null(market: None, api: APIClient) -> None:
    response = api.get("/v2/stocks/trades", {"symbols": "AAPL", "limit": str(TICKS)})
    assert response.status_code == 200
    assert b'"next_page_token":null' in response.content.replace(b" ", b"")


def test_time_parameters_in_every_accepted_form(market: None, api: APIClient) -> None:
    def count(start: str, end: str | None = None) -> int:
        params = {"symbols": "AAPL", "start": start, **({"end": end} if end else {})}
        return len(get(api, "/v2/stocks/trades", params)["trades"].get("AAPL", []))

    assert count("2024-03-04T14:30:05.25Z") == TICKS - 4
    assert count("2024-03-04T14:30:05.250000001Z") == TICKS - 5  # nanoseconds are accepted
    assert count("2024-03-04T09:30:05.25-05:00") == TICKS - 4
    assert count("2024-03-04T14:30:05.25+00:00") == TICKS - 4
    assert count("2024-03-04T14:30:05.25 00:00") == TICKS - 4  # an unencoded "+" arrives as a space
    assert count("2024-03-04T14:30:05.25") == TICKS - 4  # no offset: UTC
    assert count("2024-03-04", "2024-03-04") == TICKS
    assert count("2024-03-05") == 0
    assert count("2024-03-04T14:30:00Z", "2024-03-04T14:30:03.25Z") == 3


def test_ignored_parameters_are_accepted(market: None, api: APIClient) -> None:
    params = {
        "symbols": "AAPL",
        "timeframe": "1Day",
        "feed": "iex",
        "adjustment": "raw",
        "asof": "2024-03-01",
    }
    bars = get(api, "/v2/stocks/bars", {**params, "currency": "USD"})
    assert len(bars["bars"]["AAPL"]) == 4


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "60Min"}),
        ("/v2/stocks/bars", {"symbols": "AAPL"}),
        ("/v2/stocks/bars", {"symbols": "AAPL", "timeframe": "1Min", "limit": "0"}),
        ("/v2/stocks/trades", {"symbols": "AAPL", "limit": "10001"}),
        ("/v2/stocks/trades", {"symbols": "AAPL", "limit": "ten"}),
        ("/v2/stocks/trades", {"symbols": "AAPL", "sort": "newest"}),
        ("/v2/stocks/quotes", {"symbols": "AAPL", "start": "yesterday"}),
        ("/v2/stocks/quotes", {"symbols": "AAPL", "start": "2024-13-01"}),
        ("/v2/stocks/quotes", {"symbols": "AAPL", "start": "2024-03-05", "end": "2024-03-04"}),
        ("/v2/stocks/trades", {"symbols": "AAPL", "page_token": "not-a-token"}),
        ("/v2/stocks/trades", {}),
        ("/v2/stocks/snapshots", {"symbols": " , "}),
        ("/v2/stocks/trades/latest", {}),
        ("/v2/stocks/AAPL/bars", {"timeframe": "1Sec"}),
        # A NUL, which PostgreSQL refuses in any text it compares (the schema fuzzer's 500).
        ("/v2/stocks/trades/latest", {"symbols": "AAPL,\x00"}),
        ("/v2/stocks/snapshots", {"symbols": "A\x00PL"}),
        ("/v2/stocks/trades", {"symbols": "\x00"}),
        ("/v2/stocks/%00AAPL/trades/latest", {}),
        ("/v2/stocks/AA%01PL/snapshot", {}),
    ],
)
def test_invalid_parameters_answer_422_in_alpaca_shape(
    market: None, api: APIClient, path: str, params: dict[str, str]
) -> None:
    body = get(api, path, params, status=422)
    assert body["code"] == 42210000 and body["message"]


def test_tampered_page_token_is_422(market: None, api: APIClient) -> None:
    token = get(api, "/v2/stocks/trades", {"symbols": "AAPL", "limit": 2})["next_page_token"]
    tampered = token.replace(token[3], "A" if token[3] != "A" else "B", 1)
    body = get(api, "/v2/stocks/trades", {"symbols": "AAPL", "page_token": tampered}, status=422)
    assert body == {"code": 42210000, "message": "invalid page_token"}


@pytest.mark.parametrize(
    "path", ["/v2/stocks/bars?symbols=AAPL&timeframe=1Min", "/v2/stocks/snapshots?symbols=AAPL"]
)
def test_authentication_is_required(market: None, path: str) -> None:
    response = APIClient().get(path)
    assert response.status_code == 401
    assert response.json()["code"] == 40110000


def test_no_trailing_slash_routes(market: None, api: APIClient) -> None:
    assert api.get("/v2/stocks/bars/").status_code == 404


def test_snapshots_and_latest_take_the_same_queries_for_one_or_many_symbols(
    l1_clock: ManualClock, market: None, api: APIClient
) -> None:
    def queries(path: str, symbols: str) -> int:
        api.get(path, {"symbols": symbols})  # warms the API-key cache
        with CaptureQueriesContext(connection) as captured:
            assert api.get(path, {"symbols": symbols}).status_code == 200
        return len(captured)

    for path in ("/v2/stocks/snapshots", "/v2/stocks/trades/latest", "/v2/stocks/bars/latest"):
        assert queries(path, "AAPL") == queries(path, "AAPL,MSFT,NOPE,XYZ")
