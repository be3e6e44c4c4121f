"""What the streams read of the other apps' data: the symbols the market lists, an order and an
account in the REST API's shapes, the leaderboard as the dashboard shows it.

Each is one read through the owning app's selectors and serializers, so a stream says exactly
what the REST API says. The ORM reads are synchronous: the fan-out and the consumers run them
through ``database_sync_to_async`` (``listed_symbols_get`` does so itself), which also closes
stale database connections around each call.

The other apps' modules are imported on first use, not with this module: loaded into every
stream process at start-up, DRF's serializers and the analytics selectors measured ~1.5 KB more
per idle connection (``benchmark stream``, RSS growth over 1,000 sockets), though no connection
holds any of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

logger = logging.getLogger(__name__)

# How long the symbols the market lists are kept per process before they are read again: a new
# listing can be subscribed to within this.
LISTED_SYMBOLS_TTL_S = 5.0


async def listed_symbols_get() -> frozenset[str]:
    """The symbols the market lists: active, tradable assets, halted ones included."""
    from trading import selectors as trading_selectors

    return await database_sync_to_async(trading_selectors.tradable_symbols_get)()


class ListedSymbols:
    """The symbols the market lists (``listed_symbols_get``), read at most once per
    LISTED_SYMBOLS_TTL_S by this process, however many connections subscribe meanwhile.

    A subscription holds only these: a symbol nobody lists is left out of it and of its reply,
    so a client cannot make this process route, store and echo names it made up.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[frozenset[str]]],
        *,
        ttl: float = LISTED_SYMBOLS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.load = load
        self.ttl = ttl
        self.clock = clock
        self.symbols: frozenset[str] | None = None
        self.read_at = -math.inf
        self._loading: asyncio.Future[frozenset[str]] | None = None

    async def get(self) -> frozenset[str]:
        if self.symbols is not None and self.clock() - self.read_at < self.ttl:
            return self.symbols
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._loading)

    async def _read(self) -> frozenset[str]:
        try:
            symbols = await self.load()
        except Exception:
            if self.symbols is None:
                raise
            logger.warning("listed symbols not re-read (database unavailable?): keeping the last list")
            return self.symbols
        finally:
            self._loading = None
        self.symbols, self.read_at = symbols, self.clock()
        return symbols


def order_shape_get(
    *, account_id: str, order_id: str, state: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The order's REST shape as it was at an event: the row read after the event's commit (one
    query with its joins) with the event's ``order_state`` laid over it, so a ``new`` event shows
    a new order even though the row has been filled since."""
    from trading import selectors as trading_selectors
    from trading.api.serializers import OrderSerializer
    from trading.errors import NotFound
    from trading.events import OrderState

    try:
        order = trading_selectors.order_get(account_id=uuid.UUID(account_id), order_id=order_id)
    except (NotFound, ValueError):
        return None
    return OrderSerializer.shape(order, OrderState.from_payload(state) if state else None)


def leaderboard_board_get(*, period: str, snapshot_id: int) -> dict[str, Any] | None:
    """The changed board as the dashboard shows it: GET /v2/leaderboard?limit=<dashboard limit>."""
    from analytics.selectors import leaderboard_snapshot_get

    return leaderboard_snapshot_get(
        period=period, snapshot_id=snapshot_id, limit=settings.DASHBOARD_LEADERBOARD_LIMIT
    )


def account_snapshot_get(*, account_id: str) -> dict[str, Any] | None:
    """The dashboard's account and positions, in the REST API's shapes: the account's row and its
    book read in one snapshot (config/read_snapshot.py), so a reset or a fill committed between
    the statements does not pair cash from before it with positions from after it."""
    from config.read_snapshot import read_snapshot
    from trading import selectors as trading_selectors
    from trading.api.serializers import AccountSerializer, PositionSerializer
    from trading.models import Account

    with read_snapshot():
        account = Account.objects.select_related("game_player__game").filter(pk=account_id).first()
        if account is None:
            return None
        summary = trading_selectors.account_summary(account=account)
        positions = trading_selectors.portfolio_positions(account=account)
    return {
        "account": AccountSerializer.shape(summary),
        "positions": [PositionSerializer.shape(p) for p in positions],
    }
