"""The market's resting-order engine: fills, triggers and trailing marks from committed prices.

A ``matching.TriggerBook`` holds every open non-market order, rebuilt from the database at start
and kept current by the order events web processes publish on ``ORDER_EVENTS_CHANNEL``, so a
window only touches the orders its prices crossed, never a scan of all open orders. Every change
goes through the trading services, whose status-conditional updates give a cancel racing a fill
exactly one outcome; the book only follows what the services did.

Threads: a subscriber thread only queues raw events; the book is read and changed by the one
thread that calls ``process_events`` and ``on_window`` (the tick writer, after each commit).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from config.redis_pools import redis_client
from realtime.wire import WireTick
from realtime.writer import DATABASE_UNAVAILABLE
from trading import calendar, matching, selectors, services
from trading.models import (
    AUCTION_TIME_IN_FORCE,
    OPEN_ORDER_STATUSES,
    Order,
    OrderStatus,
    OrderType,
    TimeInForce,
)
from trading.quotes import latest_ticks_from_db
from trading.units import QTY_SCALE

logger = logging.getLogger(__name__)

EVENT_QUEUE_MAX = 10_000


def tick_quote(tick: WireTick) -> matching.Quote:
    """A tick as the matching code sees it, its sizes (shares) in quantity units."""
    return matching.Quote(
        bid=tick.bid,
        ask=tick.ask,
        last=tick.price,
        bid_size=tick.bid_size * QTY_SCALE,
        ask_size=tick.ask_size * QTY_SCALE,
    )


@dataclass(frozen=True)
class Outcome:
    """What the engine did for one decision (for logs and tests)."""

    order_id: str
    action: matching.Action
    price: int | None
    tick_seq: int
    filled: bool


class OrderEventSubscriber:
    """Reads order events from Redis pub/sub into a bounded queue, reconnecting on errors.

    A lost connection or an overflowing queue means events may have been missed, so it raises
    ``needs_rebuild`` and the engine reloads the book from the database.
    """

    def __init__(self, *, channel: str | None = None) -> None:
        self.channel = channel or settings.ORDER_EVENTS_CHANNEL
        self.events: queue.Queue[dict[str, object]] = queue.Queue(maxsize=EVENT_QUEUE_MAX)
        self.needs_rebuild = threading.Event()
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="order-events", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        if not self._subscribed.wait(timeout):
            raise RuntimeError(f"could not subscribe to {self.channel}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                if not first:
                    self.needs_rebuild.set()
                first = False
                self._subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        event = json.loads(message["data"])
                    except (TypeError, ValueError):
                        logger.warning("ignoring a malformed order event")
                        continue
                    try:
                        self.events.put_nowait(event)
                    except queue.Full:
                        self.needs_rebuild.set()
            except redis.RedisError:
                logger.warning("order events: Redis connection lost; resubscribing")
                self._stop.wait(1.0)
            finally:
                pubsub.close()


class TriggerEngine:
    def __init__(
        self,
        *,
        subscriber: OrderEventSubscriber | None = None,
        clock: Callable[[], dt.datetime] = timezone.now,
    ) -> None:
        self.book = matching.TriggerBook()
        self.subscriber = subscriber or OrderEventSubscriber()
        self._clock = clock
        self._next_expiry: dt.datetime | None = None
        # MARKET_HOURS=xnys: the session in progress or next, whether its opening auction ran, and
        # the opg orders still waiting for their symbol's first trade of the session.
        self._session: calendar.Session | None = None
        self._opened = False
        self._opening: dict[str, list[str]] = {}
        self._routed_market: dict[str, list[str]] = {}
        # A routing pass failed after committing some orders: reload the routed market orders.
        self._market_stale = False
        # The newest quote seen per symbol, so an order added from an event is checked against
        # the price at once instead of waiting for that symbol's next trade.
        self._latest: dict[str, WireTick] = {}

    def start(self) -> None:
        """Subscribe first, then load: an order placed in between arrives as an event, not lost."""
        self.subscriber.start()
        self.rebuild()
        self.expire_day_orders()

    def stop(self) -> None:
        self.subscriber.stop()

    def rebuild(self) -> None:
        self.subscriber.needs_rebuild.clear()
        book = matching.TriggerBook()
        # Accepted orders join when the open routes them, held legs when their entry fills (their
        # "new" events); a market order rests only once partially filled (the rest fills at the
        # following quotes).
        orders = (
            Order.objects.filter(status__in=OPEN_ORDER_STATUSES)
            .exclude(status__in=(OrderStatus.ACCEPTED, OrderStatus.HELD))
            .exclude(type=OrderType.MARKET, filled_qty=0)
            .exclude(time_in_force__in=AUCTION_TIME_IN_FORCE)
            .select_related("asset")
        )
        try:
            for order in orders.iterator(chunk_size=2_000):
                book.add(services.order_as_resting(order))
        except BaseException:
            self.subscriber.needs_rebuild.set()  # still owed: tried again at the next window
            raise
        self.book = book
        logger.info("trigger book: %d resting orders", len(book))

    def expire_day_orders(self) -> int:
        """Expire day orders once the trading day boundary has passed (and at start)."""
        now = self._clock()
        if self._next_expiry is not None and now < self._next_expiry:
            return 0
        expired = services.orders_expire(now=now)
        self._next_expiry = calendar.next_day_boundary(now)
        if expired:
            logger.info("expired %d day orders", expired)
        return expired

    def process_events(self) -> set[str]:
        """Apply queued order events to the book; returns the symbols of orders added."""
        if self.subscriber.needs_rebuild.is_set():
            self._drain()
            self.rebuild()
            return set(self._latest)
        added: set[str] = set()
        new_ids: list[str] = []
        while True:
            try:
                event = self.subscriber.events.get_nowait()
            except queue.Empty:
                break
            order_id = str(event.get("order_id", ""))
            if event.get("event") in ("new", "partial_fill"):
                # Loaded as the database has it: a partially filled order rests with what is left.
                if order_id not in new_ids:
                    new_ids.append(order_id)
            else:
                # fill, canceled, expired, replaced, rejected: the order no longer rests.
                if order_id in new_ids:
                    new_ids.remove(order_id)
                self.book.remove(order_id)
        if new_ids:
            # One query for every new order; those closed meanwhile (filled on placement) are skipped.
            orders = (
                Order.objects.filter(pk__in=new_ids, status__in=OPEN_ORDER_STATUSES)
                .exclude(status=OrderStatus.HELD)
                .exclude(type=OrderType.MARKET, filled_qty=0)
                .exclude(time_in_force__in=AUCTION_TIME_IN_FORCE)
                .select_related("asset")
            )
            for order in orders:
                resting = services.order_as_resting(order)
                self.book.add(resting)
                added.add(resting.symbol)
        return added

    def _drain(self) -> None:
        while True:
            try:
                self.subscriber.events.get_nowait()
            except queue.Empty:
                return

    def on_window(self, ticks: Sequence[WireTick]) -> list[Outcome]:
        """Act on one committed window's prices: fill, trigger or track what they cross."""
        try:
            return self._on_window(ticks)
        except DATABASE_UNAVAILABLE:
            # Order events taken from the queue may be lost with this window: reload the book.
            self._database_lost()
            raise

    def _database_lost(self) -> None:
        """The database went away mid-window: the book is reloaded from it at the next window
        (orders whose fill failed are still open there), on a new connection."""
        self.subscriber.needs_rebuild.set()
        # A routed market order whose fill or lookup failed is open there too: the next routing
        # pass reloads them.
        self._market_stale = True
        with contextlib.suppress(DatabaseError):
            connection.close()

    def _on_window(self, ticks: Sequence[WireTick]) -> list[Outcome]:
        added = self.process_events()
        # Auctions first: the closing auction executes cls orders before the close expires them.
        outcomes = self._run_auctions(ticks)
        self.expire_day_orders()
        # Each symbol's ticks in order: a price that crossed a level and came back within one
        # window still fills, as it would have tick by tick.
        rounds: list[dict[str, WireTick]] = []
        counts: dict[str, int] = {}
        for tick in ticks:
            index = counts.get(tick.symbol, 0)
            counts[tick.symbol] = index + 1
            if index == len(rounds):
                rounds.append({})
            rounds[index][tick.symbol] = tick
        for symbol in added:
            # Newly added orders meet the newest price even if their symbol did not trade now.
            if symbol not in counts and symbol in self._latest:
                if not rounds:
                    rounds.append({})
                rounds[0][symbol] = self._latest[symbol]
        if len(self.book):
            # Trailing stops' marks move in the book tick by tick and reach the database once per
            # window (one UPDATE), not once per tick and order.
            marks: dict[str, int] = {}
            for by_symbol in rounds:
                for tick in by_symbol.values():
                    quote = tick_quote(tick)
                    for decision in self.book.crossed({tick.symbol: quote}):
                        outcomes.append(self._act(decision, tick, marks))
            self._store_marks(marks)
        self.margin_calls(ticks)
        return outcomes

    def margin_calls(self, ticks: Sequence[WireTick]) -> list[Order]:
        """Buy back the shorts of every account short in a symbol that traded whose equity is
        now below the maintenance requirement (trading/margin.py), valued at the window's last
        trades: the broker's margin call, after the window's resting orders acted."""
        if not ticks:
            return []
        prices = {tick.symbol: tick.price for tick in ticks}
        covers: list[Order] = []
        try:
            standings = selectors.margin_standings_get(symbols=prices, prices=prices)
        except Exception as error:
            logger.exception("margin calls failed")
            if isinstance(error, DATABASE_UNAVAILABLE):
                self._database_lost()
            return covers
        for standing in standings:
            if not standing.below_maintenance:
                continue
            try:
                placed = services.account_margin_call(
                    account_id=standing.account_id, prices=prices, now=self._clock()
                )
            except Exception as error:
                # One account's failure never skips the others; its shorts stay open and the
                # next window checks them again.
                logger.exception("margin call failed for account %s", standing.account_id)
                if isinstance(error, DATABASE_UNAVAILABLE):
                    self._database_lost()
                    return covers
                continue
            if placed:
                logger.warning(
                    "margin call: account %s below maintenance, %d shorts bought back",
                    standing.account_id,
                    len(placed),
                )
            covers.extend(placed)
        return covers

    def _run_auctions(self, ticks: Sequence[WireTick]) -> list[Outcome]:
        """opg orders execute at their symbol's first trade of the session, cls orders at its
        last (MARKET_HOURS=xnys; README, Order rules). A market order fills at that price; a
        limit fills there if the price satisfies it, else it is canceled."""
        first: dict[str, WireTick] = {}
        for tick in ticks:
            first.setdefault(tick.symbol, tick)
            self._latest[tick.symbol] = tick
        if calendar.always_open():
            return []
        now = self._clock()
        if self._session is None:
            self._routed_market = self._unfilled_market_orders()
            self._session = calendar.session_at_or_after(now)
            self._opened = False
        outcomes: list[Outcome] = []
        session = self._session
        if now >= session.open and (now < session.close or not self._opened):
            if not self._opened:
                self._opening = self._auction_orders(TimeInForce.OPG, session)
            # Routed on every window of the session, not once: an order held with a "now" from just
            # before the open can commit after a pass, and a pass that failed leaves the rest
            # accepted. The session counts as opened only once a pass succeeded.
            self._route_accepted(now)
            self._opened = True
        for symbol in [symbol for symbol in self._routed_market if symbol in first]:
            tick = first[symbol]
            quote = tick_quote(tick)
            pending = self._routed_market[symbol]
            while pending:
                try:
                    resting = self._market_order(pending[0])
                except Exception as error:
                    # Kept, with the symbol's others: they fill at its next trade.
                    logger.exception("routed market order %s: lookup failed", pending[0])
                    if isinstance(error, DATABASE_UNAVAILABLE):
                        self._database_lost()
                    break
                pending.pop(0)
                if resting is None:
                    continue  # deleted with its account
                decision = matching.evaluate(resting, quote)
                if decision is None:  # nothing shown at the touch: it waits in the book
                    self.book.add(resting)
                    continue
                outcomes.append(self._act(decision, tick, {}))
            if not pending:
                del self._routed_market[symbol]
        for symbol in [symbol for symbol in self._opening if symbol in first]:
            tick = first[symbol]
            for order_id in self._opening.pop(symbol):
                outcomes.append(self._auction(order_id, tick.price, tick.seq, now))
        if now >= session.close:
            closing = self._auction_orders(TimeInForce.CLS, session)
            stored = latest_ticks_from_db(symbols=[s for s in closing if s not in self._latest])
            for symbol, order_ids in closing.items():
                last = self._latest.get(symbol) or stored.get(symbol)
                if last is None:
                    continue  # never traded: expired with the session
                for order_id in order_ids:
                    outcomes.append(self._auction(order_id, last.price, last.seq, now))
            # opg orders of symbols that did not trade expire with the session.
            self._opening = {}
            self._session = calendar.session_at_or_after(now)
            self._opened = False
        return outcomes

    def _route_accepted(self, now: dt.datetime) -> None:
        """Route the orders accepted while the session was closed: the others rest in the book
        (their "new" events add them), market orders fill at their symbol's next trade, at its ask
        or bid. Each order is routed in its own transaction, so a pass that fails midway leaves
        routed market orders that only the database knows: the next pass reloads them from it."""
        if self._market_stale:
            self._routed_market = self._unfilled_market_orders()
            self._market_stale = False
        self._market_stale = True  # until this pass returns
        routed = services.orders_route_accepted(now=now)
        self._market_stale = False
        for order in routed:
            if order.type == OrderType.MARKET:
                self._routed_market.setdefault(order.asset.symbol, []).append(str(order.pk))

    @staticmethod
    def _unfilled_market_orders() -> dict[str, list[str]]:
        """Routed market orders a previous run left unfilled (it stopped at the open); partially
        filled ones rest in the book."""
        orders = (
            Order.objects.filter(status__in=OPEN_ORDER_STATUSES, type=OrderType.MARKET, filled_qty=0)
            .exclude(status=OrderStatus.ACCEPTED)
            .exclude(time_in_force__in=AUCTION_TIME_IN_FORCE)
            .order_by("submitted_at", "id")
            .values_list("asset__symbol", "id")
        )
        by_symbol: dict[str, list[str]] = {}
        for symbol, order_id in orders:
            by_symbol.setdefault(symbol, []).append(str(order_id))
        return by_symbol

    @staticmethod
    def _market_order(order_id: str) -> matching.RestingOrder | None:
        order = Order.objects.select_related("asset").filter(pk=order_id).first()
        return None if order is None else services.order_as_resting(order)

    @staticmethod
    def _auction_orders(time_in_force: str, session: calendar.Session) -> dict[str, list[str]]:
        orders = (
            Order.objects.filter(
                status__in=OPEN_ORDER_STATUSES, time_in_force=time_in_force, expires_at=session.close
            )
            .order_by("submitted_at", "id")
            .values_list("asset__symbol", "id")
        )
        by_symbol: dict[str, list[str]] = {}
        for symbol, order_id in orders:
            by_symbol.setdefault(symbol, []).append(str(order_id))
        return by_symbol

    def _auction(self, order_id: str, price: int, seq: int, now: dt.datetime) -> Outcome:
        filled = False
        try:
            order = services.order_auction_execute(
                order_id=order_id, price_units=price, tick_seq=seq, now=now
            )
            filled = order is not None and order.status == OrderStatus.FILLED
        except Exception as error:
            # Still open in the database: it expires with its session.
            logger.exception("auction order %s failed", order_id)
            if isinstance(error, DATABASE_UNAVAILABLE):
                self._database_lost()
        return Outcome(
            order_id=order_id, action=matching.Action.FILL, price=price, tick_seq=seq, filled=filled
        )

    def _store_marks(self, marks: dict[str, int]) -> None:
        try:
            services.orders_track_water_marks(marks=marks)
        except Exception as error:
            # The book is ahead of the database: reload it, so both start again from the stored marks.
            logger.exception("trailing stops' water marks not stored")
            self.subscriber.needs_rebuild.set()
            if isinstance(error, DATABASE_UNAVAILABLE):
                self._database_lost()

    def _act(self, decision: matching.Decision, tick: WireTick, marks: dict[str, int]) -> Outcome:
        filled = False
        now = self._clock()
        try:
            if decision.action is matching.Action.FILL:
                assert decision.price is not None
                marks.pop(decision.order_id, None)  # the fill stores the mark it fired from
                order = services.order_fill(
                    order_id=decision.order_id,
                    price_units=decision.price,
                    qty=decision.qty,
                    tick_seq=tick.seq,
                    water_mark_units=decision.water_mark,
                    now=now,
                )
                # None: a cancel won the race; canceled: the account could no longer pay.
                filled = order is not None and order.status == OrderStatus.FILLED
            elif decision.action is matching.Action.TRIGGER:
                services.order_mark_triggered(order_id=decision.order_id, now=now)
            elif decision.action is matching.Action.TRACK:
                assert decision.water_mark is not None
                marks[decision.order_id] = decision.water_mark
        except Exception as error:
            # The order stays open in the database; the next rebuild picks it up again.
            logger.exception("order %s: %s failed", decision.order_id, decision.action.value)
            self.book.remove(decision.order_id)
            if isinstance(error, DATABASE_UNAVAILABLE):
                self._database_lost()
        else:
            self.book.apply(decision)
        return Outcome(
            order_id=decision.order_id,
            action=decision.action,
            price=decision.price,
            tick_seq=tick.seq,
            filled=filled,
        )
