"""The market's resting-order engine, through the real services and real Redis pub/sub events."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django.fixtures import Settings

from config.redis_pools import redis_client
from realtime.throttle import ThrottleController
from realtime.triggers import TriggerEngine
from realtime.wire import WireTick
from realtime.writer import TickWriter, WindowBatch
from tests.builders import add_tick, shares
from trading import selectors, services
from trading.api.serializers import OrderSerializer
from trading.models import Account, Asset, Fill, Order, OrderStatus, Position
from trading.units import price_to_units


@pytest.fixture
def order_events_channel(settings: Settings) -> str:
    # A channel of its own: other test runs share the Redis server and publish order events too.
    settings.ORDER_EVENTS_CHANNEL = f"test:orders:{uuid.uuid4().hex}"
    return settings.ORDER_EVENTS_CHANNEL


@pytest.fixture
def engine(order_events_channel: str) -> Iterator[TriggerEngine]:
    engine = TriggerEngine()
    engine.start()
    yield engine
    engine.stop()


def wait_for(condition: Callable[[], bool], engine: TriggerEngine, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        engine.process_events()
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


def limit_buy(
    account: Account, price: str, *, time_in_force: str = "gtc", now: dt.datetime | None = None
) -> Order:
    request = services.OrderRequest(
        symbol="AAPL",
        qty=shares(10),
        side="buy",
        type="limit",
        time_in_force=time_in_force,
        limit_price_units=price_to_units(price),
    )
    return services.order_place(account_id=account.pk, request=request, now=now)


def committed_window(symbol: str, seq: int, *, bid: str, ask: str, size: int = 100) -> list[WireTick]:
    """A window's tick, stored first: fills may only use prices that are persisted. ``size``
    shares are shown at the bid and at the ask."""
    tick = WireTick(
        symbol,
        seq,
        price_to_units(ask),
        100,
        price_to_units(bid),
        size,
        price_to_units(ask),
        size,
        time.time_ns(),
    )
    TickWriter(throttle=ThrottleController(max_rows_per_s=0, max_txn_per_s=0)).write(
        WindowBatch(number=1, ticks=[tick])
    )
    return [tick]


@pytest.mark.django_db(transaction=True)
def test_crossing_price_fills_a_resting_limit_and_not_a_canceled_one(
    asset: Asset, account: Account, engine: TriggerEngine
) -> None:
    kept = limit_buy(account, "99.00")
    canceled = limit_buy(account, "99.00")
    far = limit_buy(account, "90.00")
    wait_for(lambda: all(str(o.pk) in engine.book for o in (kept, canceled, far)), engine)
    services.order_cancel(account_id=account.pk, order_id=canceled.pk)
    wait_for(lambda: str(canceled.pk) not in engine.book, engine)

    window = committed_window("AAPL", 2, bid="98.80", ask="98.90")
    outcomes = engine.on_window(window)

    assert [(o.order_id, o.filled, o.price, o.tick_seq) for o in outcomes] == [
        (str(kept.pk), True, price_to_units("98.90"), 2)
    ]
    kept.refresh_from_db()
    assert kept.status == OrderStatus.FILLED
    fill = Fill.objects.get(order=kept)
    assert (fill.price_units, fill.tick_seq, fill.qty) == (price_to_units("98.90"), 2, shares(10))
    canceled.refresh_from_db()
    far.refresh_from_db()
    assert canceled.status == OrderStatus.CANCELED and far.status == OrderStatus.NEW
    assert not Fill.objects.filter(order__in=[canceled, far]).exists()
    assert str(kept.pk) not in engine.book and str(far.pk) in engine.book
    # The fill's own event comes back over Redis and leaves the book as it is.
    wait_for(lambda: len(engine.book) == 1, engine)


@pytest.mark.django_db(transaction=True)
def test_a_cancel_racing_the_fill_has_one_outcome(
    asset: Asset, account: Account, engine: TriggerEngine
) -> None:
    order = limit_buy(account, "99.00")
    wait_for(lambda: str(order.pk) in engine.book, engine)
    # Canceled in the database; the event may or may not have arrived when the price crosses.
    services.order_cancel(account_id=account.pk, order_id=order.pk)
    outcomes = engine.on_window(committed_window("AAPL", 2, bid="98.00", ask="98.10"))
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    assert not Fill.objects.filter(order=order).exists()
    assert all(not o.filled for o in outcomes)
    account.refresh_from_db()
    assert account.reserved_cents == 0


@pytest.mark.django_db(transaction=True)
def test_start_rebuilds_the_book_and_expires_past_day_orders(
    asset: Asset, account: Account, order_events_channel: str
) -> None:
    resting = limit_buy(account, "95.00")
    yesterday = timezone.now() - dt.timedelta(days=1, hours=1)
    stale = limit_buy(account, "96.00", time_in_force="day", now=yesterday)
    engine = TriggerEngine()
    engine.start()
    try:
        stale.refresh_from_db()
        assert stale.status == OrderStatus.EXPIRED
        assert str(resting.pk) in engine.book
        wait_for(lambda: str(stale.pk) not in engine.book and len(engine.book) == 1, engine)
    finally:
        engine.stop()


@pytest.mark.django_db(transaction=True)
def test_an_order_added_by_event_meets_the_latest_price_at_once(
    make_asset: Callable[..., Asset], account: Account, engine: TriggerEngine
) -> None:
    make_asset("AAPL", price="100.00")
    make_asset("MSFT", price="50.00")
    engine.on_window(committed_window("AAPL", 2, bid="100.00", ask="100.02"))
    order = limit_buy(account, "99.00")  # rests: the ask in Redis/DB is 100.02
    # The price falls while the order's "new" event is still on its way.
    engine.on_window(committed_window("AAPL", 3, bid="98.50", ask="98.60"))
    order.refresh_from_db()
    if order.status != OrderStatus.FILLED:
        # The event arrived after that window: the next window fills it at the newest AAPL
        # price even though AAPL does not trade in it.
        deadline = time.monotonic() + 10
        while not engine.subscriber.events.qsize() and time.monotonic() < deadline:
            time.sleep(0.02)
        engine.on_window(committed_window("MSFT", 2, bid="50.00", ask="50.02"))
        order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert Fill.objects.get(order=order).tick_seq == 3


def drop_this_threads_session() -> None:
    """The server ends this thread's database session, as a restart or a lost connection does."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [backend])


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_an_order_whose_fill_met_a_lost_database_fills_at_a_later_crossing(
    asset: Asset, account: Account, engine: TriggerEngine
) -> None:
    order = limit_buy(account, "99.00")
    wait_for(lambda: str(order.pk) in engine.book, engine)
    window = committed_window("AAPL", 2, bid="98.80", ask="98.90")
    drop_this_threads_session()
    outcomes = engine.on_window(window)
    assert [(o.order_id, o.filled) for o in outcomes] == [(str(order.pk), False)]
    order.refresh_from_db()
    assert order.status == OrderStatus.NEW  # still open in the database
    # The database answers again: the book is reloaded from it and the next crossing fills.
    outcomes = engine.on_window(committed_window("AAPL", 3, bid="98.70", ask="98.80"))
    assert [(o.order_id, o.filled) for o in outcomes] == [(str(order.pk), True)]
    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED


