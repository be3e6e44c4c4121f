"""Alpaca Market Data v2 for stocks: history (bars, trades, quotes), latest values, snapshots.

Shapes are the ones alpaca-py parses (alpaca/data/models, alpaca/data/historical/stock.py): the
multi-symbol forms key their data by symbol and page with ``next_page_token``, which is null (not
"") on the last page because the SDK pages until it sees null. Symbols without data have no
entry. Prices are JSON numbers, times RFC 3339 in UTC with a ``Z``. ``feed``, ``adjustment``,
``asof`` and ``currency`` are accepted and ignored: there is one simulated feed in dollars.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from trading import history
from trading.api import times
from trading.api.views_base import RateLimitedAPIView
from trading.errors import InvalidRequest, NotFound
from trading.history import Bar, PaginatedResult, Snapshot, Tick
from trading.units import PRICE_SCALE

# The simulator is one venue; IEX's code matches the /v2/iex stream it also serves.
EXCHANGE = "V"
TAPE = "C"
TRADE_CONDITIONS = ["@"]  # regular sale
QUOTE_CONDITIONS = ["R"]  # regular two-sided quote


# --- Wire shapes ----------------------------------------------------------------------------


def rfc3339(moment: dt.datetime) -> str:
    utc = moment.astimezone(dt.UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def _price(units: int) -> float:
    return units / PRICE_SCALE


def bar_json(bar: Bar) -> dict[str, Any]:
    return {
        "t": rfc3339(bar.start),
        "o": _price(bar.open_units),
        "h": _price(bar.high_units),
        "l": _price(bar.low_units),
        "c": _price(bar.close_units),
        "v": bar.volume,
        "n": bar.trade_count,
        "vw": _price(bar.vwap_units),
    }


def trade_json(tick: Tick) -> dict[str, Any]:
    return {
        "t": rfc3339(tick.recorded_at),
        "x": EXCHANGE,
        "p": _price(tick.price_units),
        "s": tick.size,
        "c": TRADE_CONDITIONS,
        "i": tick.seq,
        "z": TAPE,
    }


def quote_json(tick: Tick) -> dict[str, Any]:
    return {
        "t": rfc3339(tick.recorded_at),
        "ax": EXCHANGE,
        "ap": _price(tick.ask_units),
        "as": tick.ask_size,
        "bx": EXCHANGE,
        "bp": _price(tick.bid_units),
        "bs": tick.bid_size,
        "c": QUOTE_CONDITIONS,
        "z": TAPE,
    }


def snapshot_json(snapshot: Snapshot) -> dict[str, Any]:
    tick = snapshot.latest_tick
    return {
        "latestTrade": trade_json(tick) if tick else None,
        "latestQuote": quote_json(tick) if tick else None,
        "minuteBar": bar_json(snapshot.minute_bar) if snapshot.minute_bar else None,
        "dailyBar": bar_json(snapshot.daily_bar) if snapshot.daily_bar else None,
        "prevDailyBar": bar_json(snapshot.prev_daily_bar) if snapshot.prev_daily_bar else None,
    }


# --- Query parameters -----------------------------------------------------------------------


def parse_time(value: str | None, *, name: str, end: bool = False) -> dt.datetime | None:
    """RFC 3339 or YYYY-MM-DD (trading/api/times.py); a date means the start of that UTC day for
    ``start`` and the whole day for ``end``."""
    if value is None or value.strip() == "":
        return None
    return times.parse_instant(
        value, name=name, date_as=times.utc_day_end if end else times.utc_day_start, upper=end
    )


def _printable(symbols: list[str]) -> list[str]:
    """``symbols``, refused (422) if one holds a control character: no symbol has one, and
    PostgreSQL refuses a NUL in any text it is asked to compare (a 500, not an empty answer)."""
    for symbol in symbols:
        if not symbol.isprintable():
            raise InvalidRequest(f"invalid symbol: {symbol!r}")
    return symbols


def symbols_param(request: Request) -> list[str]:
    symbols = history.normalize_symbols(request.query_params.get("symbols", "").split(","))
    if not symbols:
        raise InvalidRequest("symbols is required")
    return _printable(symbols)


def _single_symbol(symbol: str) -> str:
    symbols = history.normalize_symbols([symbol])
    if len(symbols) != 1 or "," in symbol:
        raise InvalidRequest(f"invalid symbol: {symbol!r}")
    return _printable(symbols)[0]


def _history_args(request: Request) -> dict[str, Any]:
    params = request.query_params
    return {
        "start": parse_time(params.get("start"), name="start"),
        "end": parse_time(params.get("end"), name="end", end=True),
        "limit": params.get("limit"),
        "page_token": params.get("page_token") or None,
        "sort": params.get("sort") or "asc",
    }


# --- Schema ---------------------------------------------------------------------------------


def _item_schema(name: str, fields: dict[str, serializers.Field]) -> type[serializers.Serializer]:
    # Built with type() because a quote has a key called "as"; built once so that every endpoint
    # shares one component per shape.
    return type(name, (serializers.Serializer,), fields)


BarSchema = _item_schema(
    "MarketDataBar",
    {
        "t": serializers.DateTimeField(),
        "o": serializers.FloatField(),
        "h": serializers.FloatField(),
        "l": serializers.FloatField(),
        "c": serializers.FloatField(),
        "v": serializers.IntegerField(),
        "n": serializers.IntegerField(allow_null=True),
        "vw": serializers.FloatField(allow_null=True),
    },
)
TradeSchema = _item_schema(
    "MarketDataTrade",
    {
        "t": serializers.DateTimeField(),
        "x": serializers.CharField(),
        "p": serializers.FloatField(),
        "s": serializers.IntegerField(),
        "c": serializers.ListField(child=serializers.CharField()),
        "i": serializers.IntegerField(),
        "z": serializers.CharField(),
    },
)
QuoteSchema = _item_schema(
    "MarketDataQuote",
    {
        "t": serializers.DateTimeField(),
        "ax": serializers.CharField(),
        "ap": serializers.FloatField(),
        "as": serializers.IntegerField(),
        "bx": serializers.CharField(),
        "bp": serializers.FloatField(),
        "bs": serializers.IntegerField(),
        "c": serializers.ListField(child=serializers.CharField()),
        "z": serializers.CharField(),
    },
)


def _snapshot_fields() -> dict[str, serializers.Field]:
    return {
        "latestTrade": TradeSchema(allow_null=True),
        "latestQuote": QuoteSchema(allow_null=True),
        "minuteBar": BarSchema(allow_null=True),
        "dailyBar": BarSchema(allow_null=True),
        "prevDailyBar": BarSchema(allow_null=True),
    }


SnapshotSchema = _item_schema("MarketDataSnapshot", _snapshot_fields())
SymbolSnapshotSchema = _item_schema(
    "SymbolSnapshot", {"symbol": serializers.CharField(), **_snapshot_fields()}
)


def _raw_schema(serializer: type[serializers.Serializer]) -> dict[str, Any]:
    """An inline OpenAPI schema for the few field types these shapes use."""
    properties: dict[str, Any] = {}
    for name, field in serializer().fields.items():
        if isinstance(field, serializers.Serializer):
            schema = _raw_schema(type(field))
        elif isinstance(field, serializers.DateTimeField):
            schema = {"type": "string", "format": "date-time"}
        elif isinstance(field, serializers.ListField):
            schema = {"type": "array", "items": {"type": "string"}}
        else:
            kinds: dict[type, str] = {serializers.FloatField: "number", serializers.IntegerField: "integer"}
            schema = {"type": kinds.get(type(field), "string")}
        if field.allow_null:
            schema["nullable"] = True
        properties[name] = schema
    return {"type": "object", "properties": properties}


# Symbols are upper-cased and unknown ones left out of the answer, so any list of names is valid.
_SYMBOL_PATTERN = r"[A-Za-z0-9.]{1,16}"
SYMBOLS = OpenApiParameter(
    "symbols",
    OpenApiTypes.STR,
    required=True,
    pattern=rf"^{_SYMBOL_PATTERN}(,{_SYMBOL_PATTERN})*$",
    description="Comma-separated symbols, e.g. AAPL,MSFT.",
)
SYMBOL = OpenApiParameter(
    "symbol",
    OpenApiTypes.STR,
    OpenApiParameter.PATH,
    pattern=rf"^{_SYMBOL_PATTERN}$",
    description="e.g. AAPL",
)
TIMEFRAME = OpenApiParameter(
    "timeframe",
    OpenApiTypes.STR,
    required=True,
    pattern=(
        r"^(([1-9]|[1-5][0-9])(Min|T)|([1-9]|1[0-9]|2[0-3])(Hour|H)|1(Day|D|Week|W)|(1|2|3|4|6|12)(Month|M))$"
    ),
    description="1-59Min (or T), 1-23Hour (or H), 1Day (or D), 1Week (or W), 1/2/3/4/6/12Month (or M).",
)
FEED = OpenApiParameter("feed", OpenApiTypes.STR, description="Accepted and ignored.")
_TIME_TEXT = f"RFC 3339 time or YYYY-MM-DD, {times.RANGE_TEXT} (inclusive)."
HISTORY_PARAMETERS = [
    OpenApiParameter("start", OpenApiTypes.STR, description=_TIME_TEXT),
    OpenApiParameter("end", OpenApiTypes.STR, description=_TIME_TEXT),
    OpenApiParameter(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": history.ALPACA_LIMIT_MAX},
        description=f"Rows per page across all symbols, 1-{history.ALPACA_LIMIT_MAX}; "
        "a page holds at most HISTORY_PAGE_MAX rows, the rest follow by next_page_token.",
    ),
    OpenApiParameter(
        "page_token",
        OpenApiTypes.STR,
        pattern=r"^[A-Za-z0-9_:-]+$",
        description="The next_page_token of the previous page, as given (opaque, signed); "
        "a token from another query is refused with 422.",
    ),
    OpenApiParameter("sort", OpenApiTypes.STR, enum=["asc", "desc"], description="Time order per symbol."),
    *(
        OpenApiParameter(name, OpenApiTypes.STR, description="Accepted and ignored.")
        for name in ("feed", "adjustment", "asof", "currency")
    ),
]


def _history_schema(key: str, item: type[serializers.Serializer], *, single: bool) -> Any:
    fields: dict[str, serializers.Field] = {
        "next_page_token": serializers.CharField(allow_null=True),
    }
    if single:
        fields[key] = serializers.ListField(child=item())
        fields["symbol"] = serializers.CharField()
    else:
        fields[key] = serializers.DictField(child=serializers.ListField(child=item()))
    name = f"{'Symbol' if single else 'Multi'}{key.capitalize()}Page"
    parameters = [SYMBOL if single else SYMBOLS] + ([TIMEFRAME] if key == "bars" else []) + HISTORY_PARAMETERS
    return extend_schema_view(
        get=extend_schema(
            operation_id=f"stock{'_symbol' if single else ''}_{key}",
            tags=["market data"],
            parameters=parameters,
            responses={200: inline_serializer(name, fields)},
        )
    )


def _latest_schema(key: str, item: type[serializers.Serializer], *, single: bool) -> Any:
    if single:
        fields: dict[str, serializers.Field] = {"symbol": serializers.CharField(), key: item()}
        return extend_schema_view(
            get=extend_schema(
                operation_id=f"stock_symbol_latest_{key}",
                tags=["market data"],
                parameters=[SYMBOL, FEED],
                responses={200: inline_serializer(f"SymbolLatest{key.capitalize()}", fields)},
            )
        )
    fields = {f"{key}s": serializers.DictField(child=item())}
    return extend_schema_view(
        get=extend_schema(
            operation_id=f"stock_latest_{key}s",
            tags=["market data"],
            parameters=[SYMBOLS, FEED],
            responses={200: inline_serializer(f"MultiLatest{key.capitalize()}s", fields)},
        )
    )


# --- History --------------------------------------------------------------------------------


def _fetch_bars(request: Request, symbols: list[str]) -> PaginatedResult[Any]:
    timeframe = request.query_params.get("timeframe")
    if not timeframe:
        raise InvalidRequest("timeframe is required")
    return history.bars_page(symbols=symbols, timeframe=timeframe, **_history_args(request))


def _fetch_ticks(request: Request, symbols: list[str]) -> PaginatedResult[Any]:
    return history.ticks_page(symbols=symbols, **_history_args(request))


class _HistoryView(RateLimitedAPIView):
    key = ""
    fetch: Callable[[Request, list[str]], PaginatedResult[Any]]
    render: Callable[[Any], dict[str, Any]]

    def page(
        self, request: Request, symbols: list[str]
    ) -> tuple[dict[str, list[dict[str, Any]]], str | None]:
        result = self.fetch(request, symbols)
        render = self.render
        grouped: dict[str, list[dict[str, Any]]] = {}
        for item in result.items:
            grouped.setdefault(item.symbol, []).append(render(item))
        return grouped, result.next_page_token


class _MultiHistoryView(_HistoryView):
    def get(self, request: Request) -> Response:
        grouped, token = self.page(request, symbols_param(request))
        return Response({self.key: grouped, "next_page_token": token})


class _SymbolHistoryView(_HistoryView):
    def get(self, request: Request, symbol: str) -> Response:
        wanted = _single_symbol(symbol)
        grouped, token = self.page(request, [wanted])
        return Response({self.key: grouped.get(wanted, []), "symbol": wanted, "next_page_token": token})


@_history_schema("bars", BarSchema, single=False)
class StockBarsView(_MultiHistoryView):
    key = "bars"
    fetch = staticmethod(_fetch_bars)
    render = staticmethod(bar_json)


@_history_schema("trades", TradeSchema, single=False)
class StockTradesView(_MultiHistoryView):
    key = "trades"
    fetch = staticmethod(_fetch_ticks)
    render = staticmethod(trade_json)


@_history_schema("quotes", QuoteSchema, single=False)
class StockQuotesView(_MultiHistoryView):
    key = "quotes"
    fetch = staticmethod(_fetch_ticks)
    render = staticmethod(quote_json)


@_history_schema("bars", BarSchema, single=True)
class SymbolBarsView(_SymbolHistoryView):
    key = "bars"
    fetch = staticmethod(_fetch_bars)
    render = staticmethod(bar_json)


@_history_schema("trades", TradeSchema, single=True)
class SymbolTradesView(_SymbolHistoryView):
    key = "trades"
    fetch = staticmethod(_fetch_ticks)
    render = staticmethod(trade_json)


@_history_schema("quotes", QuoteSchema, single=True)
class SymbolQuotesView(_SymbolHistoryView):
    key = "quotes"
    fetch = staticmethod(_fetch_ticks)
    render = staticmethod(quote_json)


# --- Latest values --------------------------------------------------------------------------


class _LatestView(RateLimitedAPIView):
    key = ""  # "bar", "trade" or "quote"
    latest: Callable[..., dict[str, Any]]
    render: Callable[[Any], dict[str, Any]]

    def values(self, symbols: list[str]) -> dict[str, dict[str, Any]]:
        found = self.latest(symbols=symbols)
        render = self.render
        return {symbol: render(found[symbol]) for symbol in symbols if symbol in found}


class _MultiLatestView(_LatestView):
    def get(self, request: Request) -> Response:
        return Response({f"{self.key}s": self.values(symbols_param(request))})


class _SymbolLatestView(_LatestView):
    def get(self, request: Request, symbol: str) -> Response:
        wanted = _single_symbol(symbol)
        found = self.values([wanted])
        if wanted not in found:
            raise NotFound(f"no {self.key} found for {wanted}")
        return Response({"symbol": wanted, self.key: found[wanted]})


@_latest_schema("bar", BarSchema, single=False)
class LatestBarsView(_MultiLatestView):
    key = "bar"
    latest = staticmethod(history.latest_bars)
    render = staticmethod(bar_json)


@_latest_schema("trade", TradeSchema, single=False)
class LatestTradesView(_MultiLatestView):
    key = "trade"
    latest = staticmethod(history.latest_ticks)
    render = staticmethod(trade_json)


@_latest_schema("quote", QuoteSchema, single=False)
class LatestQuotesView(_MultiLatestView):
    key = "quote"
    latest = staticmethod(history.latest_ticks)
    render = staticmethod(quote_json)


@_latest_schema("bar", BarSchema, single=True)
class SymbolLatestBarView(_SymbolLatestView):
    key = "bar"
    latest = staticmethod(history.latest_bars)
    render = staticmethod(bar_json)


@_latest_schema("trade", TradeSchema, single=True)
class SymbolLatestTradeView(_SymbolLatestView):
    key = "trade"
    latest = staticmethod(history.latest_ticks)
    render = staticmethod(trade_json)


@_latest_schema("quote", QuoteSchema, single=True)
class SymbolLatestQuoteView(_SymbolLatestView):
    key = "quote"
    latest = staticmethod(history.latest_ticks)
    render = staticmethod(quote_json)


# --- Snapshots ------------------------------------------------------------------------------


class SnapshotsView(RateLimitedAPIView):
    @extend_schema(
        operation_id="stock_snapshots",
        tags=["market data"],
        parameters=[SYMBOLS, FEED],
        responses={
            200: OpenApiResponse(
                {"type": "object", "additionalProperties": _raw_schema(SnapshotSchema)},
                description="Snapshots keyed by symbol; symbols without data are left out.",
            )
        },
    )
    def get(self, request: Request) -> Response:
        found = history.snapshots(symbols=symbols_param(request))
        return Response({symbol: snapshot_json(snapshot) for symbol, snapshot in found.items()})


class SymbolSnapshotView(RateLimitedAPIView):
    @extend_schema(
        operation_id="stock_symbol_snapshot",
        tags=["market data"],
        parameters=[SYMBOL, FEED],
        responses={200: SymbolSnapshotSchema},
    )
    def get(self, request: Request, symbol: str) -> Response:
        wanted = _single_symbol(symbol)
        found = history.snapshots(symbols=[wanted])
        if wanted not in found:
            raise NotFound(f"no market data found for {wanted}")
        return Response({"symbol": wanted, **snapshot_json(found[wanted])})
