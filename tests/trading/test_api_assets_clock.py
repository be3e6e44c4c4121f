"""``/v2/assets``, ``/v2/clock`` and ``/v2/calendar``, parsed by alpaca-py's models."""

from __future__ import annotations

import datetime as dt

import pytest
from alpaca.trading.enums import AssetExchange, AssetStatus
from alpaca.trading.models import Asset as AlpacaAsset, Calendar as AlpacaCalendar, Clock as AlpacaClock
from alpaca.trading.requests import GetAssetsRequest, GetCalendarRequest
from django.test import override_settings
from pydantic import TypeAdapter

from tests.clock import BOUNDARY_INSTANTS, frozen_at, new_york
from tests.trading.api_support import (
    MakeAsset,
    assert_alpaca_error,
    key_client,
)
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
    assert parsed.fractionable is True
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


@pytest.mark.parametrize(
    ("now", "timestamp", "boundary"),
    [
        frozen_at(BOUNDARY_INSTANTS[name], timestamp, boundary, name=name)
        for name, timestamp, boundary in [
            ("before-midnight", "2026-03-04T23:59:59-05:00", "2026-03-05T00:00:00-05:00"),
            ("after-midnight", "2026-03-05T00:00:01-05:00", "2026-03-06T00:00:00-05:00"),
            ("month-end-evening", "2026-04-30T21:15:00-04:00", "2026-05-01T00:00:00-04:00"),
            ("spring-forward", "2026-03-08T03:05:00-04:00", "2026-03-09T00:00:00-04:00"),
            ("fall-back", "2026-11-01T01:30:00-05:00", "2026-11-02T00:00:00-05:00"),
        ]
    ],
)
def test_clock_says_open_until_the_day_boundary(
    now: dt.datetime, timestamp: str, boundary: str, client
) -> None:
    body = client.get("/v2/clock").json()

    clock = AlpacaClock(**body)
    assert clock.is_open is True
    assert clock.timestamp == now
    assert (body["timestamp"], body["next_open"], body["next_close"]) == (timestamp, boundary, boundary)


@override_settings(MARKET_HOURS="xnys")
@pytest.mark.parametrize(
    ("now", "is_open", "next_open", "next_close"),
    [
        frozen_at(
            new_york(2026, 3, 4, 9, 29, 59), False, "2026-03-04T09:30:00-05:00", "2026-03-04T16:00:00-05:00"
        ),
        frozen_at(
            new_york(2026, 3, 4, 15, 59), True, "2026-03-05T09:30:00-05:00", "2026-03-04T16:00:00-05:00"
        ),
        frozen_at(
            new_york(2026, 3, 4, 23, 59, 59), False, "2026-03-05T09:30:00-05:00", "2026-03-05T16:00:00-05:00"
        ),
        # Friday night before the clocks go forward on Sunday: Monday's session, in EDT.
        frozen_at(new_york(2026, 3, 6, 20), False, "2026-03-09T09:30:00-04:00", "2026-03-09T16:00:00-04:00"),
        frozen_at(
            new_york(2026, 11, 1, 1, 30, fold=1),
            False,
            "2026-11-02T09:30:00-05:00",
            "2026-11-02T16:00:00-05:00",
        ),
    ],
)
def test_clock_with_real_hours(
    now: dt.datetime, is_open: bool, next_open: str, next_close: str, client
) -> None:
    body = client.get("/v2/clock").json()
    assert AlpacaClock(**body).timestamp == now
    assert (body["is_open"], body["next_open"], body["next_close"]) == (is_open, next_open, next_close)


def test_calendar_range_as_the_sdk_sends_it(client) -> None:
    request = GetCalendarRequest(start=dt.date(2025, 3, 1), end=dt.date(2025, 3, 3))
    response = client.get("/v2/calendar", request.to_request_fields())

    days = TypeAdapter(list[AlpacaCalendar]).validate_python(response.json())
    assert [day.date for day in days] == [dt.date(2025, 3, 1), dt.date(2025, 3, 2), dt.date(2025, 3, 3)]
    assert response.json()[0]["open"] == "00:00" and response.json()[0]["close"] == "23:59"


@pytest.mark.parametrize(
    ("now", "today"),
    [
        frozen_at(BOUNDARY_INSTANTS[name], today, name=name)
        for name, today in [
            ("before-midnight", "2026-03-04"),
            ("after-midnight", "2026-03-05"),
            ("month-end-evening", "2026-04-30"),  # May 1st in UTC, still April in New York
            ("fall-back", "2026-11-01"),
        ]
    ],
)
def test_calendar_defaults_to_the_coming_year(now: dt.datetime, today: str, client) -> None:
    days = client.get("/v2/calendar").json()
    assert days[0]["date"] == today
    assert len(days) == 366
    assert all((day["open"], day["close"]) == ("00:00", "23:59") for day in days)


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
