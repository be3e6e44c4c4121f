"""opg and cls orders with real NYSE hours (MARKET_HOURS=xnys): when they are taken, and the
market's trigger engine executing them at the session's first and last trade (README, Order rules)."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError, connection
from pytest_django.fixtures import Settings

from realtime.triggers import TriggerEngine
from tests.builders import shares
from tests.clock import new_york
from tests.realtime.test_triggers import committed_ticks
from trading import calendar, services
from trading.errors import InvalidRequest
from trading.models import Account, Asset, Fill, Order, OrderStatus, Position
from trading.units import price_to_units

pytestmark = pytest.mark.filterwarnings("ignore:.*values returning an ndarray that drops timezone")

SATURDAY = new_york(2025, 6, 7, 12, 0)
MONDAY_OPEN = new_york(2025, 6, 9, 9, 30)
MONDAY_CLOSE = new_york(2025, 6, 9, 16, 0)


@pytest.fixture
def xnys(settings: Settings) -> None:
    settings.MARKET_HOURS = "xnys"
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0


@pytest.mark.usefixtures("xnys")
@pytest.mark.parametrize(
    ("tif", "moment", "session_close"),
    [
        ("opg", SATURDAY, MONDAY_CLOSE),
        ("opg", new_york(2025, 6, 9, 9, 27, 59), MONDAY_CLOSE),
        ("opg", new_york(2025, 6, 9, 9, 28), None),  # under 2 minutes before the open
        ("opg", new_york(2025, 6, 9, 11, 0), None),  # the session is open
        ("opg", new_york(2025, 6, 9, 16, 30), new_york(2025, 6, 10, 16, 0)),  # the next morning's
        ("cls", SATURDAY, MONDAY_CLOSE),
        ("cls", new_york(2025, 6, 9, 15, 49, 59), MONDAY_CLOSE),
        ("cls", new_york(2025, 6, 9, 15, 50), None),  # under 10 minutes before the close
        ("cls", new_york(2025, 6, 9, 17, 0), new_york(2025, 6, 10, 16, 0)),
        ("cls", new_york(2025, 7, 3, 12, 49), new_york(2025, 7, 3, 13, 0)),  # an early close (1 pm)
        ("cls", new_york(2025, 7, 3, 12, 55), None),
    ],
)
def test_auction_session_cutoffs(tif: str, moment: dt.datetime, session_close: dt.datetime | None) -> None:
    session = calendar.auction_session(tif, moment)
    if session_close is None:
        assert session is None
        return
    assert session is not None and session.close == session_close
    assert session.open < session.close and session.open.astimezone(calendar.trading_zone()).hour == 9


def place(account: Account, now: dt.datetime, **fields: Any) -> Order:
    values: dict[str, Any] = {"symbol": "AAPL", "qty": 10, "side": "buy", "type": "market"}
    values.update(fields)
    values["qty"] = shares(values["qty"])  # whole shares here, quantity units in the service
    return services.order_place(account_id=account.pk, request=services.OrderRequest(**values), now=now)


@pytest.mark.django_db
@pytest.mark.usefixtures("xnys")
def test_auction_orders_rest_until_their_auction_and_are_refused_as_alpaca_refuses_them(
    asset: Asset, account: Account
) -> None:
    opg = place(account, SATURDAY, time_in_force="opg")
    # Marketable against the quote, yet it waits for Monday's opening auction, holding cash.
    assert (opg.status, opg.filled_qty, opg.expires_at) == (OrderStatus.NEW, 0, MONDAY_CLOSE)
    account.refresh_from_db()
    assert account.reserved_cents == opg.reserved_cents == 10 * 10_001
    limit_cls = place(account, SATURDAY, time_in_force="cls", type="limit", limit_price_units=990_000)
    assert limit_cls.status == OrderStatus.NEW and not Fill.objects.exists()
    for fields in (
        {"time_in_force": "opg", "type": "stop", "stop_price_units": 1_010_000},
        {"time_in_force": "cls", "type": "trailing_stop", "trail_price_units": 10_000},
    ):
        with pytest.raises(InvalidRequest, match="only for market and limit orders"):
            place(account, SATURDAY, **fields)
    with pytest.raises(InvalidRequest, match="opg orders are taken until 2 minutes before the open"):
        place(account, new_york(2025, 6, 9, 10, 0), time_in_force="opg")
    with pytest.raises(InvalidRequest, match="cls orders are taken until 10 minutes before the close"):
        place(account, new_york(2025, 6, 9, 15, 55), time_in_force="cls")


class WallClock:
    """The engine's "now", moved by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, now: dt.datetime) -> None:
        self.now = now


