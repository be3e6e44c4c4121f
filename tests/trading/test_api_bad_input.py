"""Bad input gets Alpaca's error shape with the right status, and changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.core.exceptions import (
    DisallowedHost,
    RequestDataTooBig,
    TooManyFieldsSent,
    ValidationError as DjangoValidationError,
)
from django.http import Http404
from django.test import RequestFactory
from hypothesis import HealthCheck, given, settings, strategies as st
from pytest_django.fixtures import Settings
from rest_framework import exceptions

from tests.builders import shares
from tests.trading.api_support import (
    KeyClient,
    assert_alpaca_error,
    buy,
    key_client,
    post_order,
)
from trading.api.errors import (
    alpaca_exception_handler,
    json_bad_request,
    json_not_found,
    json_server_error,
)
from trading.api.parsers import MAX_JSON_DEPTH
from trading.errors import Forbidden, NotFound
from trading.models import Account, Asset, CashEntry, Fill, Order, Position

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(account: Account, asset: Asset) -> Iterator[KeyClient]:
    client = key_client(account)
    before = _snapshot(account)
    yield client
    # Whatever a test sent, a refused request wrote nothing.
    assert _snapshot(account) == before


def _snapshot(account: Account) -> tuple[int, int, int, int, int, int]:
    account.refresh_from_db()
    return (
        account.cash_cents,
        account.reserved_cents,
        Order.objects.filter(account=account).count(),
        Fill.objects.filter(account=account).count(),
        Position.objects.filter(account=account).count(),
        CashEntry.objects.filter(account=account).count(),
    )


def test_malformed_json_is_400(client: KeyClient) -> None:
    response = client.generic(
        "POST", "/v2/orders", '{"symbol": "AAPL", "qty": ', content_type="application/json"
    )
    assert_alpaca_error(response, 400)


def test_a_json_list_is_not_an_order(client: KeyClient) -> None:
    response = client.post("/v2/orders", [{"symbol": "AAPL"}], format="json")
    assert_alpaca_error(response, 422)


def test_form_encoding_is_415(client: KeyClient) -> None:
    response = client.post("/v2/orders", {"symbol": "AAPL", "qty": "1"})
    assert_alpaca_error(response, 415)


def test_any_accept_header_gets_json(client: KeyClient) -> None:
    """Alpaca answers JSON whatever the client accepts; no 406 for a browser-like Accept."""
    for accept in ("text/html", "application/xml", "image/png;q=0.9", "*/*"):
        response = client.get("/v2/clock", HTTP_ACCEPT=accept)
        assert response.status_code == 200, accept
        assert response["Content-Type"] == "application/json"
        assert "is_open" in response.json()
    assert_alpaca_error(client.get("/v2/orders/not-a-uuid", HTTP_ACCEPT="text/html"), 404)


def test_wrong_method_is_405(client: KeyClient) -> None:
    assert_alpaca_error(client.put("/v2/orders", {}, format="json"), 405)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"symbol": "NOPE", "qty": 1}, "not found"),
        ({"symbol": "AAPL", "qty": 0}, "qty"),
        ({"symbol": "AAPL", "qty": -5}, "qty"),
        ({"symbol": "AAPL", "qty": "-5"}, "qty"),
        ({"symbol": "AAPL", "qty": 10**12}, "qty"),
        ({"symbol": "AAPL", "qty": "1e400"}, "qty"),
        ({"symbol": "AAPL", "qty": "0.0000000001"}, "9 decimal places"),
        ({"symbol": "AAPL", "qty": 1.5, "time_in_force": "gtc"}, "fractional orders must be day orders"),
        ({"symbol": "AAPL", "qty": "0.001", "time_in_force": "ioc"}, "day orders"),
        ({"symbol": "AAPL", "qty": "0.5", "type": "stop", "stop_price": "90"}, "market or limit"),
        ({"symbol": "AAPL", "qty": "0.5", "type": "trailing_stop", "trail_price": "1"}, "market or limit"),
        ({"symbol": "AAPL", "qty": "NaN"}, "qty"),
        ({"symbol": "AAPL", "qty": "Infinity"}, "qty"),
        ({"symbol": "AAPL", "qty": True}, "qty"),
        ({"symbol": "AAPL", "qty": [1]}, "qty"),
        ({"symbol": "AAPL", "qty": {"n": 1}}, "qty"),
        ({"symbol": "AAPL"}, "qty"),
        ({"symbol": "AAPL", "notional": "100", "qty": 1}, "either qty or notional"),
        ({"symbol": "AAPL", "notional": "0.99"}, "at least $1.00"),
        ({"symbol": "AAPL", "notional": "10.001"}, "2 decimal places"),
        ({"symbol": "AAPL", "notional": 100, "time_in_force": "gtc"}, "notional orders must be day orders"),
        ({"symbol": "AAPL", "notional": 100, "type": "stop", "stop_price": "90"}, "market or limit"),
        ({"symbol": "AAPL", "notional": -5}, "notional"),
        ({"symbol": "AAPL", "notional": "NaN"}, "notional"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "bracket"}, "bracket"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "oco"}, "oco"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "oto"}, "oto"),
        ({"symbol": "AAPL", "qty": 1, "take_profit": {"limit_price": 200}}, "bracket"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "weird"}, "order_class"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "mleg"}, "options"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "bracket", "take_profit": 5}, "take_profit"),
        ({"symbol": "AAPL", "qty": 1, "order_class": "oto", "stop_loss": {}}, "stop_loss.stop_price"),
        (
            {"symbol": "AAPL", "qty": 1, "order_class": "bracket", "take_profit": {"limit_price": "x"}},
            "take_profit.limit_price",
        ),
        ({"symbol": "AAPL", "qty": 1, "time_in_force": "opg"}, "opg"),
        ({"symbol": "AAPL", "qty": 1, "time_in_force": "cls"}, "cls"),
        ({"symbol": "AAPL", "qty": 1, "time_in_force": "forever"}, "time_in_force"),
        ({"symbol": "AAPL", "qty": 1, "side": "hold"}, "side"),
        ({"symbol": "AAPL", "qty": 1, "side": 5}, "side"),
        ({"symbol": "AAPL", "qty": 1, "type": "iceberg"}, "type"),
        ({"symbol": "AAPL", "qty": 1, "type": None}, "type"),
        ({"symbol": "AAPL", "qty": 1, "type": "limit"}, "limit_price"),
        ({"symbol": "AAPL", "qty": 1, "type": "limit", "limit_price": "abc"}, "limit_price"),
        ({"symbol": "AAPL", "qty": 1, "type": "limit", "limit_price": "1.00001"}, "decimal"),
        ({"symbol": "AAPL", "qty": 1, "type": "limit", "limit_price": -1}, "positive"),
        ({"symbol": "AAPL", "qty": 1, "limit_price": "99"}, "limit_price"),
        ({"symbol": "AAPL", "qty": 1, "type": "trailing_stop"}, "trail"),
        ({"symbol": "AAPL", "qty": 1, "type": "trailing_stop", "trail_percent": "100"}, "trail_percent"),
        ({"symbol": "AAPL", "qty": 1, "extended_hours": "maybe"}, "extended_hours"),
        ({"symbol": "AAPL", "qty": 1, "client_order_id": "x" * 49}, "client_order_id"),
        ({"symbol": ["AAPL"], "qty": 1}, "symbol"),
        ({"symbol": "", "qty": 1}, "symbol"),
    ],
)
def test_invalid_orders_are_422(client: KeyClient, body: dict[str, object], fragment: str) -> None:
    message = assert_alpaca_error(post_order(client, **body), 422)["message"]
    assert fragment in message


def test_selling_shares_not_held_is_403(client: KeyClient) -> None:
    assert_alpaca_error(post_order(client, symbol="AAPL", qty=1, side="sell"), 403)


def test_halted_asset_is_403(client: KeyClient, asset: Asset) -> None:
    Asset.objects.filter(pk=asset.pk).update(halted=True)
    assert_alpaca_error(post_order(client, symbol="AAPL", qty=1), 403)


@pytest.mark.parametrize("order_id", ["not-a-uuid", "123", "5e283fa7-01eb-4e17-9c84-96a3456249e2"])
def test_unknown_order_ids_are_404(client: KeyClient, order_id: str) -> None:
    assert_alpaca_error(client.get(f"/v2/orders/{order_id}"), 404)
    assert_alpaca_error(client.delete(f"/v2/orders/{order_id}"), 404)
    assert_alpaca_error(client.patch(f"/v2/orders/{order_id}", {"qty": 1}, format="json"), 404)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "pending"},
        {"limit": "many"},
        {"limit": "-1"},
        {"direction": "sideways"},
        {"after": "yesterday"},
        {"side": "short"},
    ],
)
def test_invalid_order_queries_are_422(client: KeyClient, params: dict[str, str]) -> None:
    assert_alpaca_error(client.get("/v2/orders", params), 422)


def test_replace_refuses_bad_changes(account: Account, asset: Asset) -> None:
    client = key_client(account)
    filled = buy(client, "AAPL", 1)
    resting = post_order(
        client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc"
    ).json()
    before = _snapshot(account)

    assert_alpaca_error(client.patch(f"/v2/orders/{filled['id']}", {"qty": 2}, format="json"), 422)
    # The resting order is a gtc limit: a fractional qty would need a day order.
    for change in ({"qty": 1.5}, {"qty": 0}, {"limit_price": "x"}, {"stop_price": 10}, {"qty": 10**9}):
        response = client.patch(f"/v2/orders/{resting['id']}", change, format="json")
        assert_alpaca_error(response, 422)
    assert _snapshot(account) == before
    assert Order.objects.get(pk=resting["id"]).status == "new"


def test_a_user_cannot_touch_another_users_order(client: KeyClient, make_account) -> None:
    stranger = key_client(make_account())
    theirs = post_order(stranger, symbol="AAPL", qty=1, type="limit", limit_price="50").json()["id"]
    assert_alpaca_error(client.delete(f"/v2/orders/{theirs}"), 404)
    assert Order.objects.get(pk=theirs).status == "new"


ORDER_FIELDS = [
    "symbol", "qty", "notional", "side", "type", "time_in_force", "limit_price", "stop_price",
    "trail_percent", "trail_price", "client_order_id", "extended_hours", "order_class",
]  # fmt: skip


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=st.dictionaries(
        st.sampled_from(ORDER_FIELDS),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(10**20), max_value=10**20),
            st.floats(allow_nan=True, allow_infinity=True),
            st.text(max_size=12),
            st.lists(st.integers(), max_size=2),
            st.sampled_from(["AAPL", "buy", "sell", "limit", "stop", "day", "gtc", "1.5", "1e9", "-0"]),
        ),
    )
)
def test_property_no_order_body_ever_crashes(client: KeyClient, body: dict[str, object]) -> None:
    """Any JSON object gets an order (200) or an Alpaca-shaped 4xx: never a 500."""
    response = client.generic("POST", "/v2/orders", json.dumps(body), content_type="application/json")
    if response.status_code == 200:
        # Something valid slipped through: undo it so the fixture's nothing-changed check holds.
        pytest.fail(f"accepted {body}")
    assert_alpaca_error(response, response.status_code)
    assert 400 <= response.status_code < 500


# --- The error handler and Django's handlers ------------------------------------------------------


def _body(response: object) -> dict[str, object]:
    return dict(json.loads(response.content))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (NotFound("gone"), 404),
        (Forbidden("no"), 403),
        (Http404(), 404),
        (exceptions.ValidationError({"qty": ["bad"]}), 422),
        (exceptions.ParseError(), 400),
        (exceptions.NotAuthenticated(), 401),
        (exceptions.MethodNotAllowed("PUT"), 405),
        (DjangoValidationError("not a valid UUID"), 422),
        (RuntimeError("boom"), 500),
    ],
)
def test_every_error_has_alpacas_shape(exc: Exception, status: int) -> None:
    response = alpaca_exception_handler(exc, {})
    assert response.status_code == status
    assert response.data["code"] == status * 100000 + 10000
    assert response.data["message"]
    if status == 500:
        assert "boom" not in response.data["message"]  # internals stay in the log


def test_validation_messages_name_the_field() -> None:
    response = alpaca_exception_handler(exceptions.ValidationError({"qty": ["must be whole"]}), {})
    assert response.data["message"] == "qty: must be whole"


def test_throttled_is_429_with_retry_after() -> None:
    response = alpaca_exception_handler(exceptions.Throttled(wait=3), {})
    assert response.status_code == 429
    assert response.data["code"] == 42910000
    assert response["Retry-After"] == "3"


def test_django_handlers_answer_json_for_the_api_only(rf: RequestFactory) -> None:
    api_missing = json_not_found(rf.get("/v2/nothing"), Http404())
    assert api_missing.status_code == 404 and _body(api_missing)["code"] == 40410000
    api_crash = json_server_error(rf.get("/v2/orders"))
    assert api_crash.status_code == 500 and _body(api_crash)["code"] == 50010000
    page = json_not_found(rf.get("/dashboard/nothing"), Http404())
    assert page.status_code == 404 and not page["Content-Type"].startswith("application/json")


# --- Times and dates out of range -----------------------------------------------------------------

OUT_OF_RANGE_TIMES = [
    "/v2/stocks/AAPL/bars?timeframe=1Min&end=9999-12-31",
    "/v2/stocks/AAPL/bars?timeframe=1Min&start=9999-12-31T23:59:59.999999999Z",
    "/v2/stocks/AAPL/bars?timeframe=1Min&start=0001-01-01T00:00:00%2B23:59",
    "/v2/stocks/AAPL/bars?timeframe=1Month&start=0001-01-01",
    "/v2/stocks/bars?symbols=AAPL&timeframe=1Week&end=0001-01-01",
    "/v2/stocks/AAPL/trades?start=0001-01-01T00:00:00%2B23:59",
    "/v2/stocks/quotes?symbols=AAPL&end=9999-12-31T23:59:59-23:59",
    "/v2/orders?after=0001-01-01T00:00:00%2B23:59",
    "/v2/orders?until=9999-12-31T23:59:59-23:59",
    "/v2/account/activities?after=0001-01-01T00:00:00%2B23:59",
    "/v2/account/activities/FILL?until=9999-12-31",
    "/v2/account/activities?date=9999-12-31",
    "/v2/account/activities?date=0001-01-01",
    "/v2/account/portfolio/history?date_end=0001-01-01",
    "/v2/account/portfolio/history?date_end=9999-12-31",
    "/v2/account/portfolio/history?date_start=0001-01-01",
    "/v2/account/portfolio/history?end=9999-12-31T23:59:59Z",
    "/v2/account/portfolio/history?period=9999A",
    "/v2/calendar?end=0001-01-01",
    "/v2/calendar?start=9999-12-31",
]


@pytest.mark.parametrize("url", OUT_OF_RANGE_TIMES)
def test_times_out_of_range_are_422(client: KeyClient, url: str) -> None:
    """Times nothing can be computed with are refused where they are parsed, never a 500 from the
    arithmetic after (a day added to 9999-12-31, an offset taking year 1 back to year 0)."""
    message = assert_alpaca_error(client.get(url), 422)["message"]
    assert "between 1900-01-01 and 2999-12-31" in message or "100 years" in message


@pytest.mark.parametrize(
    "url",
    [
        "/v2/stocks/AAPL/bars?timeframe=1Min&start=1900-01-01&end=2999-12-31",
        "/v2/stocks/AAPL/bars?timeframe=12Month&start=2999-12-31T23:59:59.999999999Z",
        "/v2/orders?status=all&after=1900-01-01T00:00:00%2B00:00&until=2999-12-31T23:59:59Z",
        "/v2/account/activities?date=2999-12-31",
        "/v2/account/portfolio/history?date_start=1900-01-01&date_end=2999-12-31",
        "/v2/calendar?start=2999-06-01",
    ],
)
def test_times_at_the_edges_of_the_range_are_answered(client: KeyClient, url: str) -> None:
    assert client.get(url).status_code == 200


# Other scripts' digits (written as escapes: they look like ASCII ones) and impossible fields.
FULLWIDTH_2024 = "\uff12\uff10\uff12\uff14"
ARABIC_INDIC_ZERO = "\u0660"


@pytest.mark.parametrize(
    "value",
    [
        f"{FULLWIDTH_2024}-01-01",
        f"2024-{ARABIC_INDIC_ZERO}1-01",
        "2024-13-01",
        "2024-02-30",
        f"2024-01-01T1{ARABIC_INDIC_ZERO}:00:00Z",
        f"2024-01-01T10:00:00+{ARABIC_INDIC_ZERO}5:00",
        "2024-01-01T24:00:00Z",
        "2024-01-01T10:00:00+00:60",
        "2024-01-01T10:00:00+24:00",
    ],
)
def test_times_take_ascii_digits_and_real_fields_only(client: KeyClient, value: str) -> None:
    assert_alpaca_error(client.get("/v2/orders", {"after": value}), 422)
    assert_alpaca_error(client.get("/v2/stocks/AAPL/trades", {"start": value}), 422)
    if "T" not in value:
        assert_alpaca_error(client.get("/v2/calendar", {"start": value}), 422)
        assert_alpaca_error(client.get("/v2/account/activities", {"date": value}), 422)


# Each parameter of the API that takes a time or a date, with a request that carries it.
TIME_PARAMETERS = [
    ("/v2/stocks/AAPL/bars?timeframe=1Min", "start"),
    ("/v2/stocks/AAPL/bars?timeframe=1Min", "end"),
    ("/v2/stocks/AAPL/bars?timeframe=1Month", "start"),
    ("/v2/stocks/bars?symbols=AAPL&timeframe=1Week", "end"),
    ("/v2/stocks/bars?symbols=AAPL&timeframe=4Hour", "start"),
    ("/v2/stocks/trades?symbols=AAPL", "start"),
    ("/v2/stocks/AAPL/quotes?sort=desc", "end"),
    ("/v2/orders?status=all", "after"),
    ("/v2/orders?status=all", "until"),
    ("/v2/account/activities?", "after"),
    ("/v2/account/activities?", "until"),
    ("/v2/account/activities?", "date"),
    ("/v2/account/portfolio/history?", "date_start"),
    ("/v2/account/portfolio/history?", "date_end"),
    ("/v2/account/portfolio/history?timeframe=1D", "start"),
    ("/v2/account/portfolio/history?period=1A", "end"),
    ("/v2/calendar?", "start"),
    ("/v2/calendar?", "end"),
]


# Digits of other scripts: Arabic-Indic, Devanagari, fullwidth, mathematical bold.
OTHER_DIGITS = [chr(base + n) for base in (0x660, 0x966, 0xFF10, 0x1D7CE) for n in range(10)]


def _digits(count: int, low: int, high: int) -> st.SearchStrategy[str]:
    """Zero-padded numbers, mostly in range, with the edges and a few other scripts' digits."""
    number = st.one_of(st.integers(low, high), st.sampled_from([0, low, high, 10**count - 1]))
    plain = number.map(lambda n: str(n).zfill(count)[-count:])
    foreign = st.tuples(plain, st.sampled_from(OTHER_DIGITS)).map(lambda t: t[1] + t[0][1:])
    return st.one_of(plain, plain, plain, foreign)