def committed_ticks(symbol: str, first_seq: int, lasts: list[str]) -> list[WireTick]:
    """One window of several trades of ``symbol`` at ``lasts`` (a cent either side), stored first."""
    ticks = [
        WireTick(symbol, first_seq + i, price_to_units(last), 100, price_to_units(last) - 100, 100,
                 price_to_units(last) + 100, 100, time.time_ns())
        for i, last in enumerate(lasts)
    ]  # fmt: skip
    TickWriter(throttle=ThrottleController(max_rows_per_s=0, max_txn_per_s=0)).write(
        WindowBatch(number=1, ticks=ticks)
    )
    return ticks


@pytest.mark.django_db(transaction=True)
def test_trailing_stops_store_their_marks_once_per_window_and_show_their_stop_price(
    asset: Asset, account: Account, engine: TriggerEngine
) -> None:
    """However many ticks move them, trailing stops' marks reach the database in one UPDATE per
    window, and the order's stop_price (REST, trade_updates) is the level the market holds."""
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(20), side="buy", type="market", time_in_force="gtc"
        ),
    )

    def trailing(*, trail_price: int | None = None, trail_percent: int | None = None) -> Order:
        request = services.OrderRequest(
            symbol="AAPL", qty=shares(5), side="sell", type="trailing_stop", time_in_force="gtc",
            trail_price_units=trail_price, trail_percent_units=trail_percent,
        )  # fmt: skip
        return services.order_place(account_id=account.pk, request=request)

    by_price = trailing(trail_price=price_to_units("2.00"))
    by_percent = trailing(trail_percent=50_000)  # 5 %
    wait_for(lambda: str(by_price.pk) in engine.book and str(by_percent.pk) in engine.book, engine)
    assert (
        OrderSerializer.shape(selectors.order_get(account_id=account.pk, order_id=by_price.pk))["stop_price"]
        == "98.00"
    )  # placed at a last trade of 100.00

    window = committed_ticks("AAPL", 2, ["100.50", "101.00", "101.75", "101.20", "102.40", "102.10"])
    with CaptureQueriesContext(connection) as queries:
        outcomes = engine.on_window(window)
    assert not any(o.filled for o in outcomes)  # 102.10 is above both stops
    updates = [q["sql"] for q in queries if q["sql"].startswith('UPDATE "trading_order"')]
    assert len(updates) == 1, updates
    shown = {
        order.pk: OrderSerializer.shape(selectors.order_get(account_id=account.pk, order_id=order.pk))
        for order in (by_price, by_percent)
    }
    assert (shown[by_price.pk]["hwm"], shown[by_price.pk]["stop_price"]) == ("102.40", "100.40")
    assert (shown[by_percent.pk]["hwm"], shown[by_percent.pk]["stop_price"]) == ("102.40", "97.28")
    book = {order_id: engine.book._orders[str(order_id)].water_mark for order_id in shown}
    assert book == {by_price.pk: price_to_units("102.40"), by_percent.pk: price_to_units("102.40")}

    # A window that moves no mark writes nothing; one that crosses the stop fills at its mark.
    with CaptureQueriesContext(connection) as queries:
        engine.on_window(committed_ticks("AAPL", 8, ["101.00"]))
    assert not [q for q in queries if q["sql"].startswith('UPDATE "trading_order"')]
    outcomes = engine.on_window(committed_ticks("AAPL", 9, ["103.00", "100.30"]))
    assert [o.order_id for o in outcomes if o.filled] == [str(by_price.pk)]
    filled = selectors.order_get(account_id=account.pk, order_id=by_price.pk)
    assert (filled.status, filled.high_water_mark_units) == ("filled", price_to_units("103.00"))
    assert OrderSerializer.shape(filled)["stop_price"] == "101.00"
    assert (
        OrderSerializer.shape(selectors.order_get(account_id=account.pk, order_id=by_percent.pk))[
            "stop_price"
        ]
        == "97.85"
    )


