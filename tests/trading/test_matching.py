"""Order-trigger logic: ``matching.evaluate`` and the indexed ``TriggerBook`` (pure, no database).

The book is an index over the plain path: for any resting orders and any quotes it must decide
exactly what ``matching.triggered`` decides, however orders were added, removed and applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from trading import matching
from trading.matching import (
    PERCENT_SCALE,
    Action,
    Decision,
    Quote,
    RestingOrder,
    TriggerBook,
    evaluate,
    trailing_stop_level,
    triggered,
)

SYMBOLS = ("AAA", "BBB", "CCC")
# A narrow band of prices so that levels, quotes and ties collide often.
prices = st.integers(min_value=95, max_value=105)


def order_ids() -> st.SearchStrategy[str]:
    # Real ids are UUID strings; short hex-ish ids keep examples readable.
    return st.text("0123456789abcdef-", min_size=1, max_size=8)


@st.composite
def resting_orders(draw: st.DrawFn, order_id: str | None = None) -> RestingOrder:
    # A market order rests once partially filled (the rest fills at the following quotes).
    kind = draw(st.sampled_from(["limit", "stop", "stop_limit", "trailing_stop", "market"]))
    fields: dict[str, object] = {"qty": draw(st.none() | st.integers(1, 6))}
    if kind in ("limit", "stop_limit"):
        fields["limit"] = draw(prices)
    if kind in ("stop", "stop_limit"):
        fields["stop"] = draw(prices)
    if kind == "stop_limit":
        fields["stop_triggered"] = draw(st.booleans())
    if kind == "trailing_stop":
        if draw(st.booleans()):
            fields["trail_price"] = draw(st.integers(1, 6))
        else:
            # 0.5 % to 8 % of a price near 100: offsets of 0 to 8 units.
            fields["trail_percent"] = draw(st.integers(PERCENT_SCALE // 2, 8 * PERCENT_SCALE))
        fields["water_mark"] = draw(st.none() | prices)
    return RestingOrder(
        id=order_id if order_id is not None else draw(order_ids()),
        symbol=draw(st.sampled_from(SYMBOLS)),
        side=draw(st.sampled_from(["buy", "sell"])),
        type=kind,
        **fields,  # type: ignore[arg-type]
    )


@st.composite
def quotes(draw: st.DrawFn) -> Quote:
    bid = draw(prices)
    ask = bid + draw(st.integers(0, 3))
    # The last trade may lie outside the current quote: quotes move between trades.
    sizes = st.none() | st.integers(0, 4)
    return Quote(
        bid=bid, ask=ask, last=draw(st.integers(bid - 2, ask + 2)), bid_size=draw(sizes), ask_size=draw(sizes)
    )


quote_maps = st.dictionaries(st.sampled_from([*SYMBOLS, "ZZZ"]), quotes(), max_size=4)


@st.composite
def order_books(draw: st.DrawFn) -> list[RestingOrder]:
    ids = draw(st.lists(order_ids(), unique=True, max_size=25))
    return [draw(resting_orders(order_id=order_id)) for order_id in ids]


def book_of(orders: Iterable[RestingOrder]) -> TriggerBook:
    book = TriggerBook()
    for order in orders:
        book.add(order)
    return book


def applied(order: RestingOrder, decision: Decision) -> RestingOrder | None:
    """What the market pipeline does to an order after a decision (None: it left the book)."""
    if decision.action is Action.FILL:
        if decision.qty is not None and order.qty is not None and decision.qty < order.qty:
            return matching.after_partial_fill(order, order.qty - decision.qty)
        return None
    if decision.action is Action.TRIGGER:
        return RestingOrder(**{**order.__dict__, "stop_triggered": True})
    return RestingOrder(**{**order.__dict__, "water_mark": decision.water_mark})


# --- evaluate: limits -----------------------------------------------------------------------------

QUOTE = Quote(bid=9_990, ask=10_010, last=10_000)


def order(**fields: object) -> RestingOrder:
    return RestingOrder(**{"id": "o1", "symbol": "AAA", **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("limit", "price"),
    [(10_010, 10_010), (10_500, 10_010), (10_009, None), (9_000, None)],
)
def test_limit_buy_fills_at_the_ask_when_the_ask_is_at_or_below_the_limit(
    limit: int, price: int | None
) -> None:
    decision = evaluate(order(side="buy", type="limit", limit=limit), QUOTE)
    if price is None:
        assert decision is None
    else:
        # At the ask, not at the (worse) limit.
        assert decision == Decision("o1", Action.FILL, price)


@pytest.mark.parametrize(
    ("limit", "price"),
    [(9_990, 9_990), (9_000, 9_990), (9_991, None), (10_000, None)],
)
def test_limit_sell_fills_at_the_bid_when_the_bid_is_at_or_above_the_limit(
    limit: int, price: int | None
) -> None:
    decision = evaluate(order(side="sell", type="limit", limit=limit), QUOTE)
    assert decision == (None if price is None else Decision("o1", Action.FILL, price))


@given(side=st.sampled_from(["buy", "sell"]), limit=prices, quote=quotes())
def test_a_limit_fills_exactly_when_marketable_and_never_worse_than_the_limit(
    side: str, limit: int, quote: Quote
) -> None:
    decision = evaluate(order(side=side, type="limit", limit=limit), quote)
    marketable = quote.ask <= limit if side == "buy" else quote.bid >= limit
    assert (decision is not None) == marketable
    if decision is not None:
        assert decision.action is Action.FILL
        assert decision.price == (quote.ask if side == "buy" else quote.bid)
        assert decision.price is not None
        assert decision.price <= limit if side == "buy" else decision.price >= limit


def test_market_orders_fill_at_the_quote() -> None:
    assert evaluate(order(side="buy", type="market"), QUOTE) == Decision("o1", Action.FILL, 10_010)
    assert evaluate(order(side="sell", type="market"), QUOTE) == Decision("o1", Action.FILL, 9_990)


def test_unknown_order_type_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown order type"):
        evaluate(order(side="buy", type="bracket"), QUOTE)


# --- evaluate: stops ------------------------------------------------------------------------------


def test_buy_stop_triggers_on_the_last_trade_not_the_ask() -> None:
    stop = order(side="buy", type="stop", stop=10_005)
    # The ask is above the stop but no trade has happened there yet.
    assert evaluate(stop, Quote(bid=9_995, ask=10_015, last=10_004)) is None
    assert evaluate(stop, Quote(bid=9_995, ask=10_015, last=10_005)) == Decision("o1", Action.FILL, 10_015)
    assert evaluate(stop, Quote(bid=9_995, ask=10_015, last=10_300)) == Decision("o1", Action.FILL, 10_015)


def test_sell_stop_triggers_on_the_last_trade_not_the_bid() -> None:
    stop = order(side="sell", type="stop", stop=9_995)
    assert evaluate(stop, Quote(bid=9_980, ask=10_000, last=9_996)) is None
    assert evaluate(stop, Quote(bid=9_980, ask=10_000, last=9_995)) == Decision("o1", Action.FILL, 9_980)


def test_stop_limit_triggers_then_rests_as_a_limit() -> None:
    stop_limit = order(side="buy", type="stop_limit", stop=10_050, limit=10_060)
    assert evaluate(stop_limit, Quote(bid=10_000, ask=10_040, last=10_049)) is None
    # Stop crossed but the ask is above the limit: the order becomes a resting limit.
    decision = evaluate(stop_limit, Quote(bid=10_060, ask=10_080, last=10_070))
    assert decision == Decision("o1", Action.TRIGGER)

    book = TriggerBook()
    book.add(stop_limit)
    assert book.crossed({"AAA": Quote(bid=10_060, ask=10_080, last=10_070)}) == [decision]
    book.apply(decision)
    # Now only the limit matters: the last trade falls back under the stop, the ask reaches the limit.
    falls_back = Quote(bid=10_000, ask=10_060, last=10_010)
    assert book.crossed({"AAA": falls_back}) == [Decision("o1", Action.FILL, 10_060)]
    assert book.crossed({"AAA": Quote(bid=10_000, ask=10_061, last=10_010)}) == []
    triggered_order = RestingOrder(**{**stop_limit.__dict__, "stop_triggered": True})
    assert evaluate(triggered_order, falls_back) == Decision("o1", Action.FILL, 10_060)


def test_stop_limit_fills_at_once_when_the_limit_is_marketable_as_the_stop_crosses() -> None:
    stop_limit = order(side="sell", type="stop_limit", stop=9_950, limit=9_900)
    assert evaluate(stop_limit, Quote(bid=9_920, ask=9_940, last=9_930)) == Decision("o1", Action.FILL, 9_920)
    assert evaluate(stop_limit, Quote(bid=9_890, ask=9_940, last=9_930)) == Decision("o1", Action.TRIGGER)


# --- evaluate: trailing stops ----------------------------------------------------------------------


def run_trailing(
    start: RestingOrder, lasts: Iterable[int], spread: int = 10
) -> tuple[RestingOrder, list[Decision]]:
    current, decisions = start, []
    for last in lasts:
        decision = evaluate(current, Quote(bid=last - spread, ask=last + spread, last=last))
        if decision is None:
            continue
        decisions.append(decision)
        if decision.action is Action.FILL:
            break
        assert decision.action is Action.TRACK
        current = RestingOrder(**{**current.__dict__, "water_mark": decision.water_mark})
    return current, decisions


def test_trailing_sell_by_price_tracks_the_high_and_fires_a_trail_below_it() -> None:
    start = order(side="sell", type="trailing_stop", trail_price=200)
    current, decisions = run_trailing(start, [10_000, 10_500, 10_301, 10_400])
    assert [d.water_mark for d in decisions] == [10_000, 10_500]
    assert current.water_mark == 10_500
    assert trailing_stop_level(current, 10_500) == 10_300
    # 10_300 is exactly a trail below the high: it fires, at the bid.
    _, decisions = run_trailing(start, [10_000, 10_500, 10_301, 10_300, 10_900])
    assert decisions[-1] == Decision("o1", Action.FILL, 10_290, water_mark=10_500)


def test_trailing_buy_by_price_tracks_the_low_and_fires_a_trail_above_it() -> None:
    start = order(side="buy", type="trailing_stop", trail_price=150, water_mark=10_000)
    _, decisions = run_trailing(start, [9_900, 9_800, 9_949, 9_950])
    assert decisions == [
        Decision("o1", Action.TRACK, water_mark=9_900),
        Decision("o1", Action.TRACK, water_mark=9_800),
        Decision("o1", Action.FILL, 9_960, water_mark=9_800),
    ]


def test_trailing_by_percent() -> None:
    # 5 % below a high of 200.00 is 190.00.
    sell = order(side="sell", type="trailing_stop", trail_percent=5 * PERCENT_SCALE, water_mark=1_800_000)
    _, decisions = run_trailing(sell, [2_000_000, 1_900_001, 1_900_000])
    assert decisions == [
        Decision("o1", Action.TRACK, water_mark=2_000_000),
        Decision("o1", Action.FILL, 1_899_990, water_mark=2_000_000),
    ]
    # 2.5 % above a low of 80.00 is 82.00.
    buy = order(side="buy", type="trailing_stop", trail_percent=25_000, water_mark=1_000_000)
    _, decisions = run_trailing(buy, [800_000, 819_999, 820_000])
    assert decisions[-1] == Decision("o1", Action.FILL, 820_010, water_mark=800_000)
    assert trailing_stop_level(buy, 800_000) == 820_000


@given(
    side=st.sampled_from(["buy", "sell"]),
    trail=st.integers(1, 500),
    lasts=st.lists(st.integers(9_000, 11_000), min_size=1, max_size=40),
)
def test_trailing_stop_fires_at_the_first_trade_a_trail_beyond_the_water_mark(
    side: str, trail: int, lasts: list[int]
) -> None:
    start = order(side=side, type="trailing_stop", trail_price=trail)
    _, decisions = run_trailing(start, lasts)
    expected_fill = None
    for index, last in enumerate(lasts):
        seen = lasts[: index + 1]
        mark = max(seen) if side == "sell" else min(seen)
        if (side == "sell" and last <= mark - trail) or (side == "buy" and last >= mark + trail):
            expected_fill = (index, mark)
            break
    fills = [d for d in decisions if d.action is Action.FILL]
    if expected_fill is None:
        assert fills == []
    else:
        index, mark = expected_fill
        last = lasts[index]
        assert fills == [
            Decision("o1", Action.FILL, last - 10 if side == "sell" else last + 10, water_mark=mark)
        ]


# --- TriggerBook versus the plain path ---------------------------------------------------------------


def as_set(decisions: list[Decision]) -> set[Decision]:
    assert len(set(decisions)) == len(decisions), "an order was decided twice"
    return set(decisions)


@given(orders=order_books(), quote_map=quote_maps)
def test_book_crossed_equals_plain_triggered(orders: list[RestingOrder], quote_map: dict[str, Quote]) -> None:
    book = book_of(orders)
    assert len(book) == len(orders)
    assert as_set(book.crossed(quote_map)) == as_set(triggered(orders, quote_map))


@given(orders=order_books(), quote_map=quote_maps)
def test_crossed_does_not_change_the_book(orders: list[RestingOrder], quote_map: dict[str, Quote]) -> None:
    book = book_of(orders)
    first = book.crossed(quote_map)
    assert book.crossed(quote_map) == first
    assert len(book) == len(orders)


def test_book_refuses_orders_that_do_not_rest() -> None:
    book = TriggerBook()
    with pytest.raises(ValueError, match="does not rest"):
        book.add(order(side="buy", type="bogus"))


def test_remove_and_apply_of_unknown_orders_are_harmless() -> None:
    book = TriggerBook()
    assert book.remove("nope") is None
    book.apply(Decision("nope", Action.FILL, 1))
    assert len(book) == 0
    assert "nope" not in book


def test_triggered_skips_orders_without_a_quote() -> None:
    orders = [
        order(side="buy", type="limit", limit=10_100),
        order(id="o2", symbol="BBB", side="buy", type="limit", limit=1),
    ]
    assert triggered(orders, {"AAA": QUOTE}) == [Decision("o1", Action.FILL, 10_010)]
    assert triggered(orders, {}) == []


class BookMachine(RuleBasedStateMachine):
    """Random adds, re-adds (replacements), removes and applied decisions keep the book equal to a
    plain dict of orders evaluated one by one."""

    def __init__(self) -> None:
        super().__init__()
        self.book = TriggerBook()
        self.model: dict[str, RestingOrder] = {}

    @rule(new=resting_orders(), id_source=st.integers(0, 30))
    def add(self, new: RestingOrder, id_source: int) -> None:
        # Ids drawn from a small pool: re-adding an id replaces that order (order_replace's path).
        resting = RestingOrder(**{**new.__dict__, "id": f"id-{id_source:02d}"})
        self.book.add(resting)
        self.model[resting.id] = resting

    @rule(id_source=st.integers(0, 30))
    def remove(self, id_source: int) -> None:
        order_id = f"id-{id_source:02d}"
        removed = self.book.remove(order_id)
        assert removed == self.model.pop(order_id, None)

    @rule(quote_map=quote_maps, data=st.data())
    def tick(self, quote_map: dict[str, Quote], data: st.DataObject) -> None:
        decisions = self.book.crossed(quote_map)
        assert as_set(decisions) == as_set(triggered(self.model.values(), quote_map))
        # Apply some of them (the others lost a race to a cancel, or are applied later).
        for decision in decisions:
            if data.draw(st.booleans()):
                self.book.apply(decision)
                after = applied(self.model[decision.order_id], decision)
                if after is None:
                    del self.model[decision.order_id]
                else:
                    self.model[decision.order_id] = after

    @invariant()
    def same_orders(self) -> None:
        assert len(self.book) == len(self.model)
        for order_id in self.model:
            assert order_id in self.book

    @invariant()
    def same_decisions_for_probe_quotes(self) -> None:
        for probe in (Quote(95, 95, 95), Quote(100, 101, 100), Quote(105, 108, 110), Quote(90, 92, 89)):
            quote_map = dict.fromkeys(SYMBOLS, probe)
            assert as_set(self.book.crossed(quote_map)) == as_set(triggered(self.model.values(), quote_map))


def test_book_stays_consistent_under_add_remove_apply() -> None:
    run_state_machine_as_test(BookMachine, settings=settings(stateful_step_count=40))


@given(
    side=st.sampled_from(["buy", "sell"]),
    trail_price=st.none() | st.integers(1, 50_000),
    trail_percent=st.integers(1, 99 * matching.PERCENT_SCALE),
    start=st.integers(10_000, 5_000_000),
    moves=st.lists(st.integers(-20_000, 20_000), min_size=1, max_size=40),
)
def test_a_trailing_stops_shown_stop_price_is_the_level_it_fires_at(
    side: str, trail_price: int | None, trail_percent: int, start: int, moves: list[int]
) -> None:
    """Whatever path the price takes, the stop price an order shows (from its stored water mark)
    is where the book fires it: a last trade at it fires, one a unit short of it does not."""
    order = matching.RestingOrder(
        id="t", symbol="X", side=side, type="trailing_stop", trail_price=trail_price,
        trail_percent=None if trail_price is not None else trail_percent, water_mark=start,
    )  # fmt: skip
    last = start
    for move in moves:
        last = max(1, last + move)
        decision = matching.evaluate(order, matching.Quote(bid=last - 1, ask=last + 1, last=last))
        if decision is not None and decision.action is matching.Action.FILL:
            return
        if decision is not None:
            order = dataclasses.replace(order, water_mark=decision.water_mark)
        assert order.water_mark is not None
        shown = matching.trailing_stop_price(
            side=side,
            trail_price=order.trail_price,
            trail_percent=order.trail_percent,
            water_mark=order.water_mark,
        )
        at, short = (shown, shown + 1) if side == "sell" else (shown, shown - 1)
        fired = matching.evaluate(order, matching.Quote(bid=at - 1, ask=at + 1, last=at))
        assert fired is not None and fired.action is matching.Action.FILL
        # A unit short of the stop, where that does not also move the mark (a zero offset).
        if short > 0 and (short <= order.water_mark if side == "sell" else short >= order.water_mark):
            missed = matching.evaluate(order, matching.Quote(bid=short - 1, ask=short + 1, last=short))
            assert missed is None or missed.action is not matching.Action.FILL