@st.composite
def rfc3339ish(draw: st.DrawFn) -> str:
    date = f"{draw(_digits(4, 1, 9999))}-{draw(_digits(2, 1, 12))}-{draw(_digits(2, 1, 31))}"
    if draw(st.booleans()):
        return date
    text = f"{date}{draw(st.sampled_from('Tt '))}{draw(_digits(2, 0, 23))}:{draw(_digits(2, 0, 59))}"
    if draw(st.booleans()):
        text += f":{draw(_digits(2, 0, 59))}"
        if draw(st.booleans()):
            text += "." + draw(st.text("0123456789", min_size=1, max_size=10))
    zone = draw(
        st.one_of(
            st.sampled_from(["", "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", " 05:00"]),
            st.builds(
                lambda sign, h, m: f"{sign}{h}:{m}",
                st.sampled_from("+-"),
                _digits(2, 0, 99),
                _digits(2, 0, 99),
            ),
        )
    )
    return text + zone


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(TIME_PARAMETERS), value=st.one_of(rfc3339ish(), st.text(max_size=30)))
def test_property_no_time_ever_crashes(client: KeyClient, target: tuple[str, str], value: str) -> None:
    """Any RFC 3339-like string (or any text) on any time parameter answers 200 or an
    Alpaca-shaped 4xx: never a 500."""
    url, name = target
    separator = "" if url.endswith("?") else "&"
    response = client.get(f"{url}{separator}{urlencode({name: value})}")
    if response.status_code != 200:
        assert_alpaca_error(response, response.status_code)
        assert 400 <= response.status_code < 500, (url, name, value, response.content)


