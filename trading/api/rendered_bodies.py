"""Response bodies rendered once per cached value, for the API views that serve a cached read as it is."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from config.cache import LRUCache


class RenderedBodies:
    """JSON bodies rendered once per cached value, for the endpoints that serve one as it is.

    A cached read hands out the very object L1 holds until the entry expires (at most
    ``CACHE_L1_MAX_SECONDS``) or is invalidated; rendering it to JSON on every request cost as
    much as the rest of a leaderboard read. The memo is keyed by the value's identity (and a
    variant, such as the leaderboard's limit): while L1 returns the same object its body is
    the same, and a reload or an invalidation yields a new object, so the next read renders the
    new one. Each entry holds its value, so an id is never reused while the entry lives; the memo
    is a bounded LRU and never outlives what it was rendered from by more than its entries.
    """

    def __init__(self, *, render: Callable[[Any], bytes], max_entries: int = 256) -> None:
        self._render = render
        # Entries leave by the LRU bound alone: a body is valid for as long as its value is.
        self._entries = LRUCache(max_entries=max_entries)

    def get(self, source: object, *, variant: Any = None, payload: Callable[[], Any] | None = None) -> bytes:
        """The body for ``source`` (rendered from ``payload()`` when given, else from ``source``)."""
        key = f"{id(source)}:{variant!r}"
        found = self._entries.get(key)
        if found is not None and found[0] is source:
            body: bytes = found[1]
            return body
        body = self._render(source if payload is None else payload())
        self._entries.set(key, (source, body), math.inf)
        return body