@pytest.fixture
def channel(settings: Settings) -> str:
    settings.ORDER_EVENTS_CHANNEL = f"test:orders:{uuid.uuid4().hex}"
    return settings.ORDER_EVENTS_CHANNEL


@pytest.fixture
def engine_at(channel: str) -> Iterator[Callable[[WallClock], TriggerEngine]]:
    engines: list[TriggerEngine] = []

    def start(clock: WallClock) -> TriggerEngine:
        engine = TriggerEngine(clock=clock)
        engine.start()
        engines.append(engine)
        return engine

    yield start
    for engine in engines:
        engine.stop()


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_the_market_executes_opg_at_the_first_trade_and_cls_at_the_last(
    asset: Asset, make_account: Callable[..., Account], engine_at: Callable[[WallClock], TriggerEngine]
) -> None:
    account = make_account()
    seller = make_account()
    place(seller, new_york(2025, 6, 6, 11, 0), qty=20, time_in_force="day")  # Friday: shares to sell
    moo = place(account, SATURDAY, time_in_force="opg")
    loo_too_low = place(account, SATURDAY, time_in_force="opg", type="limit", limit_price_units=990_000)
    loo_sell = place(
        seller, SATURDAY, time_in_force="opg", side="sell", type="limit", limit_price_units=1_005_000
    )
    moc = place(account, SATURDAY, time_in_force="cls", qty=4)
    moc_sell = place(seller, SATURDAY, time_in_force="cls", side="sell", qty=5)
    clock = WallClock(SATURDAY + dt.timedelta(hours=1))
    engine = engine_at(clock)
    assert len(engine.book) == 0  # auction orders never rest in the book

    assert engine.on_window([]) == []  # still the weekend
    clock.set(MONDAY_OPEN + dt.timedelta(seconds=1))
    outcomes = engine.on_window(committed_ticks("AAPL", 2, ["100.80", "100.20"]))
    # The first trade of the session, 100.80, is the opening auction's price for all of them.
    assert {o.order_id: (o.price, o.filled) for o in outcomes} == {
        str(moo.pk): (price_to_units("100.80"), True),
        str(loo_too_low.pk): (price_to_units("100.80"), False),
        str(loo_sell.pk): (price_to_units("100.80"), True),
    }
    statuses = {o.pk: Order.objects.get(pk=o.pk).status for o in (moo, loo_too_low, loo_sell, moc, moc_sell)}
    assert statuses == {
        moo.pk: OrderStatus.FILLED,
        loo_too_low.pk: OrderStatus.CANCELED,
        loo_sell.pk: OrderStatus.FILLED,
        moc.pk: OrderStatus.NEW,
        moc_sell.pk: OrderStatus.NEW,
    }
    assert Fill.objects.get(order=moo).price_units == price_to_units("100.80")

    clock.set(MONDAY_OPEN + dt.timedelta(hours=3))
    assert engine.on_window(committed_ticks("AAPL", 4, ["101.10", "101.40"])) == []
    clock.set(MONDAY_CLOSE + dt.timedelta(seconds=1))
    outcomes = engine.on_window([])  # the market produces no ticks once closed
    assert {o.order_id: (o.price, o.filled) for o in outcomes} == {
        str(moc.pk): (price_to_units("101.40"), True),
        str(moc_sell.pk): (price_to_units("101.40"), True),
    }
    assert Position.objects.get(account=account).qty == shares(14)
    assert Position.objects.get(account=seller).qty == shares(20 - 10 - 5)
    account.refresh_from_db()
    seller.refresh_from_db()
    assert account.reserved_cents == seller.reserved_cents == 0
    assert Position.objects.get(account=seller).qty_held == 0


