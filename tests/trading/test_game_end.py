"""The end of a trading game and the rules checked under the account's lock (README, Running a
game; docs/architecture.md, Games): at the end every open order of the game's accounts is
canceled with its ``canceled`` event (a day order whose day closes at that very instant too,
whichever job runs first), the market fills nothing once the game is over, the game's
keys read but never write, a removed player neither resets nor makes keys, and the position-size
rule counts the symbol's open orders and prices stops at their stop.

Time is the ``now`` each service call is given, or time-machine for the API (which reads the
clock itself), never the wall clock. The asset trades at $100.00 (bid $99.99, ask $100.01) with no
commission; a game account starts with $10,000.00.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection, connections, transaction
from django.db.models.signals import pre_save
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, assume, given, settings as hypothesis_settings, strategies as st
from redis.client import PubSub

from tests.builders import add_tick
from tests.trading.api_support import assert_alpaca_error, key_client, post_order
from tests.trading.test_order_lifecycle import channel, published  # noqa: F401 (channel: a fixture)
from tests.trading.test_services import assert_books_balance, place
from trading import services
from trading.errors import Forbidden
from trading.models import Account, ApiKey, Asset, Fill, Game, GamePlayer, Order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(days=5)
BEFORE = START - dt.timedelta(hours=1)
DURING = START + dt.timedelta(hours=1)
TICK = dt.timedelta(microseconds=1)

MakeAccount = Callable[..., Account]


@pytest.fixture
def organiser(make_account: MakeAccount) -> User:
    return make_account(username="teacher").user


def new_game(organiser: User, **fields: object) -> Game:
    values: dict[str, object] = {
        "name": "Class of 2025",
        "starts_at": START,
        "ends_at": END,
        "starting_cash_cents": 1_000_000,
    }
    values.update(fields)
    return services.game_create(organiser=organiser, rules=services.GameRules(**values), now=BEFORE)  # type: ignore[arg-type]


def join(game: Game, account: Account) -> Account:
    return services.game_join(game_id=game.pk, user=account.user, now=BEFORE).account


@pytest.fixture
def game(organiser: User) -> Game:
    """The game most tests play: ``new_game``'s defaults."""
    return new_game(organiser)


@pytest.fixture
def game_account(game: Game, account: Account) -> Account:
    """The account of ``account``'s user in ``game``."""
    return join(game, account)


def status(order: Order) -> str:
    return Order.objects.get(pk=order.pk).status


def resting_buy(account: Account, *, now: dt.datetime = DURING, price: int = 900_000, qty: int = 1) -> Order:
    order = place(account, now=now, type="limit", limit_price_units=price, qty=qty)
    assert order.status == "new"
    return order


# --- the close at the end -----------------------------------------------------------------------


def test_the_periodic_close_cancels_a_games_open_orders_at_its_end(
    asset: Asset,
    account: Account,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    game_account: Account,
) -> None:
    in_game = resting_buy(game_account)
    outside = resting_buy(account)  # the user's default account is in no game
    assert services.games_close_due(now=END - TICK) == 0
    assert status(in_game) == "new"
    published(channel)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.games_close_due(now=END) == 1
    events = published(channel)
    assert [(e["event"], e["order_id"], e["order_state"]["status"]) for e in events] == [
        ("canceled", str(in_game.pk), "canceled")
    ]
    # Idempotent: a later run (or a second beat's duplicate) finds nothing left to cancel.
    assert services.games_close_due(now=END + dt.timedelta(minutes=1)) == 0
    assert (status(in_game), status(outside)) == ("canceled", "new")
    assert_books_balance(game_account)
    assert_books_balance(account)


def test_the_periodic_close_is_the_jobs_task(asset: Asset, game_account: Account) -> None:
    from jobs.schedule import BEAT_SCHEDULE
    from jobs.tasks import games_close_due_task

    order = resting_buy(game_account)
    assert BEAT_SCHEDULE["games-close-due"]["task"] == games_close_due_task.name
    with time_machine.travel(END, tick=False):
        assert games_close_due_task.apply().get() == 1
    assert status(order) == "canceled"


def test_an_early_end_and_a_removal_cancel_at_once(
    asset: Asset, organiser: User, make_account: MakeAccount
) -> None:
    game = new_game(organiser)
    stays, leaves = join(game, make_account()), join(game, make_account())
    kept, removed = resting_buy(stays), resting_buy(leaves)
    services.game_player_remove(
        game_id=game.pk, organiser_id=organiser.pk, username=leaves.user.username, now=DURING
    )
    assert (status(kept), status(removed)) == ("new", "canceled")
    services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=DURING + dt.timedelta(hours=1))
    assert status(kept) == "canceled"
    assert services.games_close_due(now=END) == 0


def test_a_late_periodic_close_stamps_the_end(
    asset: Asset,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    game_account: Account,
) -> None:
    """Canceled as of the end, but updated (and its event sent) when it is closed: a client keeping
    the latest state of an order never takes the cancel for older than a state already shown."""
    resting = resting_buy(game_account)
    late = END + dt.timedelta(seconds=29)
    published(channel)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.games_close_due(now=late) == 1
    closed = Order.objects.get(pk=resting.pk)
    assert (closed.status, closed.canceled_at, closed.updated_at) == ("canceled", END, late)
    [event] = published(channel)
    assert event["event"] == "canceled"
    assert dt.datetime.fromisoformat(event["order_state"]["canceled_at"]) == END
    assert dt.datetime.fromisoformat(event["order_state"]["updated_at"]) == late
    assert dt.datetime.fromisoformat(event["at"]) == late


