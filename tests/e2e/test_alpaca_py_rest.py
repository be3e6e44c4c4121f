"""The real alpaca-py SDK against real server processes: the compatibility test that matters."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.historical import (
    CryptoHistoricalDataClient,
    NewsClient,
    OptionHistoricalDataClient,
    ScreenerClient,
    StockHistoricalDataClient,
)
from alpaca.data.requests import (
    CryptoLatestQuoteRequest,
    MostActivesRequest,
    NewsRequest,
    OptionLatestQuoteRequest,
    StockBarsRequest,
    StockLatestQuoteRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    ActivityType,
    AssetClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionIntent,
    PositionSide,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import NonTradeActivity, TradeActivity
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)
from django.utils import timezone

from tests.builders import add_minute_bar_ramps, set_quote
from tests.processes import ServerProcess, gunicorn_server
from trading import services
from trading.models import Account, Asset

pytestmark = pytest.mark.live

BARS_PER_SYMBOL = 30
SERVER_PAGE_MAX = 7  # small, so the SDK has to follow next_page_token across several pages


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[ServerProcess]:
    with gunicorn_server(tmp_path, overrides={"HISTORY_PAGE_MAX": SERVER_PAGE_MAX}) as running:
        yield running


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> dict[str, Asset]:
    assets = {
        "AAPL": make_asset("AAPL", price="190.00", exchange="NASDAQ"),
        "MSFT": make_asset("MSFT", price="410.00", exchange="NASDAQ"),
    }
    start = timezone.now().replace(second=0, microsecond=0) - dt.timedelta(minutes=BARS_PER_SYMBOL + 5)
    add_minute_bar_ramps({"AAPL": 1_900_000, "MSFT": 4_100_000}, start=start, minutes=BARS_PER_SYMBOL)
    return assets


@pytest.fixture
def credentials(make_account: Callable[..., Account]) -> tuple[str, str]:
    account = make_account(cash=1_000_000)  # $10,000.00
    key, secret = services.api_key_create(account_id=account.pk, label="sdk test")
    return key.key_id, secret


def test_trading_client_end_to_end(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    key_id, secret = credentials
    client = TradingClient(key_id, secret, paper=True, url_override=server.base_url)

    account = client.get_account()
    assert str(account.cash) == "10000.00" or float(account.cash) == 10000.0
    assert account.status.value == "ACTIVE"

    clock = client.get_clock()
    assert clock.is_open is True
    assert clock.next_close > clock.timestamp

    assets = client.get_all_assets(GetAssetsRequest(asset_class=AssetClass.US_EQUITY))
    assert {asset.symbol for asset in assets} >= {"AAPL", "MSFT"}
    assert client.get_asset("AAPL").exchange.value == "NASDAQ"

    # A market buy fills at once at the ask (190.00 + 0.01); the answer is the order as accepted.
    bought = client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=10, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert bought.status == OrderStatus.NEW
    bought = client.get_order_by_id(bought.id)
    assert bought.status == OrderStatus.FILLED
    assert float(bought.filled_avg_price) == pytest.approx(190.01)

    position = client.get_open_position("AAPL")
    assert int(position.qty) == 10
    assert float(position.avg_entry_price) == pytest.approx(190.01)
    assert [p.symbol for p in client.get_all_positions()] == ["AAPL"]

    # A limit buy far below the market rests; it can be found by id and by client id, then canceled.
    client_id = f"sdk-{uuid.uuid4().hex[:12]}"
    resting = client.submit_order(
        LimitOrderRequest(
            symbol="MSFT",
            qty=2,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.GTC,
            limit_price=300.00,
            client_order_id=client_id,
        )
    )
    assert resting.status == OrderStatus.NEW
    assert resting.order_type == OrderType.LIMIT
    assert client.get_order_by_id(resting.id).client_order_id == client_id
    assert client.get_order_by_client_id(client_id).id == resting.id
    open_orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [order.id for order in open_orders] == [resting.id]
    assert float(client.get_account().buying_power) == pytest.approx(10000 - 1900.10 - 600.00)

    client.cancel_order_by_id(resting.id)
    assert client.get_order_by_id(resting.id).status == OrderStatus.CANCELED
    with pytest.raises(APIError) as not_cancelable:
        client.cancel_order_by_id(resting.id)
    assert not_cancelable.value.status_code == 422

    # Too expensive: Alpaca's 403 with its error code.
    with pytest.raises(APIError) as too_big:
        client.submit_order(
            MarketOrderRequest(symbol="MSFT", qty=1000, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
    assert too_big.value.status_code == 403
    assert too_big.value.code == 40310000

    # Close part, then the rest, of the position: sells at the bid (190.00 - 0.01).
    partial = client.close_position("AAPL", ClosePositionRequest(qty="4"))
    assert partial.side == OrderSide.SELL
    assert int(client.get_open_position("AAPL").qty) == 6
    client.close_position("AAPL")
    assert client.get_all_positions() == []
    assert float(client.get_account().cash) == pytest.approx(10000 - 1900.10 + 10 * 189.99)


def test_sdk_reads_activities_of_every_type(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    """Every activity type alpaca-py defines is a filter the server takes; those the simulator
    never records answer an empty list the SDK's models accept."""
    key_id, secret = credentials
    client = TradingClient(key_id, secret, paper=True, url_override=server.base_url)
    client.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    fills = client.get("/account/activities/FILL")
    assert isinstance(fills, list) and TradeActivity(**fills[0]).activity_type == ActivityType.FILL
    for kind in ActivityType:
        if not kind.value.isupper():
            continue
        found = client.get(f"/account/activities/{kind.value}")
        assert isinstance(found, list), kind
        if kind.value not in ("FILL", "CSD", "MISC", "TRANS"):
            assert found == [], kind
    for item in client.get("/account/activities", {"activity_types": "DIV,TRANS"}):
        assert NonTradeActivity(**item).activity_type == ActivityType.CSD


