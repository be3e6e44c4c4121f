"""Fixed-capacity ring buffers: the market process's only in-memory price history.

Memory must not grow with uptime, so recent history is kept in ``collections.deque(maxlen=...)``:
appending to a full buffer drops the oldest item in O(1).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from django.conf import settings

T = TypeVar("T")


class RingBuffer(Generic[T]):
    """The newest ``capacity`` items, oldest first."""

    __slots__ = ("_items",)

    def __init__(self, capacity: int | None = None) -> None:
        capacity = settings.MARKET_RING_CAPACITY if capacity is None else capacity
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._items: deque[T] = deque(maxlen=capacity)

    @property
    def capacity(self) -> int:
        maxlen = self._items.maxlen
        assert maxlen is not None
        return maxlen

    def append(self, item: T) -> None:
        self._items.append(item)

    def extend(self, items: Iterable[T]) -> None:
        self._items.extend(items)

    def latest(self) -> T | None:
        return self._items[-1] if self._items else None

    def items(self) -> list[T]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


class SymbolHistory(Generic[T]):
    """One ring buffer per symbol; the symbol set is fixed by the market, so this is bounded too."""

    __slots__ = ("_buffers", "_capacity")

    def __init__(self, capacity: int | None = None) -> None:
        self._capacity = settings.MARKET_RING_CAPACITY if capacity is None else capacity
        self._buffers: dict[str, RingBuffer[T]] = {}

    def append(self, symbol: str, item: T) -> None:
        buffer = self._buffers.get(symbol)
        if buffer is None:
            buffer = self._buffers[symbol] = RingBuffer(self._capacity)
        buffer.append(item)

    def recent(self, symbol: str) -> list[T]:
        buffer = self._buffers.get(symbol)
        return buffer.items() if buffer is not None else []

    def latest(self, symbol: str) -> T | None:
        buffer = self._buffers.get(symbol)
        return buffer.latest() if buffer is not None else None

    def symbols(self) -> list[str]:
        return sorted(self._buffers)

    def __len__(self) -> int:
        return sum(len(buffer) for buffer in self._buffers.values())