def test_reads_at_the_end_show_the_orders_canceled_as_of_the_end(
    asset: Asset,
    account: Account,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    game_account: Account,
) -> None:
    """Reads are exact at the end: the first read of a game account whose game is over cancels its
    open orders before it answers, stamped with the end, with one ``canceled`` event; every read
    of the key agrees, and the periodic close then finds nothing to cancel."""
    resting = resting_buy(game_account)
    player = key_client(game_account)
    with time_machine.travel(END - TICK, tick=False):
        assert player.get(f"/v2/orders/{resting.pk}").json()["status"] == "new"
        assert player.get("/v2/account").json()["reserved_cash"] != "0.00"
    published(channel)
    with time_machine.travel(END, tick=False), django_capture_on_commit_callbacks(execute=True):
        assert player.get("/v2/orders").json() == []  # open ones, by default
        order = player.get(f"/v2/orders/{resting.pk}").json()
        listed = player.get("/v2/orders?status=closed").json()
        account_body = player.get("/v2/account").json()
    assert (order["status"], dt.datetime.fromisoformat(order["canceled_at"])) == ("canceled", END)
    assert [(o["id"], o["status"]) for o in listed] == [(str(resting.pk), "canceled")]
    assert (account_body["reserved_cash"], account_body["buying_power"]) == ("0.00", account_body["cash"])
    assert [(e["event"], e["order_id"]) for e in published(channel)] == [("canceled", str(resting.pk))]
    with django_capture_on_commit_callbacks(execute=True):
        assert services.games_close_due(now=END + dt.timedelta(seconds=30)) == 0
    assert published(channel) == []
    assert_books_balance(game_account)


def test_the_dashboard_at_the_end_shows_no_open_order(
    asset: Asset, account: Account, game_account: Account
) -> None:
    resting = resting_buy(game_account)
    browser = Client()
    browser.force_login(account.user)
    assert browser.post("/account/select", {"account_id": str(game_account.pk)}).status_code == 302
    with time_machine.travel(END - TICK, tick=False):
        assert [o["id"] for o in browser.get("/v2/dashboard/bootstrap").json()["orders"]["open"]] == [
            str(resting.pk)
        ]
    with time_machine.travel(END, tick=False):
        orders = browser.get("/v2/dashboard/bootstrap").json()["orders"]
    assert orders["open"] == []
    assert [(o["id"], o["status"]) for o in orders["recent"]] == [(str(resting.pk), "canceled")]


def test_a_read_while_the_game_runs_costs_no_query_for_the_close(asset: Asset, game_account: Account) -> None:
    resting_buy(game_account)
    loaded = Account.objects.select_related("game_player__game").get(pk=game_account.pk)
    with CaptureQueriesContext(connection) as queries:
        assert not services.game_account_orders_close_on_read(account=loaded, now=END - TICK)
    assert len(queries) == 0
    assert services.game_account_orders_close_on_read(account=loaded, now=END)
    with CaptureQueriesContext(connection) as queries:
        assert not services.game_account_orders_close_on_read(account=loaded, now=END)
    assert len(queries) == 1  # after the end: whether any order is still open


# A lock another connection waits on: SQLite serialises whole transactions instead.
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_read_racing_the_periodic_close_cancels_each_order_once(
    asset: Asset,
    account: Account,
    channel: PubSub,  # noqa: F811
    game_account: Account,
) -> None:
    """The read found the order open, then waited for the account's lock while the periodic close
    canceled it: under the lock it re-reads, finds nothing open, and sends no second event; the
    account it answers is reloaded all the same, its reservation given back by the job."""
    resting = resting_buy(game_account)
    player = key_client(game_account)
    published(channel)
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            response = player.get("/v2/account")
            outcome["status"], outcome["account"] = response.status_code, response.json()
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    with time_machine.travel(END + dt.timedelta(seconds=1), tick=False):
        with transaction.atomic():
            list(Account.objects.select_for_update().filter(pk=game_account.pk))
            reader.start()
            deadline = time.monotonic() + 30
            while not _a_backend_waits_for_a_lock():
                assert time.monotonic() < deadline, "the read never waited for the account's lock"
                time.sleep(0.05)
            assert services.games_close_due(now=END + dt.timedelta(seconds=1)) == 1
        reader.join(60)
    assert outcome["status"] == 200
    body = outcome["account"]
    assert (body["reserved_cash"], body["buying_power"]) == ("0.00", body["cash"])
    assert [(e["event"], e["order_id"]) for e in published(channel)] == [("canceled", str(resting.pk))]
    assert Order.objects.get(pk=resting.pk).canceled_at == END


# A lock timeout is PostgreSQL's way to give up on a lock another connection holds.
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_close_on_read_that_the_database_refuses_still_answers_the_read(
    asset: Asset, account: Account, game_account: Account
) -> None:
    """The close on read gives up (a lock timeout, as a busy database would): the read answers
    200 with the account as loaded, and the order stays open for the next read or the job."""
    resting = resting_buy(game_account)
    player = key_client(game_account)
    outcome: dict[str, Any] = {}

    def read() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
            for path in ("/v2/account", f"/v2/orders/{resting.pk}"):
                response = player.get(path)
                outcome[path] = (response.status_code, response.json())
        finally:
            connections.close_all()

    reader = threading.Thread(target=read)
    with time_machine.travel(END + dt.timedelta(seconds=1), tick=False), transaction.atomic():
        list(Account.objects.select_for_update().filter(pk=game_account.pk))
        reader.start()
        reader.join(60)
    status_code, body = outcome["/v2/account"]
    assert status_code == 200 and body["reserved_cash"] != "0.00"
    status_code, order = outcome[f"/v2/orders/{resting.pk}"]
    assert (status_code, order["status"]) == (200, "new")
    assert status(resting) == "new"