@pytest.mark.django_db(transaction=True)
def test_a_window_that_takes_a_short_below_maintenance_buys_it_back(
    asset: Asset, make_account: Callable[..., Account], order_events_channel: str, settings: Settings
) -> None:
    """The margin call (trading/margin.py): after a window, an account whose equity fell below
    30 % of its shorts' value has them bought back by a market order the engine places, with the
    engine's clock, and the ledger explains it."""
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0
    at = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
    account = make_account(cash=60_000)
    services.account_configure(account_id=account.pk, no_shorting=False)
    services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(10), side="sell", type="market", time_in_force="day"
        ),
    )
    engine = TriggerEngine(clock=lambda: at)
    engine.start()
    try:
        # Equity 159,990 - 10p cents stays above 30 % of 10p up to $123.07.
        engine.on_window(committed_window("AAPL", 2, bid="122.90", ask="123.00"))
        assert not Order.objects.filter(account=account, side="buy").exists()
        listener = redis_client().pubsub()
        listener.subscribe(order_events_channel)
        engine.on_window(committed_window("AAPL", 3, bid="124.00", ask="124.10"))
    finally:
        engine.stop()
    cover = Order.objects.get(account=account, side="buy")
    # Its events go out as any order's, for trade_updates: new, then fill.
    events: list[str] = []
    deadline = time.monotonic() + 5
    while len(events) < 2 and time.monotonic() < deadline:
        message = listener.get_message(timeout=0.5)
        if message is not None and message["type"] == "message":
            payload = json.loads(message["data"])
            if payload["order_id"] == str(cover.pk):
                events.append(payload["event"])
    listener.close()
    assert events == ["new", "fill"]
    assert cover.client_order_id.startswith(services.MARGIN_CALL_CLIENT_ORDER_PREFIX)
    assert (cover.position_intent, cover.status, cover.filled_at) == ("buy_to_close", "filled", at)
    assert cover.filled_avg_price_units == price_to_units("124.10")
    account.refresh_from_db()
    assert (account.cash_cents, account.reserved_cents) == (159_990 - 124_100, 0)
    assert selectors.portfolio_positions(account=account) == []


