"""Which resting orders a price crosses: pure functions, no database, no clock.

The trading services call ``evaluate`` when an order is placed (a stop already crossed fills at
once); the market's tick pipeline keeps a ``TriggerBook`` per process so each batch of prices
touches only the orders whose levels it crossed, not every open order.

Prices are integer units of 1/10,000 $. Buys fill at the ask, sells at the bid; a limit fills at
the quote when the quote is at or better than the limit.

Partial fills (docs/architecture.md, Partial fills): an execution takes at most the size shown at
the touch (the ask's size for a buy, the bid's for a sell); what remains of the order rests and
fills at the following quotes, each of which again offers its own touch size.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import Enum

PERCENT_SCALE = 10_000  # trail_percent units per percent


@dataclass(frozen=True)
class Quote:
    bid: int
    ask: int
    last: int
    # Quantity units (1/10^9 share) shown at the bid and the ask; None: unlimited.
    bid_size: int | None = None
    ask_size: int | None = None


@dataclass(frozen=True)
class RestingOrder:
    id: str
    symbol: str
    side: str  # "buy" | "sell"
    type: str  # "limit" | "stop" | "stop_limit" | "trailing_stop" (| "market")
    limit: int | None = None
    stop: int | None = None
    trail_price: int | None = None
    trail_percent: int | None = None
    water_mark: int | None = None
    stop_triggered: bool = False
    # What is left to fill, in quantity units; None: the whole order, whatever the touch shows.
    qty: int | None = None


class Action(Enum):
    FILL = "fill"  # execute now at `price`
    TRIGGER = "trigger"  # a stop_limit's stop crossed: it now rests as a limit order
    TRACK = "track"  # a trailing stop's water mark moved to `water_mark`


@dataclass(frozen=True)
class Decision:
    order_id: str
    action: Action
    price: int | None = None
    water_mark: int | None = None
    # A FILL's quantity units: at most the touch size; None: all that is left.
    qty: int | None = None


def fill_price(side: str, quote: Quote) -> int:
    return quote.ask if side == "buy" else quote.bid


def touch_size(side: str, quote: Quote) -> int | None:
    """What the quote offers a buy (the ask's size) or a sell (the bid's); None: unlimited."""
    return quote.ask_size if side == "buy" else quote.bid_size


def fill_qty(side: str, qty: int | None, quote: Quote) -> int | None:
    """How much of ``qty`` one execution at this quote takes: all of it up to the touch size."""
    size = touch_size(side, quote)
    if qty is None or size is None:
        return qty
    return min(qty, size)


def _fill(order: RestingOrder, quote: Quote, water_mark: int | None = None) -> Decision | None:
    qty = fill_qty(order.side, order.qty, quote)
    if qty is not None and qty <= 0:
        return None  # nothing shown at the touch: the order waits for the next quote
    return Decision(order.id, Action.FILL, fill_price(order.side, quote), water_mark=water_mark, qty=qty)


def limit_marketable(side: str, limit: int, quote: Quote) -> bool:
    return quote.ask <= limit if side == "buy" else quote.bid >= limit


def stop_crossed(side: str, stop: int, quote: Quote) -> bool:
    # A buy stop protects against a rise, a sell stop against a fall; the last trade decides.
    return quote.last >= stop if side == "buy" else quote.last <= stop


def trailing_stop_level(order: RestingOrder, water_mark: int) -> int:
    return trailing_stop_price(
        side=order.side,
        trail_price=order.trail_price,
        trail_percent=order.trail_percent,
        water_mark=water_mark,
    )


def trailing_stop_price(
    *, side: str, trail_price: int | None, trail_percent: int | None, water_mark: int
) -> int:
    """A trailing stop's current stop price: one trail below the high (sells) or above the low
    (buys) since it was placed. Orders show it as their ``stop_price`` as it trails."""
    if trail_price is not None:
        offset = trail_price
    else:
        assert trail_percent is not None
        offset = water_mark * trail_percent // (100 * PERCENT_SCALE)
    return water_mark - offset if side == "sell" else water_mark + offset


def next_water_mark(order: RestingOrder, quote: Quote) -> int:
    if order.water_mark is None:
        return quote.last
    return max(order.water_mark, quote.last) if order.side == "sell" else min(order.water_mark, quote.last)


def evaluate(order: RestingOrder, quote: Quote) -> Decision | None:
    """What one quote does to one resting order, or None when nothing changes."""
    if order.type == "market":
        return _fill(order, quote)
    if order.type == "limit" or (order.type == "stop_limit" and order.stop_triggered):
        assert order.limit is not None
        if limit_marketable(order.side, order.limit, quote):
            return _fill(order, quote)
        return None
    if order.type == "stop":
        assert order.stop is not None
        if stop_crossed(order.side, order.stop, quote):
            return _fill(order, quote)
        return None
    if order.type == "stop_limit":
        assert order.stop is not None and order.limit is not None
        if not stop_crossed(order.side, order.stop, quote):
            return None
        if limit_marketable(order.side, order.limit, quote):
            return _fill(order, quote) or Decision(order.id, Action.TRIGGER)
        return Decision(order.id, Action.TRIGGER)
    if order.type == "trailing_stop":
        mark = next_water_mark(order, quote)
        if stop_crossed(order.side, trailing_stop_level(order, mark), quote):
            return _fill(order, quote, water_mark=mark) or Decision(order.id, Action.TRACK, water_mark=mark)
        if mark != order.water_mark:
            return Decision(order.id, Action.TRACK, water_mark=mark)
        return None
    raise ValueError(f"unknown order type {order.type!r}")


def after_partial_fill(order: RestingOrder, leaves: int) -> RestingOrder:
    """What rests of an order once part of it filled: ``leaves`` quantity units. A stop or a
    trailing stop fired, so its rest is a market order; a stop_limit's rest is a limit."""
    if order.type in ("stop", "trailing_stop"):
        return replace(order, type="market", qty=leaves)
    if order.type == "stop_limit":
        return replace(order, stop_triggered=True, qty=leaves)
    return replace(order, qty=leaves)