@pytest.mark.parametrize("ended_early", [False, True], ids=["at-ends_at", "after-ended_at"])
def test_the_market_fills_nothing_once_the_game_is_over(
    asset: Asset, organiser: User, account: Account, ended_early: bool, game: Game, game_account: Account
) -> None:
    """Between the end and the periodic close, a price that crosses a game account's order
    cancels it instead of filling it."""
    last, late = resting_buy(game_account), resting_buy(game_account)
    over = END
    if ended_early:
        # As a fill racing the organiser's end sees it: the end committed, its cancels not yet seen.
        over = DURING + dt.timedelta(hours=1)
        Game.objects.filter(pk=game.pk).update(ended_at=over)
    filled = services.order_fill(order_id=last.pk, price_units=900_000, now=over - TICK)
    assert filled is not None and filled.status == "filled"
    refused = services.order_fill(order_id=late.pk, price_units=900_000, now=over + dt.timedelta(seconds=5))
    assert refused is not None and refused.status == "canceled"
    # It could not fill after the end: that is when it ended, whenever the price came.
    assert Order.objects.get(pk=late.pk).canceled_at == over
    assert not Fill.objects.filter(order_id=late.pk).exists()
    assert_books_balance(game_account)
    # The user's default account trades on.
    outside = services.order_fill(order_id=resting_buy(account).pk, price_units=900_000, now=over)
    assert outside is not None and outside.status == "filled"


# Friday after the close, before the game's end on Saturday, and Monday's open after it.
FRIDAY_EVENING = dt.datetime(2025, 6, 6, 21, 0, tzinfo=dt.UTC)
MONDAY_OPEN = dt.datetime(2025, 6, 9, 13, 30, tzinfo=dt.UTC)


@pytest.fixture
def xnys(settings: Any) -> None:
    settings.MARKET_HOURS = "xnys"


@pytest.mark.usefixtures("xnys")
def test_the_open_after_the_end_cancels_an_accepted_order_instead_of_routing_it(
    asset: Asset,
    account: Account,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    game_account: Account,
) -> None:
    """An order accepted while the session was closed, its game over before the open and the
    periodic close not yet run: the open cancels it as of the end, and never publishes it ``new``
    (a state stamped after the end that a client would then keep over the cancel)."""
    accepted = place(game_account, now=FRIDAY_EVENING, type="limit", limit_price_units=900_000)
    assert accepted.status == "accepted"
    outside = place(account, now=FRIDAY_EVENING, type="limit", limit_price_units=900_000)
    published(channel)
    with django_capture_on_commit_callbacks(execute=True):
        routed = services.orders_route_accepted(now=MONDAY_OPEN)
    assert [order.pk for order in routed] == [outside.pk]
    closed = Order.objects.get(pk=accepted.pk)
    assert (closed.status, closed.canceled_at, closed.updated_at) == ("canceled", END, MONDAY_OPEN)
    assert sorted((e["event"], e["order_id"]) for e in published(channel)) == sorted(
        [("canceled", str(accepted.pk)), ("new", str(outside.pk))]
    )
    assert_books_balance(game_account)


@pytest.mark.usefixtures("xnys")
def test_an_auction_after_the_end_cancels_as_of_the_end(asset: Asset, game_account: Account) -> None:
    opg = place(
        game_account, now=FRIDAY_EVENING, type="limit", limit_price_units=900_000, time_in_force="opg"
    )
    executed = services.order_auction_execute(order_id=opg.pk, price_units=1_000_000, now=MONDAY_OPEN)
    assert executed is not None
    closed = Order.objects.get(pk=opg.pk)
    assert (closed.status, closed.canceled_at, closed.updated_at) == ("canceled", END, MONDAY_OPEN)
    assert_books_balance(game_account)


# Friday 2025-06-06: the session closes at 16:00 New York time, 20:00 UTC.
FRIDAY_MORNING = dt.datetime(2025, 6, 6, 14, 0, tzinfo=dt.UTC)
FRIDAY_CLOSE = dt.datetime(2025, 6, 6, 20, 0, tzinfo=dt.UTC)


def _run_jobs(first: str, *, at: dt.datetime) -> dict[str, int]:
    """The day's expiry and the game's close, as their jobs run them at ``at``, ``first`` first;
    what each returned."""
    from jobs.tasks import games_close_due_task, orders_expire_task

    tasks = {"expiry": orders_expire_task, "close": games_close_due_task}
    order = [first, *(name for name in tasks if name != first)]
    with time_machine.travel(at, tick=False):
        return {name: tasks[name].apply().get() for name in order}


@pytest.mark.usefixtures("xnys")
@pytest.mark.parametrize("first", ["expiry", "close"], ids=["expiry-first", "close-first"])
def test_a_day_order_open_at_a_game_ending_at_the_close_is_canceled_as_of_the_end(
    asset: Asset,
    organiser: User,
    account: Account,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    first: str,
) -> None:
    """The game's end wins the tie (README, Running a game): a day order whose day closes at the
    very instant the game ends is canceled as of the end, whichever of the day's expiry and the
    game's close runs first, with one ``canceled`` event and its reservation given back once."""
    game = new_game(organiser, ends_at=FRIDAY_CLOSE)
    game_account = join(game, account)
    day = place(
        game_account, now=FRIDAY_MORNING, type="limit", limit_price_units=900_000, time_in_force="day"
    )
    assert (day.status, day.expires_at) == ("new", FRIDAY_CLOSE)
    assert Account.objects.get(pk=game_account.pk).reserved_cents == 9_000  # $90.00
    published(channel)
    with django_capture_on_commit_callbacks(execute=True):
        ran = _run_jobs(first, at=FRIDAY_CLOSE + dt.timedelta(seconds=2))
    # The first acted (expiry counts only what it expired); the second found nothing open.
    assert ran == {"expiry": 0, "close": 1 if first == "close" else 0}
    closed = Order.objects.get(pk=day.pk)
    assert (closed.status, closed.canceled_at, closed.expired_at) == ("canceled", FRIDAY_CLOSE, None)
    assert [(e["event"], e["order_id"]) for e in published(channel)] == [("canceled", str(day.pk))]
    assert Account.objects.get(pk=game_account.pk).reserved_cents == 0
    assert_books_balance(game_account)