@pytest.mark.django_db(transaction=True)
def test_the_rest_of_a_partially_filled_order_fills_at_the_following_quotes(
    asset: Asset, account: Account, engine: TriggerEngine
) -> None:
    """A market order larger than the ask's 400 shares fills those on placement; its rest waits
    in the book and takes each following quote's size, until the last execution fills it."""
    request = services.OrderRequest(
        symbol="AAPL", qty=shares(600), side="buy", type="market", time_in_force="day"
    )
    market = services.order_place(account_id=account.pk, request=request)
    assert market.status == OrderStatus.PARTIALLY_FILLED
    limit = limit_buy(account, "99.00")  # 10 shares
    wait_for(lambda: str(market.pk) in engine.book and str(limit.pk) in engine.book, engine)

    outcomes = engine.on_window(committed_window("AAPL", 2, bid="98.80", ask="98.90", size=150))
    assert sorted((o.order_id, o.filled) for o in outcomes) == sorted(
        [(str(market.pk), False), (str(limit.pk), True)]
    )
    market.refresh_from_db()
    assert (market.status, market.filled_qty) == (OrderStatus.PARTIALLY_FILLED, shares(550))
    # Its own partial_fill event comes back and loads the same rest from the database.
    wait_for(lambda: getattr(engine.book.get(str(market.pk)), "qty", None) == shares(50), engine)

    outcomes = engine.on_window(committed_window("AAPL", 3, bid="101.00", ask="101.10", size=150))
    assert [(o.order_id, o.filled, o.price) for o in outcomes] == [
        (str(market.pk), True, price_to_units("101.10"))
    ]
    market.refresh_from_db()
    assert (market.status, market.filled_qty) == (OrderStatus.FILLED, shares(600))
    assert [f.qty for f in Fill.objects.filter(order=market).order_by("tick_seq")] == [
        shares(400),
        shares(150),
        shares(50),
    ]
    assert str(market.pk) not in engine.book
    assert Account.objects.get(pk=account.pk).reserved_cents == 0