# --- Bodies: nesting and size ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 1000 + "]" * 1000,
        '{"a":' * 1000 + "1" + "}" * 1000,
        '{"symbol": "AAPL", "qty": 1, "take_profit": ' + "[" * 5000 + "]" * 5000 + "}",
        '{"symbol": "AAPL", "qty": 1, "legs": ' + '{"a":' * 40 + "1" + "}" * 40 + "}",
    ],
    ids=["array-1000", "object-1000", "array-5000-in-a-field", "object-40"],
)
def test_deeply_nested_json_is_400(client: KeyClient, body: str) -> None:
    response = client.generic("POST", "/v2/orders", body, content_type="application/json")
    assert "nested" in assert_alpaca_error(response, 400)["message"]


def test_json_nested_as_deep_as_allowed_is_parsed(client: KeyClient) -> None:
    legs = '{"a":' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)
    body = (
        '{"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day", "legs": '
        + legs
        + "}"
    )
    # Parsed, then refused for what it asks (legs are multi-leg options orders), not for its shape.
    response = client.generic("POST", "/v2/orders", body, content_type="application/json")
    assert "options" in assert_alpaca_error(response, 422)["message"]


def test_body_over_the_upload_limit_is_413(client: KeyClient, settings: Settings) -> None:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    order = {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"}
    padded = json.dumps({**order, "client_order_id": None, "pad": "x" * limit})
    for method, path in (
        ("POST", "/v2/orders"),
        ("POST", "/v2/watchlists"),
        ("PATCH", "/v2/account/configurations"),
    ):
        response = client.generic(method, path, padded, content_type="application/json")
        body = assert_alpaca_error(response, 413)
        assert body["code"] == 41310000 and str(limit) in body["message"]
    # Just under the limit a body is read (the padding is a field the endpoint ignores).
    fitting = json.dumps({"suspend_trade": None, "pad": "x" * (limit - 100)})
    assert len(fitting) <= limit
    response = client.generic("PATCH", "/v2/account/configurations", fitting, content_type="application/json")
    assert response.status_code == 200, response.content


def test_django_refusals_of_a_request_are_alpaca_shaped(rf: RequestFactory) -> None:
    too_big = alpaca_exception_handler(RequestDataTooBig("body"), {})
    assert too_big.status_code == 413 and too_big.data["code"] == 41310000
    too_many = alpaca_exception_handler(TooManyFieldsSent("fields"), {})
    assert too_many.status_code == 400 and too_many.data["code"] == 40010000
    api = json_bad_request(rf.get("/v2/orders"), RequestDataTooBig("body"))
    assert api.status_code == 413 and _body(api)["code"] == 41310000
    host = json_bad_request(rf.get("/v1beta1/news"), DisallowedHost("evil.example"))
    assert host.status_code == 400 and _body(host)["code"] == 40010000
    page = json_bad_request(rf.get("/login"), DisallowedHost("evil.example"))
    assert page.status_code == 400 and not page["Content-Type"].startswith("application/json")


# --- Unknown API paths ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1beta1/news",
        "/v1beta3/crypto/us/bars",
        "/v1beta1/options/snapshots/AAPL",
        "/v1beta1/screener/stocks/most-actives",
        "/v1beta1/corporate-actions",
        "/v1/anything",
        "/v2",
        "/v2/",
        "/v2/no/such/endpoint",
        "/v2/stocks/AAPL/nothing",
    ],
)
def test_unknown_api_paths_are_json_404(client: KeyClient, path: str) -> None:
    for method in ("get", "post", "delete"):
        response = getattr(client, method)(path)
        assert response["Content-Type"] == "application/json"
        assert assert_alpaca_error(response, 404) == {"code": 40410000, "message": "endpoint not found"}