@pytest.mark.usefixtures("xnys")
@pytest.mark.parametrize("first", ["expiry", "close"], ids=["expiry-first", "close-first"])
def test_a_day_order_whose_day_closed_before_the_end_expires(
    asset: Asset, organiser: User, account: Account, first: str
) -> None:
    """Thursday's day order, its expiry not run before the game ended on Friday's close: it was no
    longer open at the end, so it expires (stamped when it is closed, as any expiry), whichever
    job reaches it first; the user's default account's day order expires as ever."""
    game_account = join(new_game(organiser, ends_at=FRIDAY_CLOSE), account)
    thursday = FRIDAY_MORNING - dt.timedelta(days=1)
    day = place(game_account, now=thursday, type="limit", limit_price_units=900_000, time_in_force="day")
    outside = place(account, now=thursday, type="limit", limit_price_units=900_000, time_in_force="day")
    assert day.expires_at == outside.expires_at == FRIDAY_CLOSE - dt.timedelta(days=1)
    late = FRIDAY_CLOSE + dt.timedelta(seconds=2)
    _run_jobs(first, at=late)
    for order in (day, outside):
        closed = Order.objects.get(pk=order.pk)
        assert (closed.status, closed.expired_at, closed.canceled_at) == ("expired", late, None)
    assert Account.objects.get(pk=game_account.pk).reserved_cents == 0
    assert_books_balance(game_account)
    assert_books_balance(account)


@pytest.mark.usefixtures("xnys")
@pytest.mark.parametrize("first", ["expiry", "end"], ids=["expiry-first", "end-first"])
def test_the_day_orders_expiry_and_the_organisers_early_end_in_either_order(
    asset: Asset,
    organiser: User,
    account: Account,
    channel: PubSub,  # noqa: F811
    django_capture_on_commit_callbacks: Any,
    first: str,
) -> None:
    """The expiry job and the organiser's end (its page's button), each at the time it ran: an end
    before the day's close cancels the day order as of the end, and the expiry after it finds
    nothing; an expiry after the close expires it, and the end after that finds nothing. One
    event either way, the reservation given back once."""
    from jobs.tasks import orders_expire_task

    game = new_game(organiser)
    game_account = join(game, account)
    day = place(
        game_account, now=FRIDAY_MORNING, type="limit", limit_price_units=900_000, time_in_force="day"
    )
    browser = Client()
    browser.force_login(organiser)
    ended_at = (
        FRIDAY_CLOSE - dt.timedelta(minutes=1) if first == "end" else FRIDAY_CLOSE + dt.timedelta(seconds=3)
    )
    expired_at = FRIDAY_CLOSE + dt.timedelta(seconds=2)

    def expire() -> int:
        with time_machine.travel(expired_at, tick=False):
            return int(orders_expire_task.apply().get())

    def end() -> None:
        with time_machine.travel(ended_at, tick=False):
            assert browser.post(f"/games/{game.pk}/end").status_code == 302

    published(channel)
    with django_capture_on_commit_callbacks(execute=True):
        if first == "end":
            end()
            assert expire() == 0
        else:
            assert expire() == 1
            end()
    closed = Order.objects.get(pk=day.pk)
    if first == "end":
        assert (closed.status, closed.canceled_at, closed.expired_at) == ("canceled", ended_at, None)
    else:
        assert (closed.status, closed.expired_at, closed.canceled_at) == ("expired", expired_at, None)
    assert Game.objects.get(pk=game.pk).ended_at == ended_at
    assert [(e["event"], e["order_id"]) for e in published(channel)] == [(closed.status, str(day.pk))]
    assert Account.objects.get(pk=game_account.pk).reserved_cents == 0
    assert_books_balance(game_account)