@pytest.mark.django_db(transaction=True)
def test_a_rebuilt_book_holds_the_rest_of_partially_filled_orders(asset: Asset, account: Account) -> None:
    request = services.OrderRequest(
        symbol="AAPL", qty=shares(500), side="buy", type="market", time_in_force="day"
    )
    market = services.order_place(account_id=account.pk, request=request)
    engine = TriggerEngine()
    engine.rebuild()
    rest = engine.book.get(str(market.pk))
    assert rest is not None
    assert (rest.type, rest.qty) == ("market", shares(100))


@pytest.mark.django_db(transaction=True)
def test_bracket_legs_join_the_book_when_the_entry_fills_and_one_fill_cancels_the_other(
    asset: Asset, account: Account, order_events_channel: str
) -> None:
    entry = services.order_place(
        account_id=account.pk,
        request=services.OrderRequest(
            symbol="AAPL",
            qty=shares(10),
            side="buy",
            type="limit",
            time_in_force="gtc",
            limit_price_units=price_to_units("99.00"),
            order_class="bracket",
            take_profit_limit_units=price_to_units("105.00"),
            stop_loss_stop_units=price_to_units("97.00"),
        ),
    )
    take_profit, stop_loss = Order.objects.filter(parent=entry).order_by("submitted_at")
    engine = TriggerEngine()
    engine.start()  # a rebuild: held legs wait outside the book
    try:
        assert str(entry.pk) in engine.book
        assert str(take_profit.pk) not in engine.book and str(stop_loss.pk) not in engine.book

        engine.on_window(committed_window("AAPL", 2, bid="98.80", ask="98.90"))
        entry.refresh_from_db()
        assert entry.status == OrderStatus.FILLED
        wait_for(lambda: str(take_profit.pk) in engine.book and str(stop_loss.pk) in engine.book, engine)

        outcomes = engine.on_window(committed_window("AAPL", 3, bid="105.10", ask="105.20"))

        assert [(o.order_id, o.filled) for o in outcomes] == [(str(take_profit.pk), True)]
        take_profit.refresh_from_db()
        stop_loss.refresh_from_db()
        assert (take_profit.status, stop_loss.status) == (OrderStatus.FILLED, OrderStatus.CANCELED)
        wait_for(lambda: len(engine.book) == 0, engine)
        position = account.positions.get()
        assert (position.qty, position.qty_held) == (0, 0)
    finally:
        engine.stop()


@pytest.mark.django_db
def test_one_accounts_failing_margin_call_does_not_skip_the_others(
    make_account: Callable[..., Account], make_asset: Callable[..., Asset], settings: Settings
) -> None:
    settings.COMMISSION_PER_ORDER_CENTS = 0
    settings.COMMISSION_PER_SHARE_CENTI_CENTS = 0
    settings.COMMISSION_MINIMUM_CENTS = 0
    make_asset("AAPL", price="100.00")
    first, second = sorted((make_account(cash=60_000), make_account(cash=60_000)), key=lambda a: a.pk)
    for account in (first, second):  # standings come in account order: the failing one first
        services.account_configure(account_id=account.pk, no_shorting=False)
    services.order_place(
        account_id=second.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(10), side="sell", type="market", time_in_force="day"
        ),
    )
    # The first holds a short whose initial margin was never taken: covering it fails the
    # account's reserved_cents CHECK (IntegrityError).
    Position.objects.create(
        account=first, asset=Asset.objects.get(symbol="AAPL"), qty=shares(-10), cost_basis_cents=-99_990
    )
    Account.objects.filter(pk=first.pk).update(cash_cents=159_990)
    tick = WireTick("AAPL", 99, 1_240_000, 1, 1_239_900, 1, 1_240_100, 1, time.time_ns())
    add_tick("AAPL", price_units=tick.price)
    now = dt.datetime(2025, 6, 2, 15, 0, tzinfo=dt.UTC)
    (cover,) = TriggerEngine(clock=lambda: now).margin_calls([tick])
    assert (cover.account_id, cover.qty) == (second.pk, shares(10))