@pytest.mark.parametrize(
    "path", ["/no-such-page", "/v2beta", "/version", "/static/none.js", "/admin/nothing/"]
)
def test_unknown_pages_keep_the_html_404(client: KeyClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 302)  # the admin sends anonymous browsers to its login
    assert not response["Content-Type"].startswith("application/json")


# --- Numbers: ASCII digits only -------------------------------------------------------------------

ARABIC_INDIC_THREE = "\u0663"
FULLWIDTH_ONE = "\uff11"


@pytest.mark.parametrize("digits", [ARABIC_INDIC_THREE, FULLWIDTH_ONE, f"1{ARABIC_INDIC_ZERO}", "1_0"])
@pytest.mark.parametrize(
    "field",
    ["qty", "limit_price", "stop_price", "trail_price", "trail_percent", "notional"],
)
def test_order_numbers_take_ascii_digits_only(client: KeyClient, field: str, digits: str) -> None:
    order: dict[str, object] = {"symbol": "AAPL", "qty": 1, "type": "market"}
    if field in ("limit_price", "stop_price"):
        order["type"] = "limit" if field == "limit_price" else "stop"
    if field.startswith("trail"):
        order["type"] = "trailing_stop"
    if field == "notional":
        del order["qty"]
    order[field] = digits
    assert field in assert_alpaca_error(post_order(client, **order), 422)["message"]