def _in_thread(name: str, outcome: dict[str, Any], call: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        try:
            outcome[name] = call()
        except Exception as error:  # reported by the test's assertions, not lost in the thread
            outcome[name] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_for_lock_waiters(count: int, *, until: Callable[[], bool] = lambda: False) -> None:
    deadline = time.monotonic() + 30
    while _backends_waiting_for_locks() < count and not until():
        assert time.monotonic() < deadline, f"fewer than {count} connections ever waited for a lock"
        time.sleep(0.05)


# Locks other connections wait on: SQLite serialises whole transactions instead.
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_an_expiry_during_an_early_end_waits_for_it_and_cancels_as_of_the_end(
    asset: Asset, organiser: User, make_account: MakeAccount
) -> None:
    """The organiser ended the game before the day's close, and the end's transaction is still
    canceling other players' orders (held here on another player's account) when the expiry job
    runs after the close: the expiry waits on the game's row lock, then sees the end, so the day
    order is canceled as of the end, as if the end had finished first, not expired on the game as
    it was before the end committed."""
    game = new_game(organiser)
    accounts = sorted((join(game, make_account()), join(game, make_account())), key=lambda a: a.pk)
    # The end takes its players' locks in account order: it waits on the first before the second's.
    held, trading = accounts
    day = place(trading, now=FRIDAY_MORNING, type="limit", limit_price_units=900_000, time_in_force="day")
    ended_at = FRIDAY_CLOSE - dt.timedelta(minutes=1)
    outcome: dict[str, Any] = {}
    with transaction.atomic():
        list(Account.objects.select_for_update().filter(pk=held.pk))
        ender = _in_thread(
            "end",
            outcome,
            lambda: services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=ended_at),
        )
        _wait_for_lock_waiters(1)
        expirer = _in_thread(
            "expiry", outcome, lambda: services.orders_expire(now=FRIDAY_CLOSE + dt.timedelta(seconds=2))
        )
        # It waits for the game (before the fix it went ahead on the game as it was and returned).
        _wait_for_lock_waiters(2, until=lambda: "expiry" in outcome)
    ender.join(60)
    expirer.join(60)
    assert isinstance(outcome["end"], Game) and outcome["expiry"] == 0
    closed = Order.objects.get(pk=day.pk)
    assert (closed.status, closed.canceled_at, closed.expired_at) == ("canceled", ended_at, None)
    assert Account.objects.get(pk=trading.pk).reserved_cents == 0
    assert_books_balance(trading)


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("xnys")
def test_an_early_end_during_an_expiry_waits_for_it_without_a_deadlock(
    asset: Asset, organiser: User, account: Account
) -> None:
    """The other order: the expiry holds the game's lock and waits for the account's (held here)
    when the organiser ends the game; the end waits for the game's lock, behind the expiry, and
    finds the order expired. Both take the game's lock before the account's, so neither holds
    what the other waits for."""
    game = new_game(organiser)
    game_account = join(game, account)
    day = place(
        game_account, now=FRIDAY_MORNING, type="limit", limit_price_units=900_000, time_in_force="day"
    )
    expired_at = FRIDAY_CLOSE + dt.timedelta(seconds=2)
    ended_at = expired_at + dt.timedelta(seconds=1)
    outcome: dict[str, Any] = {}
    with transaction.atomic():
        list(Account.objects.select_for_update().filter(pk=game_account.pk))
        expirer = _in_thread("expiry", outcome, lambda: services.orders_expire(now=expired_at))
        _wait_for_lock_waiters(1)
        ender = _in_thread(
            "end",
            outcome,
            lambda: services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=ended_at),
        )
        _wait_for_lock_waiters(2)
    expirer.join(60)
    ender.join(60)
    assert outcome["expiry"] == 1 and isinstance(outcome["end"], Game)
    closed = Order.objects.get(pk=day.pk)
    assert (closed.status, closed.expired_at, closed.canceled_at) == ("expired", expired_at, None)
    assert Game.objects.get(pk=game.pk).ended_at == ended_at
    assert_books_balance(game_account)


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_a_removal_during_a_configuration_waits_for_it_without_a_deadlock(
    asset: Asset, organiser: User, account: Account
) -> None:
    """The player PATCHes /v2/account/configurations (held, by a pre_save hook, under the
    account's lock just before it writes the player's row) when the organiser removes them. The
    removal waits for the account's lock before it writes that row (the game's row, the account's,
    then the player's: docs/architecture.md, Games: locks), so the configuration writes the row and
    commits, and the removal goes on after it. Before, the removal wrote the row first and then
    waited for the account: each waited for the other, and PostgreSQL aborted one as a deadlock."""
    game = new_game(organiser, shorting_allowed=True)
    game_account = join(game, account)
    order = resting_buy(game_account)
    reached, go = threading.Event(), threading.Event()

    def pause_before_the_player_write(
        sender: type[GamePlayer], update_fields: frozenset[str] | None, **kwargs: Any
    ) -> None:
        if update_fields is not None and "no_shorting" in update_fields:
            reached.set()
            assert go.wait(60), "the test never let the configuration go on"

    outcome: dict[str, Any] = {}
    pre_save.connect(pause_before_the_player_write, sender=GamePlayer)
    try:
        configurer = _in_thread(
            "configure",
            outcome,
            lambda: services.account_configure(account_id=game_account.pk, no_shorting=True, now=DURING),
        )
        assert reached.wait(60), "the configuration never reached its write of the player's row"
        remover = _in_thread(
            "remove",
            outcome,
            lambda: services.game_player_remove(
                game_id=game.pk,
                organiser_id=organiser.pk,
                username=game_account.user.username,
                now=DURING + dt.timedelta(seconds=1),
            ),
        )
        # The removal waits for a lock the held configuration has (the account's).
        _wait_for_lock_waiters(1, until=lambda: "remove" in outcome)
        go.set()
        configurer.join(60)
        remover.join(60)
    finally:
        go.set()
        pre_save.disconnect(pause_before_the_player_write, sender=GamePlayer)
    assert not configurer.is_alive() and not remover.is_alive()
    assert isinstance(outcome["configure"], Account), outcome
    assert isinstance(outcome["remove"], GamePlayer), outcome
    player = GamePlayer.objects.get(account=game_account)
    assert (player.no_shorting, player.removed_at) == (True, DURING + dt.timedelta(seconds=1))
    assert Account.objects.get(pk=game_account.pk).shorting_enabled is False
    assert status(order) == "canceled"
    assert_books_balance(game_account)