def triggered(orders: Iterable[RestingOrder], quotes: Mapping[str, Quote]) -> list[Decision]:
    """Evaluate every order against its symbol's quote (the plain path, used for small sets)."""
    decisions = []
    for order in orders:
        quote = quotes.get(order.symbol)
        if quote is not None and (decision := evaluate(order, quote)) is not None:
            decisions.append(decision)
    return decisions


class TriggerBook:
    """Resting orders of many symbols, indexed by the price level that would trigger them.

    Per symbol, four sorted level lists answer "which orders does this quote cross" with a
    bisect: buy limits fill when the ask falls to their level, sell limits when the bid rises to
    it, buy stops when the last trade rises to it, sell stops when it falls to it. Trailing stops
    move their level with every price, so they are kept apart and evaluated one by one, and so are
    market orders (the rest of a partially filled one), which every quote of their symbol fills.
    """

    def __init__(self) -> None:
        self._orders: dict[str, RestingOrder] = {}
        # symbol -> kind -> sorted [(level, order_id)]
        self._levels: dict[str, dict[str, list[tuple[int, str]]]] = {}
        self._trailing: dict[str, set[str]] = {}
        # symbol -> market order ids, oldest first (a dict keeps insertion order)
        self._market: dict[str, dict[str, None]] = {}

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def get(self, order_id: str) -> RestingOrder | None:
        return self._orders.get(order_id)

    @staticmethod
    def _level(order: RestingOrder) -> tuple[str, int] | None:
        if order.type == "limit" or (order.type == "stop_limit" and order.stop_triggered):
            assert order.limit is not None
            return f"{order.side}_limit", order.limit
        if order.type in ("stop", "stop_limit"):
            assert order.stop is not None
            return f"{order.side}_stop", order.stop
        return None

    def add(self, order: RestingOrder) -> None:
        self.remove(order.id)
        self._orders[order.id] = order
        if order.type == "trailing_stop":
            self._trailing.setdefault(order.symbol, set()).add(order.id)
            return
        if order.type == "market":
            self._market.setdefault(order.symbol, {})[order.id] = None
            return
        level = self._level(order)
        if level is None:
            raise ValueError(f"order type {order.type!r} does not rest")
        kind, price = level
        bisect.insort(self._levels.setdefault(order.symbol, {}).setdefault(kind, []), (price, order.id))

    def remove(self, order_id: str) -> RestingOrder | None:
        order = self._orders.pop(order_id, None)
        if order is None:
            return None
        if order.type == "trailing_stop":
            self._trailing.get(order.symbol, set()).discard(order_id)
            return order
        if order.type == "market":
            self._market.get(order.symbol, {}).pop(order_id, None)
            return order
        level = self._level(order)
        if level is not None:
            kind, price = level
            levels = self._levels[order.symbol][kind]
            index = bisect.bisect_left(levels, (price, order_id))
            if index < len(levels) and levels[index] == (price, order_id):
                levels.pop(index)
        return order

    def _crossed_ids(self, symbol: str, quote: Quote) -> list[str]:
        kinds = self._levels.get(symbol)
        if not kinds:
            return []
        ids: list[str] = []

        def price(level: tuple[int, str]) -> int:
            return level[0]

        # Bisect on the price alone, so no order id can fall outside a sentinel's range.
        buy_limits = kinds.get("buy_limit", [])  # marketable: level at or above the ask
        ids += [oid for _, oid in buy_limits[bisect.bisect_left(buy_limits, quote.ask, key=price) :]]
        sell_limits = kinds.get("sell_limit", [])  # marketable: level at or below the bid
        ids += [oid for _, oid in sell_limits[: bisect.bisect_right(sell_limits, quote.bid, key=price)]]
        buy_stops = kinds.get("buy_stop", [])  # crossed: last trade at or above the level
        ids += [oid for _, oid in buy_stops[: bisect.bisect_right(buy_stops, quote.last, key=price)]]
        sell_stops = kinds.get("sell_stop", [])  # crossed: last trade at or below the level
        ids += [oid for _, oid in sell_stops[bisect.bisect_left(sell_stops, quote.last, key=price) :]]
        return ids

    def crossed(self, quotes: Mapping[str, Quote]) -> list[Decision]:
        """Decisions for every order these quotes cross; the book itself is not changed."""
        decisions: list[Decision] = []
        for symbol, quote in quotes.items():
            candidates = (
                list(self._market.get(symbol, ()))
                + self._crossed_ids(symbol, quote)
                + sorted(self._trailing.get(symbol, ()))
            )
            for order_id in candidates:
                decision = evaluate(self._orders[order_id], quote)
                if decision is not None:
                    decisions.append(decision)
        return decisions

    def apply(self, decision: Decision) -> None:
        """Record what happened: filled orders leave, partially filled ones rest with what is left,
        triggered and tracked ones move."""
        order = self._orders.get(decision.order_id)
        if order is None:
            return
        if decision.action is Action.FILL:
            if decision.qty is not None and order.qty is not None and decision.qty < order.qty:
                self.add(after_partial_fill(order, order.qty - decision.qty))
            else:
                self.remove(order.id)
        elif decision.action is Action.TRIGGER:
            self.add(replace(order, stop_triggered=True))
        elif decision.action is Action.TRACK:
            self._orders[order.id] = replace(order, water_mark=decision.water_mark)