def test_replace_and_close_take_ascii_digits_only(account: Account, asset: Asset) -> None:
    client = key_client(account)
    buy(client, "AAPL", 5)
    resting = post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50").json()
    for change in ({"qty": ARABIC_INDIC_THREE}, {"limit_price": f"5{FULLWIDTH_ONE}"}):
        assert_alpaca_error(client.patch(f"/v2/orders/{resting['id']}", change, format="json"), 422)
    for query in ({"qty": ARABIC_INDIC_THREE}, {"percentage": f"5{ARABIC_INDIC_ZERO}"}):
        assert_alpaca_error(client.delete(f"/v2/positions/AAPL?{urlencode(query)}"), 422)
    assert Position.objects.get(account=account).qty == shares(5)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v2/orders", "limit"),
        ("/v2/account/activities", "page_size"),
        ("/v2/stocks/AAPL/bars?timeframe=1Min", "limit"),
        ("/v2/stocks/trades?symbols=AAPL", "limit"),
        ("/v2/leaderboard", "limit"),
    ],
)
def test_limits_take_ascii_digits_only(client: KeyClient, path: str, name: str) -> None:
    separator = "&" if "?" in path else "?"
    for digits in (ARABIC_INDIC_THREE, FULLWIDTH_ONE, "1_0", "1.0"):
        assert_alpaca_error(client.get(f"{path}{separator}{urlencode({name: digits})}"), 422)
    assert client.get(f"{path}{separator}{name}=3").status_code == 200


def test_statement_periods_take_ascii_digits_only(client: KeyClient) -> None:
    response = client.post("/v2/statements", {"period": f"2024-{ARABIC_INDIC_ZERO}1"}, format="json")
    assert "YYYY-MM" in assert_alpaca_error(response, 422)["message"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    field=st.sampled_from(["qty", "limit_price", "trail_percent"]),
    digits=st.lists(
        st.one_of(st.characters(categories=["Nd"]), st.sampled_from("0123456789")), min_size=1, max_size=4
    )
    .filter(lambda chars: any(not char.isascii() for char in chars))
    .map("".join),
)
def test_property_other_scripts_digits_never_make_an_order(
    client: KeyClient, field: str, digits: str
) -> None:
    order = {
        "symbol": "AAPL",
        "qty": "1",
        "type": {"qty": "market", "limit_price": "limit"}.get(field, "trailing_stop"),
    }
    order[field] = digits
    assert_alpaca_error(post_order(client, **order), 422)