def test_an_expiry_run_passes_over_an_order_whose_account_or_player_is_gone(
    asset: Asset, organiser: User, account: Account, make_account: MakeAccount, caplog: Any
) -> None:
    """Deleted while the run works through its list (after listing, before their turn): a game
    account's order is logged and passed over, an order whose player is gone (its row deleted, as
    a deleted game's are) expires as any account's, and the others expire as ever."""
    game = new_game(organiser)
    doomed_account = join(game, make_account())
    orphaned_account = join(game, make_account())
    doomed, orphaned, plain = (
        place(owner, now=DURING, type="limit", limit_price_units=900_000, time_in_force="day")
        for owner in (doomed_account, orphaned_account, account)
    )
    boundary = plain.expires_at
    assert boundary is not None and boundary < END
    state = {"listed": False, "deleted": False}

    def delete_after_listing(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if state["listed"] and not state["deleted"]:
            state["deleted"] = True
            Account.objects.filter(pk=doomed_account.pk).delete()
            GamePlayer.objects.filter(account=orphaned_account).delete()
        result = execute(sql, params, many, context)
        if '"expires_at" <=' in sql:
            state["listed"] = True  # the run's list of due orders is read; each is handled next
        return result

    with caplog.at_level("INFO", logger="trading.services"), connection.execute_wrapper(delete_after_listing):
        assert services.orders_expire(now=boundary) == 2
    assert state["deleted"]
    assert not Order.objects.filter(pk=doomed.pk).exists()
    assert (status(orphaned), status(plain)) == ("expired", "expired")
    assert f"order {doomed.pk}: its account {doomed_account.pk} is gone" in caplog.text
    assert f"order {orphaned.pk}: its game player is gone" in caplog.text
    assert_books_balance(orphaned_account)
    assert_books_balance(account)


# --- the trading window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "allowed"),
    [
        (-TICK, False),
        (dt.timedelta(0), True),
        (dt.timedelta(hours=2) - TICK, True),
        (dt.timedelta(hours=2), False),
    ],
    ids=["before-start", "at-start", "before-ended_at", "at-ended_at"],
)
def test_the_window_of_a_game_ended_early(
    asset: Asset, offset: dt.timedelta, allowed: bool, game: Game, game_account: Account
) -> None:
    ended_at = START + dt.timedelta(hours=2)
    Game.objects.filter(pk=game.pk).update(ended_at=ended_at)
    if allowed:
        assert place(game_account, now=START + offset).status == "filled"
    else:
        with pytest.raises(Forbidden, match="not started" if offset < dt.timedelta(0) else "over"):
            place(game_account, now=START + offset)


# A lock another connection waits on: SQLite serialises whole transactions instead.
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_an_end_committed_while_an_order_waits_for_the_lock_refuses_it(
    asset: Asset, organiser: User, account: Account, game: Game, game_account: Account
) -> None:
    """The rules are read under the account's lock: an order that waited for it while the game
    ended sees the end, instead of checking the game before and placing after it."""
    outcome: dict[str, object] = {}

    def order() -> None:
        try:
            outcome["order"] = place(game_account, now=DURING + dt.timedelta(seconds=1))
        except Forbidden as refused:
            outcome["refused"] = refused.message
        finally:
            connections.close_all()

    waiter = threading.Thread(target=order)
    with transaction.atomic():
        list(Account.objects.select_for_update().filter(pk=game_account.pk))
        waiter.start()
        deadline = time.monotonic() + 30
        while not _a_backend_waits_for_a_lock():
            assert time.monotonic() < deadline, "the order never waited for the account's lock"
            time.sleep(0.05)
        services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=DURING)
    waiter.join(60)
    assert outcome == {"refused": services.GAME_OVER}
    assert not Order.objects.filter(account=game_account).exists()


def _a_backend_waits_for_a_lock() -> bool:
    return _backends_waiting_for_locks() > 0


def _backends_waiting_for_locks() -> int:
    with connections["default"].cursor() as cursor:
        # Statistics are a snapshot per transaction, and the caller is inside one.
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# --- the position-size rule -------------------------------------------------------------------------


def test_open_orders_on_the_same_side_count_toward_the_position_limit(
    asset: Asset, organiser: User, account: Account
) -> None:
    """10 % of $10,000: 5 shares resting at $95.00 and 5 more at $90.00 make $950.00 (all at the
    highest price either can fill at); 6 more would make $1,045.00."""
    game_account = join(new_game(organiser, max_position_share_bp=1_000), account)
    resting_buy(game_account, price=950_000, qty=5)
    with pytest.raises(Forbidden, match=r"at most 10\.00 % of equity"):
        place(game_account, now=DURING, type="limit", limit_price_units=900_000, qty=6)
    assert status(resting_buy(game_account, price=900_000, qty=5)) == "new"