@pytest.mark.django_db
@pytest.mark.usefixtures("xnys")
def test_orders_placed_while_closed_are_accepted_and_execute_nothing(asset: Asset, account: Account) -> None:
    market = place(account, SATURDAY, time_in_force="day")
    # Accepted, as Alpaca answers outside the session, and holding its cash at the ask.
    assert market.accepted_state is not None and market.accepted_state.status == OrderStatus.ACCEPTED
    market.refresh_from_db()
    assert (market.status, market.filled_qty, market.expires_at) == (OrderStatus.ACCEPTED, 0, MONDAY_CLOSE)
    assert market.reserved_cents == 10 * 10_001 and not Fill.objects.exists()
    ioc = place(account, SATURDAY, time_in_force="ioc")
    ioc.refresh_from_db()
    assert ioc.status == OrderStatus.CANCELED  # nothing can fill before the open
    # Open orders include accepted ones: they can be canceled and replaced as any other.
    resting = place(account, SATURDAY, type="limit", limit_price_units=900_000, time_in_force="gtc")
    replaced = services.order_replace(
        account_id=account.pk, order_id=resting.pk, limit_price_units=910_000, now=SATURDAY
    )
    assert replaced.status == OrderStatus.ACCEPTED
    services.order_cancel(account_id=account.pk, order_id=replaced.pk, now=SATURDAY)
    account.refresh_from_db()
    assert account.reserved_cents == 10 * 10_001


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_the_open_routes_accepted_orders_market_ones_fill_at_the_first_trade(
    asset: Asset, account: Account, engine_at: Callable[[WallClock], TriggerEngine]
) -> None:
    market = place(account, SATURDAY, time_in_force="day")
    limit = place(account, SATURDAY, type="limit", limit_price_units=1_010_000, time_in_force="gtc")
    clock = WallClock(SATURDAY + dt.timedelta(hours=1))
    engine = engine_at(clock)
    assert engine.on_window([]) == [] and len(engine.book) == 0  # accepted orders do not rest yet
    clock.set(MONDAY_OPEN + dt.timedelta(seconds=1))
    outcomes = engine.on_window(committed_ticks("AAPL", 2, ["100.80", "100.20"]))
    assert [(o.order_id, o.price, o.filled) for o in outcomes] == [
        (str(market.pk), price_to_units("100.81"), True)  # the first trade's ask
    ]
    limit.refresh_from_db()
    assert limit.status == OrderStatus.NEW  # routed; it rests in the book once its event arrives
    deadline = time.monotonic() + 10
    seq = 4
    while Order.objects.get(pk=limit.pk).status != OrderStatus.FILLED:
        assert time.monotonic() < deadline, "the routed limit never filled"
        engine.on_window(committed_ticks("AAPL", seq, ["100.40"]))
        seq += 1
        time.sleep(0.05)
    assert Fill.objects.get(order=limit).price_units == price_to_units("100.41")


class FailingStatement:
    """A Django execute wrapper: the database fails the first statement ``picks`` selects after
    skipping ``skip`` of them, as a server going away between two statements would."""

    def __init__(
        self,
        picks: Callable[[str, Sequence[Any]], bool],
        *,
        skip: int = 0,
        error: type[Exception] = OperationalError,
    ) -> None:
        self.picks, self.skip, self.error, self.failed = picks, skip, error, 0

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self.failed and self.picks(sql, params or ()):
            if not self.skip:
                self.failed += 1
                raise self.error("the database went away")
            self.skip -= 1
        return execute(sql, params, many, context)


def routing_update(sql: str, params: Sequence[Any]) -> bool:
    return sql.startswith('UPDATE "trading_order" SET "status"') and OrderStatus.ACCEPTED in params