def test_sdk_places_notional_and_fractional_orders(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    """alpaca-py's notional and fractional orders, a fractional position closed in part, and the
    fills' fractional quantities in activities: what a dollar-sized bot does."""
    key_id, secret = credentials
    client = TradingClient(key_id, secret, paper=True, url_override=server.base_url)
    assert client.get_asset("AAPL").fractionable is True

    placed = client.submit_order(
        MarketOrderRequest(symbol="AAPL", notional=100, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    assert placed.notional == "100.00" and placed.qty is None
    notional = client.get_order_by_id(placed.id)  # the POST answers the order as accepted
    assert notional.status == OrderStatus.FILLED
    assert notional.notional == "100.00" and notional.qty is None
    spent = Decimal(str(notional.filled_qty)) * Decimal(str(notional.filled_avg_price))
    assert Decimal("99.99") < spent <= Decimal("100")

    placed = client.submit_order(
        LimitOrderRequest(
            symbol="AAPL", qty=1.25, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=500
        )
    )
    assert placed.qty == "1.25"
    fractional = client.get_order_by_id(placed.id)
    assert fractional.status == OrderStatus.FILLED and fractional.filled_qty == "1.25"
    held = Decimal(client.get_open_position("AAPL").qty)
    assert held == Decimal("1.25") + Decimal(str(notional.filled_qty))

    with pytest.raises(APIError) as refused:
        client.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=0.5, side=OrderSide.BUY, time_in_force=TimeInForce.GTC)
        )
    assert refused.value.status_code == 422 and "day orders" in str(refused.value.message)

    part = client.close_position("AAPL", ClosePositionRequest(qty="0.75"))
    assert part.qty == "0.75" and client.get_order_by_id(part.id).filled_qty == "0.75"
    rest = client.close_position("AAPL", ClosePositionRequest(percentage="100"))
    assert Decimal(str(client.get_order_by_id(rest.id).filled_qty)) == held - Decimal("0.75")
    quantities = {TradeActivity(**item).qty for item in client.get("/account/activities/FILL")}
    assert "1.25" in {str(qty) for qty in quantities} and "0.75" in {str(qty) for qty in quantities}
    assert client.get_all_positions() == []


def test_sdk_sells_short_and_buys_to_cover(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    """A long/short bot: shorting refused until the account allows it, then a short sale with
    alpaca-py's position_intent, the short position as the SDK parses it, and a buy to cover."""
    key_id, secret = credentials
    client = TradingClient(key_id, secret, paper=True, url_override=server.base_url)
    asset = client.get_asset("AAPL")
    assert asset.shortable is True and asset.easy_to_borrow is True
    short = MarketOrderRequest(
        symbol="AAPL",
        qty=5,
        side=OrderSide.SELL,
        time_in_force=TimeInForce.DAY,
        position_intent=PositionIntent.SELL_TO_OPEN,
    )
    with pytest.raises(APIError) as refused:
        client.submit_order(short)
    assert refused.value.status_code == 403 and "insufficient qty" in str(refused.value.message)

    configuration = client.get_account_configurations()
    configuration.no_shorting = False
    client.set_account_configurations(configuration)
    placed = client.submit_order(short)
    assert placed.position_intent == PositionIntent.SELL_TO_OPEN
    assert client.get_order_by_id(placed.id).status == OrderStatus.FILLED
    position = client.get_open_position("AAPL")
    assert (position.side, position.qty, position.qty_available) == (PositionSide.SHORT, "-5", "-5")
    assert float(position.market_value) == pytest.approx(-950.0)  # 5 x $190.00, negative
    account = client.get_account()
    # $10,000 + the proceeds (5 x $189.99), less 150 % of them held from buying power.
    assert Decimal(str(account.cash)) == Decimal("10949.95")
    assert Decimal(str(account.short_market_value)) == Decimal("-950.00")
    assert Decimal(str(account.buying_power)) == Decimal("9525.02")

    with pytest.raises(APIError) as flipping:
        client.submit_order(
            MarketOrderRequest(symbol="AAPL", qty=6, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
        )
    assert flipping.value.status_code == 403 and "available: 5" in str(flipping.value.message)
    cover = client.submit_order(
        MarketOrderRequest(
            symbol="AAPL",
            qty=5,
            side=OrderSide.BUY,
            time_in_force=TimeInForce.DAY,
            position_intent=PositionIntent.BUY_TO_CLOSE,
        )
    )
    assert client.get_order_by_id(cover.id).status == OrderStatus.FILLED
    assert client.get_all_positions() == []
    assert Decimal(str(client.get_account().buying_power)) == Decimal("9999.90")


def test_sdk_answers_carry_rate_limit_headers(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    """Alpaca's X-RateLimit-* headers on what the SDK receives, the remaining budget falling."""
    key_id, secret = credentials
    client = TradingClient(key_id, secret, paper=True, url_override=server.base_url)
    seen: list[requests.structures.CaseInsensitiveDict[str]] = []
    client._session.hooks["response"].append(lambda response, *_, **__: seen.append(response.headers))
    client.get_account()
    client.get_orders()
    client.get_clock()
    assert len(seen) == 3
    limits = {headers["X-RateLimit-Limit"] for headers in seen}
    assert len(limits) == 1 and int(limits.pop()) > 3
    remaining = [int(headers["X-RateLimit-Remaining"]) for headers in seen]
    assert remaining == sorted(remaining, reverse=True) and remaining[0] - remaining[2] == 2
    assert all(int(headers["X-RateLimit-Reset"]) > 0 for headers in seen)


def test_bad_credentials_are_refused(server: ServerProcess, market: dict[str, Asset]) -> None:
    client = TradingClient("PKNOTAREALKEY0000000", "wrong", paper=True, url_override=server.base_url)
    with pytest.raises(APIError) as refused:
        client.get_account()
    assert refused.value.status_code == 401


def test_historical_client_pages_through_bars(
    server: ServerProcess, market: dict[str, Asset], credentials: tuple[str, str]
) -> None:
    key_id, secret = credentials
    client = StockHistoricalDataClient(key_id, secret, url_override=server.base_url)
    start = timezone.now() - dt.timedelta(hours=2)

    bars = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols=["AAPL", "MSFT"], timeframe=TimeFrame.Minute, start=start)
    )
    # 60 bars over pages of at most 7: the SDK followed next_page_token to the end.
    assert {symbol: len(series) for symbol, series in bars.data.items()} == {"AAPL": 30, "MSFT": 30}
    aapl = bars.data["AAPL"]
    assert [bar.timestamp for bar in aapl] == sorted(bar.timestamp for bar in aapl)
    assert aapl[0].open == pytest.approx(190.0)
    assert aapl[-1].close == pytest.approx(190.0 + 29 * 0.01 + 0.02)

    limited = client.get_stock_bars(
        StockBarsRequest(symbol_or_symbols="MSFT", timeframe=TimeFrame.Minute, start=start, limit=10)
    )
    assert len(limited.data["MSFT"]) == 10

    set_quote("MSFT", price="411.00")
    quote = client.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="MSFT"))["MSFT"]
    assert quote.ask_price == pytest.approx(411.01)
    assert quote.bid_price == pytest.approx(410.99)


def test_data_apis_the_simulator_lacks_answer_an_error_the_sdk_can_read(
    server: ServerProcess, credentials: tuple[str, str]
) -> None:
    """News, crypto, options and the screener live under /v1beta* at Alpaca; here they do not
    exist, and the SDK's APIError must still carry Alpaca's code (it parses the body as JSON)."""
    key, secret = credentials
    options = {"api_key": key, "secret_key": secret, "url_override": server.base_url}
    calls: list[Callable[[], object]] = [
        lambda: NewsClient(**options).get_news(NewsRequest(symbols="AAPL")),
        lambda: ScreenerClient(**options).get_most_actives(MostActivesRequest(top=5)),
        lambda: CryptoHistoricalDataClient(**options).get_crypto_latest_quote(
            CryptoLatestQuoteRequest(symbol_or_symbols="BTC/USD")
        ),
        lambda: OptionHistoricalDataClient(**options).get_option_latest_quote(
            OptionLatestQuoteRequest(symbol_or_symbols="AAPL240621C00190000")
        ),
    ]
    for call in calls:
        with pytest.raises(APIError) as refused:
            call()
        assert refused.value.status_code == 404
        assert refused.value.code == 40410000
        assert refused.value.message == "endpoint not found"