@pytest.mark.parametrize(
    ("fields", "allowed"),
    [
        ({"type": "stop", "stop_price_units": 1_111_100}, True),  # 9 x $111.11 = $999.99
        ({"type": "stop", "stop_price_units": 1_111_200}, False),  # 9 x $111.12 = $1,000.08
        ({"type": "stop_limit", "stop_price_units": 1_050_000, "limit_price_units": 1_111_100}, True),
        ({"type": "stop_limit", "stop_price_units": 1_050_000, "limit_price_units": 1_111_200}, False),
    ],
    ids=["stop-under", "stop-over", "stop_limit-under", "stop_limit-over"],
)
def test_buy_stops_are_valued_at_their_stop_or_limit(
    asset: Asset, organiser: User, account: Account, fields: dict[str, object], allowed: bool
) -> None:
    """A stop above the market fills at its stop or above it, never at the ask it rests under."""
    game_account = join(new_game(organiser, max_position_share_bp=1_000), account)
    if allowed:
        assert place(game_account, now=DURING, qty=9, **fields).status == "new"
    else:
        with pytest.raises(Forbidden, match=r"game rule: a position may be at most 10\.00 % of equity"):
            place(game_account, now=DURING, qty=9, **fields)


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    share_bp=st.integers(min_value=100, max_value=5_000),
    resting_qty=st.integers(min_value=1, max_value=20),
    qty=st.integers(min_value=1, max_value=20),
    resting_cents=st.integers(min_value=1_000, max_value=9_999),
    cents=st.integers(min_value=1_000, max_value=9_999),
)
def test_the_position_limit_counts_open_orders_at_its_edge(
    make_asset: Callable[..., Asset],
    make_account: MakeAccount,
    share_bp: int,
    resting_qty: int,
    qty: int,
    resting_cents: int,
    cents: int,
) -> None:
    """A limit buy under the bid, next to a resting one: allowed exactly when both together,
    at the higher of the two limits, are at most the share of the $10,000 equity (to the cent)."""
    if not Asset.objects.filter(symbol="AAPL").exists():
        make_asset("AAPL", price="100.00")
    assume(resting_qty * resting_cents * 10_000 <= 1_000_000 * share_bp)  # the first one is allowed
    game_account = join(new_game(make_account().user), make_account())
    Game.objects.filter(players__account=game_account).update(max_position_share_bp=share_bp)
    resting = place(
        game_account, now=DURING, type="limit", limit_price_units=resting_cents * 100, qty=resting_qty
    )
    assert resting.status == "new"
    allowed = (resting_qty + qty) * max(cents, resting_cents) * 10_000 <= 1_000_000 * share_bp
    if allowed:
        assert (
            place(game_account, now=DURING, type="limit", limit_price_units=cents * 100, qty=qty).status
            == "new"
        )
    else:
        with pytest.raises(Forbidden, match="game rule"):
            place(game_account, now=DURING, type="limit", limit_price_units=cents * 100, qty=qty)


# --- removed players ---------------------------------------------------------------------------------


def test_self_reset_is_refused_after_the_end_and_after_a_removal(
    asset: Asset, organiser: User, make_account: MakeAccount
) -> None:
    game = new_game(organiser, self_reset_allowed=True)
    player, leaver = join(game, make_account()), join(game, make_account())
    place(player, now=DURING, qty=3)
    assert services.account_self_reset(account_id=player.pk, now=DURING).cash_cents == 1_000_000
    services.game_player_remove(
        game_id=game.pk, organiser_id=organiser.pk, username=leaver.user.username, now=DURING
    )
    with pytest.raises(Forbidden, match="removed"):
        services.account_self_reset(account_id=leaver.pk, now=DURING)
    place(player, now=END - TICK, qty=2)
    with pytest.raises(Forbidden, match="over"):
        services.account_self_reset(account_id=player.pk, now=END)
    assert Account.objects.get(pk=player.pk).cash_cents < 1_000_000  # nothing was reset


def test_a_removed_player_cannot_make_a_key_for_the_game_account(
    organiser: User, account: Account, client: Client, game: Game, game_account: Account
) -> None:
    services.game_player_remove(
        game_id=game.pk, organiser_id=organiser.pk, username=account.user.username, now=DURING
    )
    with pytest.raises(Forbidden, match="removed"):
        services.api_key_create(account_id=game_account.pk)
    # Nor on the API keys page, with the game account selected.
    client.force_login(account.user)
    client.post(reverse("account_select"), {"account_id": str(game_account.pk)})
    response = client.post(reverse("keys"), {"label": "bot"})
    assert response.status_code == 403
    assert "removed from the game" in response.content.decode()
    assert not ApiKey.objects.filter(account=game_account).exists()
    # The user's other accounts are not concerned.
    assert services.api_key_create(account_id=account.pk)[0].account_id == account.pk


# --- read-only keys after the end -------------------------------------------------------------------


def test_a_games_keys_read_but_never_write_once_it_is_over(
    asset: Asset, account: Account, game_account: Account
) -> None:
    player = key_client(game_account)
    with time_machine.travel(DURING, tick=False):
        assert post_order(player, symbol="AAPL", qty="2").status_code == 200
        # gtc: a day order from days before the end would have expired with its day.
        resting = post_order(
            player, symbol="AAPL", qty="1", type="limit", limit_price="90", time_in_force="gtc"
        ).json()
        watchlist = player.post("/v2/watchlists", {"name": "tech", "symbols": []}, format="json")
        assert watchlist.status_code == 200
    with time_machine.travel(END, tick=False):
        for path in ("/v2/account", "/v2/positions", "/v2/positions/AAPL", "/v2/orders?status=all",
                     f"/v2/orders/{resting['id']}", "/v2/account/activities", "/v2/account/configurations"):  # fmt: skip
            assert player.get(path).status_code == 200, path
        writes = [
            post_order(player, symbol="AAPL", qty="1"),
            player.delete("/v2/orders"),
            player.delete(f"/v2/orders/{resting['id']}"),
            player.patch(f"/v2/orders/{resting['id']}", {"limit_price": "91"}, format="json"),
            player.delete("/v2/positions"),
            player.delete("/v2/positions/AAPL"),
            player.post("/v2/account/reset"),
            player.patch("/v2/account/configurations", {"no_shorting": True}, format="json"),
        ]
        for response in writes:
            body = assert_alpaca_error(response, 403)
            assert body["code"] == 40310000 and body["message"].startswith("game rule: the game is over")
        # Watchlists are not trading: they stay writable (README, Running a game).
        assert player.delete(f"/v2/watchlists/{watchlist.json()['id']}").status_code == 204
    # The first read at the end closed the order as of the end: the periodic close finds nothing.
    assert Order.objects.get(pk=resting["id"]).status == "canceled"
    assert services.games_close_due(now=END) == 0


