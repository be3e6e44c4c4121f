"""A simple order's body validated by the order serializer's fields built once
(``trading.api.views_orders.order_body_simple``, a framework bypass in docs/architecture.md):
whatever the body, it answers what ``OrderCreateSerializer`` answers, or leaves the body to the
serializer (which then answers every error, in its own words)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from tests.trading.api_support import KeyClient, assert_alpaca_error, key_client, post_order
from trading.api.serializers import OrderCreateSerializer
from trading.api.views_orders import order_body_simple
from trading.models import Account, Asset

SIMPLE_KEYS = (
    "symbol", "qty", "notional", "side", "type", "time_in_force", "limit_price", "stop_price",
    "trail_price", "trail_percent", "extended_hours", "client_order_id", "order_class", "position_intent",
)  # fmt: skip
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            "",
            " ",
            "AAPL",
            " aapl ",
            "buy",
            "sell",
            "BUY",
            "market",
            "limit",
            "stop",
            "stop_limit",
            "trailing_stop",
            "day",
            "gtc",
            "ioc",
            "fok",
            "opg",
            "cls",
            "simple",
            "SIMPLE",
            "bracket",
            "oco",
            "oto",
            "mleg",
            "1",
            "1.5",
            "0.000000001",
            "0",
            "-1",
            "1e3",
            "12.345",
            "100.00",
            "true",
            "false",
            "buy_to_open",
            "sell_to_close",
            "x" * 49,
            "AAPLAAPLAAPLAAPLA",
        ]
    ),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def serializer_answer(body: dict[str, Any]) -> dict[str, Any] | None:
    serializer = OrderCreateSerializer(data=body)
    return dict(serializer.validated_data) if serializer.is_valid() else None


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(SIMPLE_KEYS), VALUES, max_size=8))
def test_a_simple_body_is_validated_as_the_serializer_validates_it(body: dict[str, Any]) -> None:
    expected = serializer_answer(body)
    got = order_body_simple(body)
    # A body the serializer takes is taken, with the same values (types included); one it
    # refuses is left to it.
    assert got == expected
    if got is not None:
        assert list(got) == list(expected or {})
        assert [type(value) for value in got.values()] == [type(value) for value in (expected or {}).values()]


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"},
        {"symbol": "AAPL", "notional": "12.5", "side": "buy", "type": "market", "time_in_force": "day",
         "client_order_id": "", "order_class": None, "position_intent": "", "extended_hours": "true"},
        {"symbol": "AAPL", "qty": 2, "side": "sell", "type": "limit", "limit_price": 101.25,
         "time_in_force": "gtc", "order_class": "Simple"},
    ],
)  # fmt: skip
def test_common_bodies_take_the_simple_path(body: dict[str, Any]) -> None:
    assert order_body_simple(body) == serializer_answer(body) is not None


@pytest.mark.parametrize(
    "body",
    [
        # Nested legs, another mapping type, unknown keys: the serializer's.
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "limit", "limit_price": "1",
         "time_in_force": "gtc", "order_class": "bracket", "take_profit": {"limit_price": "2"},
         "stop_loss": {"stop_price": "0.5"}},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day", "legs": None},
        {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day", "extra": 1},
    ],
)  # fmt: skip
def test_other_bodies_are_left_to_the_serializer(body: dict[str, Any]) -> None:
    assert order_body_simple(body) is None


@pytest.mark.django_db
def test_a_refused_simple_body_answers_the_serializers_error(asset: Asset, account: Account) -> None:
    client: KeyClient = key_client(account)
    response = post_order(client, symbol="AAPL", qty=1, notional="5")
    body = assert_alpaca_error(response, 422)
    serializer = OrderCreateSerializer(
        data={
            "symbol": "AAPL",
            "qty": 1,
            "notional": "5",
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        }
    )
    assert not serializer.is_valid()
    assert "give either qty or notional" in body["message"]