def statuses(*orders: Order) -> list[str]:
    return [Order.objects.get(pk=order.pk).status for order in orders]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_a_routing_pass_that_fails_midway_strands_nothing(
    asset: Asset, account: Account, engine_at: Callable[[WallClock], TriggerEngine]
) -> None:
    """The open's routing fails after committing the first order: the next window routes the
    rest, and the market order the failed pass switched to new fills with them."""
    first = place(account, SATURDAY, time_in_force="day")
    second = place(account, SATURDAY + dt.timedelta(minutes=1), time_in_force="day")
    clock = WallClock(SATURDAY + dt.timedelta(hours=1))
    engine = engine_at(clock)
    clock.set(MONDAY_OPEN + dt.timedelta(seconds=1))
    ticks = committed_ticks("AAPL", 2, ["100.80"])
    outage = FailingStatement(routing_update, skip=1)
    with connection.execute_wrapper(outage), pytest.raises(OperationalError):
        engine.on_window(ticks)
    assert outage.failed and statuses(first, second) == [OrderStatus.NEW, OrderStatus.ACCEPTED]

    outcomes = engine.on_window(committed_ticks("AAPL", 3, ["100.40"]))
    assert [(o.order_id, o.price, o.filled) for o in outcomes] == [
        (str(first.pk), price_to_units("100.41"), True),
        (str(second.pk), price_to_units("100.41"), True),
    ]
    assert statuses(first, second) == [OrderStatus.FILLED, OrderStatus.FILLED]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_an_order_held_just_before_the_open_and_committed_after_the_routing_is_routed(
    asset: Asset, account: Account, engine_at: Callable[[WallClock], TriggerEngine]
) -> None:
    """Placed at 9:29:59.9 (held: the session was closed then), its transaction commits after the
    open's first routing pass: a later window routes it, and it fills at the next trade."""
    clock = WallClock(SATURDAY + dt.timedelta(hours=1))
    engine = engine_at(clock)
    clock.set(MONDAY_OPEN + dt.timedelta(seconds=1))
    assert engine.on_window(committed_ticks("AAPL", 2, ["100.80"])) == []
    late = place(account, MONDAY_OPEN - dt.timedelta(milliseconds=100), time_in_force="day")
    assert statuses(late) == [OrderStatus.ACCEPTED]

    outcomes = engine.on_window(committed_ticks("AAPL", 3, ["100.40"]))
    assert [(o.order_id, o.price, o.filled) for o in outcomes] == [
        (str(late.pk), price_to_units("100.41"), True)
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
@pytest.mark.parametrize("error", [OperationalError, DatabaseError])
def test_a_failed_lookup_keeps_the_symbols_routed_market_orders(
    asset: Asset, account: Account, engine_at: Callable[[WallClock], TriggerEngine], error: type[Exception]
) -> None:
    """Reading the first routed market order fails (the database went away, or any other error):
    neither it nor the symbol's other one is dropped; both fill at the next trade."""
    first = place(account, SATURDAY, time_in_force="day")
    second = place(account, SATURDAY + dt.timedelta(minutes=1), time_in_force="day")
    clock = WallClock(SATURDAY + dt.timedelta(hours=1))
    engine = engine_at(clock)
    clock.set(MONDAY_OPEN + dt.timedelta(seconds=1))
    assert engine.on_window([]) == []  # routed; AAPL has not traded yet
    assert statuses(first, second) == [OrderStatus.NEW, OrderStatus.NEW]

    def lookup(sql: str, params: Sequence[Any]) -> bool:
        return "LIMIT" in sql and any(str(p).replace("-", "") == first.pk.hex for p in params)

    ticks = committed_ticks("AAPL", 2, ["100.80"])
    failing = FailingStatement(lookup, error=error)
    with connection.execute_wrapper(failing):
        assert engine.on_window(ticks) == []
    assert failing.failed and statuses(first, second) == [OrderStatus.NEW, OrderStatus.NEW]

    outcomes = engine.on_window(committed_ticks("AAPL", 3, ["100.40"]))
    assert [(o.order_id, o.price, o.filled) for o in outcomes] == [
        (str(first.pk), price_to_units("100.41"), True),
        (str(second.pk), price_to_units("100.41"), True),
    ]