def test_before_the_start_a_games_key_cannot_trade(asset: Asset, game_account: Account) -> None:
    player = key_client(game_account)
    with time_machine.travel(START - TICK, tick=False):
        body = assert_alpaca_error(post_order(player, symbol="AAPL", qty="1"), 403)
    assert body == {"code": 40310000, "message": "game rule: the game has not started yet"}
    with time_machine.travel(START, tick=False):
        assert post_order(player, symbol="AAPL", qty="1").status_code == 200


def test_a_game_key_never_writes_the_users_default_account(
    asset: Asset, account: Account, game_account: Account
) -> None:
    player, default = key_client(game_account), key_client(account)
    mine = resting_buy(account)
    with time_machine.travel(DURING, tick=False):
        assert player.delete("/v2/orders").status_code == 207
        assert_alpaca_error(player.delete(f"/v2/orders/{mine.pk}"), 404)
        assert player.delete("/v2/positions").json() == []
    services.games_close_due(now=END)
    assert status(mine) == "new"
    with time_machine.travel(END, tick=False):
        # The game is over; the default account is in no game and trades on.
        assert_alpaca_error(post_order(player, symbol="AAPL", qty="1"), 403)
        assert post_order(default, symbol="AAPL", qty="1").status_code == 200
        assert default.delete(f"/v2/orders/{mine.pk}").status_code == 204


# --- the shorting ceiling ----------------------------------------------------------------------------


def test_the_configuration_shows_the_games_shorting_ceiling(
    organiser: User, make_account: MakeAccount
) -> None:
    no_shorts = key_client(join(new_game(organiser, shorting_allowed=False), make_account()))
    shorts = key_client(join(new_game(organiser, shorting_allowed=True), make_account()))
    with time_machine.travel(DURING, tick=False):
        assert no_shorts.get("/v2/account/configurations").json()["no_shorting"] is True
        lifted = no_shorts.patch("/v2/account/configurations", {"no_shorting": False}, format="json")
        assert lifted.status_code == 200 and lifted.json()["no_shorting"] is True
        # Whatever the account's own row says (as stored before the ceiling was kept there).
        Account.objects.filter(pk=no_shorts.account.pk).update(shorting_enabled=True)
        assert no_shorts.get("/v2/account/configurations").json()["no_shorting"] is True

        assert shorts.get("/v2/account/configurations").json()["no_shorting"] is False
        tightened = shorts.patch("/v2/account/configurations", {"no_shorting": True}, format="json")
        assert tightened.json()["no_shorting"] is True
        assert shorts.get("/v2/account/configurations").json()["no_shorting"] is True
        assert (
            shorts.patch("/v2/account/configurations", {"no_shorting": False}, format="json").json()[
                "no_shorting"
            ]
            is False
        )
    assert GamePlayer.objects.count() == 2


def test_margin_calls_skip_an_ended_games_accounts(asset: Asset, organiser: User, account: Account) -> None:
    """The standings freeze at the end: no forced cover moves an ended game's account after it."""
    game = new_game(organiser, shorting_allowed=True, starting_cash_cents=60_000)
    game_account = join(game, account)
    place(game_account, now=DURING, qty=10, side="sell")  # equity below maintenance above $123.07
    add_tick("AAPL", price_units=1_240_000)
    assert services.account_margin_call(account_id=game_account.pk, now=END) == []
    (cover,) = services.account_margin_call(account_id=game_account.pk, now=END - TICK)
    assert (cover.position_intent, cover.status) == ("buy_to_close", "filled")


def test_the_account_says_when_a_game_account_may_trade(
    asset: Asset, organiser: User, account: Account
) -> None:
    """``trading_blocked`` (Alpaca: no orders may be placed) outside the game's window and after a
    removal; ``shorting_enabled`` under the game's ceiling; the game comes with the account's own
    query, so a game account's answer costs no more queries than the default account's."""
    game = new_game(organiser, shorting_allowed=False)
    game_account = join(game, account)
    Account.objects.filter(pk=game_account.pk).update(shorting_enabled=True)
    player, default = key_client(game_account), key_client(account)
    blocked = {}
    for name, instant in (
        ("before", START - TICK),
        ("at-start", START),
        ("before-end", END - TICK),
        ("at-end", END),
    ):
        with time_machine.travel(instant, tick=False):
            body = player.get("/v2/account").json()
        blocked[name] = body["trading_blocked"]
        assert body["shorting_enabled"] is False
    assert blocked == {"before": True, "at-start": False, "before-end": False, "at-end": True}
    with time_machine.travel(DURING, tick=False):
        assert default.get("/v2/account").json()["trading_blocked"] is False
        with CaptureQueriesContext(connection) as in_game:
            player.get("/v2/account")
        with CaptureQueriesContext(connection) as plain:
            default.get("/v2/account")
        assert len(in_game.captured_queries) == len(plain.captured_queries)
        services.game_player_remove(
            game_id=game.pk, organiser_id=organiser.pk, username=account.user.username, now=DURING
        )
    # The removal revoked the game account's keys; in the browser the account shows blocked.
    client = Client()
    client.force_login(account.user)
    client.post(reverse("account_select"), {"account_id": str(game_account.pk)})
    with time_machine.travel(DURING, tick=False):
        assert client.get("/v2/account").json()["trading_blocked"] is True
