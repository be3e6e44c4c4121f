"""``/v2/assets``, ``/v2/clock`` and ``/v2/calendar``, parsed by alpaca-py's models."""

from __future__ import annotations

import datetime as dt

import pytest
from alpaca.trading.enums import AssetExchange, AssetStatus
from alpaca.trading.models import Asset as AlpacaAsset, Calendar as AlpacaCalendar, Clock as AlpacaClock
from alpaca.trading.requests import GetAssetsRequest, GetCalendarRequest
from django.test import override_settings
from django.utils import timezone
from pydantic import TypeAdapter

from tests.trading.api_support import (
    MakeAsset,
    assert_alpaca_error,
    key_client,
)
from trading import calendar
from trading.api.serializers import AssetSerializer
from trading.models import Account, Exchange

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(account: Account) -> object:
    return key_client(account)


def test_every_exchange_we_store_is_one_alpaca_py_accepts() -> None:
    assert {value for value, _ in Exchange.choices} <= {member.value for member in AssetExchange}


def test_asset_by_symbol_and_by_id(client, make_asset: MakeAsset) -> None:
    asset = make_asset("BRK.B", exchange="NYSE", shortable=True, easy_to_borrow=True)

    by_symbol = client.get("/v2/assets/BRK.B").json()
    by_id = client.get(f"/v2/assets/{asset.id}").json()

    assert by_symbol == by_id
    assert set(by_symbol) == set(AssetSerializer().fields)
    parsed = AlpacaAsset(**by_symbol)
    assert parsed.symbol == "BRK.B" and parsed.asset_class.value == "us_equity"
    assert parsed.status == AssetStatus.ACTIVE and parsed.tradable and parsed.shortable
    assert parsed.fractionable is False
    assert client.get("/v2/assets/brk.b").json()["id"] == str(asset.id)


def test_unknown_asset_is_404(client) -> None:
    assert_alpaca_error(client.get("/v2/assets/NOPE"), 404)


def test_asset_list_filters_as_the_sdk_asks(client, make_asset: MakeAsset) -> None:
    make_asset("AAPL", exchange="NASDAQ")
    make_asset("IBM", exchange="NYSE")
    make_asset("OLD", active=False)
    make_asset("HALT", halted=True)

    def symbols(request: GetAssetsRequest | None = None) -> list[str]:
        params = request.to_request_fields() if request else {}
        response = client.get("/v2/assets", params)
        return [asset.symbol for asset in TypeAdapter(list[AlpacaAsset]).validate_python(response.json())]

    assert symbols() == ["AAPL", "HALT", "IBM", "OLD"]
    assert symbols(GetAssetsRequest(status=AssetStatus.ACTIVE)) == ["AAPL", "HALT", "IBM"]
    assert symbols(GetAssetsRequest(status=AssetStatus.INACTIVE)) == ["OLD"]
    assert symbols(GetAssetsRequest(exchange=AssetExchange.NASDAQ)) == ["AAPL"]
    assert symbols(GetAssetsRequest(asset_class="crypto")) == []
    assert client.get("/v2/assets/HALT").json()["tradable"] is False


def test_clock_says_open_until_the_day_boundary(client) -> None:
    before = timezone.now()
    body = client.get("/v2/clock").json()

    clock = AlpacaClock(**body)
    assert clock.is_open is True
    assert clock.timestamp >= before
    assert clock.next_close == clock.next_open
    assert clock.next_close == calendar.day_start(calendar.trading_day_of(before) + dt.timedelta(days=1))
    assert body["timestamp"][-6:] in ("-05:00", "-04:00")


@override_settings(MARKET_HOURS="xnys")
def test_clock_with_real_hours(client) -> None:
    clock = AlpacaClock(**client.get("/v2/clock").json())
    assert clock.next_open > clock.timestamp or clock.is_open


def test_calendar_range_as_the_sdk_sends_it(client) -> None:
    request = GetCalendarRequest(start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 3))
    response = client.get("/v2/calendar", request.to_request_fields())

    days = TypeAdapter(list[AlpacaCalendar]).validate_python(response.json())
    assert [day.date for day in days] == [dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)]
    assert response.json()[0]["open"] == "00:00" and response.json()[0]["close"] == "23:59"


def test_calendar_defaults_to_the_coming_year(client) -> None:
    days = client.get("/v2/calendar").json()
    today = calendar.trading_day_of(timezone.now())
    assert days[0]["date"] == today.isoformat()
    assert len(days) == 366


@override_settings(MARKET_HOURS="xnys")
def test_calendar_with_real_hours_skips_weekends(client) -> None:
    days = client.get("/v2/calendar", {"start": "2025-03-07", "end": "2025-03-10"}).json()
    assert [(day["date"], day["open"], day["close"]) for day in days] == [
        ("2025-03-07", "09:30", "16:00"),
        ("2025-03-10", "09:30", "16:00"),
    ]


@pytest.mark.parametrize(
    "params", [{"start": "tomorrow"}, {"start": "2000-01-01", "end": "2030-01-01"}, {"end": "2025-13-01"}]
)
def test_calendar_refuses_bad_ranges(client, params: dict[str, str]) -> None:
    assert_alpaca_error(client.get("/v2/calendar", params), 422)


def test_reversed_calendar_range_is_empty(client) -> None:
    assert client.get("/v2/calendar", {"start": "2025-03-10", "end": "2025-03-01"}).json() == []
