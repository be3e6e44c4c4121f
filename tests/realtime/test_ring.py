"""Ring buffers: bounded, newest N in order (Properties 21 and 24)."""

from __future__ import annotations

import pytest
from django.conf import settings
from hypothesis import given, strategies as st

from realtime.ring import RingBuffer, SymbolHistory


@given(items=st.lists(st.integers()), capacity=st.integers(1, 50))
def test_ring_buffer_keeps_newest_n_in_order(items: list[int], capacity: int) -> None:
    """Property 24: a ring buffer keeps the newest N items, in the order they arrived."""
    ring: RingBuffer[int] = RingBuffer(capacity)
    for item in items:
        ring.append(item)
        assert len(ring) <= capacity
    assert ring.items() == items[-capacity:]
    assert list(ring) == items[-capacity:]
    assert ring.latest() == (items[-1] if items else None)


@given(
    appends=st.lists(st.tuples(st.sampled_from(["AAPL", "MSFT", "XOM"]), st.integers()), max_size=400),
    capacity=st.integers(1, 30),
)
def test_symbol_history_is_bounded_per_symbol(appends: list[tuple[str, int]], capacity: int) -> None:
    """Property 21: in-memory price history holds at most N records per symbol (newest, in order)."""
    history: SymbolHistory[int] = SymbolHistory(capacity)
    for symbol, value in appends:
        history.append(symbol, value)
    for symbol in ("AAPL", "MSFT", "XOM"):
        expected = [value for s, value in appends if s == symbol][-capacity:]
        assert history.recent(symbol) == expected
        assert len(history.recent(symbol)) <= capacity


def test_default_capacity_is_1000_records_per_symbol() -> None:
    """Property 21: the default bound is MARKET_RING_CAPACITY, 1,000 records."""
    assert settings.MARKET_RING_CAPACITY == 1000
    history: SymbolHistory[int] = SymbolHistory()
    for n in range(5_000):
        history.append("AAPL", n)
    assert history.recent("AAPL") == list(range(4_000, 5_000))
    assert len(history) == 1000


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RingBuffer(0)
