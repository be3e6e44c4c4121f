"""A game's page (analytics/game_pages.py): its rules and players for whoever may see the game,
the way onto the game account for its players, and other players' positions only once the game is
over. The clock is pinned with time-machine: the page reads the time itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client

from analytics import game_pages
from analytics.services import game_freeze_grace
from config.cache import cache_manager, cache_manager_reset
from config.redis_pools import redis_client
from tests.trading.test_services import place
from trading import services
from trading.api.serializers import rfc3339
from trading.models import Account, Asset, Game

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

BEFORE = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)
START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
DURING = START + dt.timedelta(hours=1)
END = START + dt.timedelta(days=2)

MakeAccount = Callable[..., Account]


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(BEFORE, tick=False) as traveller:
        yield traveller


def client_of(account: Account) -> Client:
    client = Client()
    client.force_login(account.user)
    return client


def new_game(organiser: Account, **fields: Any) -> Game:
    values: dict[str, Any] = {
        "name": "Class of 2025",
        "starts_at": START,
        "ends_at": END,
        "starting_cash_cents": 1_000_000,
        "max_position_share_bp": 1250,
        **fields,
    }
    return services.game_create(organiser=organiser.user, rules=services.GameRules(**values), now=BEFORE)


def test_the_page_shows_the_rules_and_the_players_way_onto_the_game_account(
    clock: time_machine.Traveller, make_account: MakeAccount
) -> None:
    organiser = make_account(username="teacher")
    game = new_game(organiser, visibility=Game.Visibility.INVITE_ONLY)
    ada = make_account(username="ada")
    player = services.game_join(game_id=game.pk, user=ada.user, invite_code=game.invite_code, now=BEFORE)
    client = client_of(ada)

    page = client.get(f"/games/{game.pk}").content.decode()
    assert "Class of 2025" in page and "10,000.00" in page and "12.50 % of equity" in page
    assert 'data-state="upcoming"' in page and 'data-username="ada"' in page
    assert f'name="account_id" value="{player.account_id}"' in page
    assert "is the one this browser trades on" not in page

    response = client.post("/account/select", {"account_id": str(player.account_id), "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert "is the one this browser trades on" in client.get(f"/games/{game.pk}").content.decode()
    # The organiser sees it too; anyone else does not (it is invite-only).
    assert client_of(organiser).get(f"/games/{game.pk}").status_code == 200
    assert client_of(make_account(username="eve")).get(f"/games/{game.pk}").status_code == 404
    assert client.get("/games/00000000-0000-0000-0000-000000000000").status_code == 404


def test_the_page_carries_the_servers_clock_and_the_window_its_countdown_counts_to(
    clock: time_machine.Traveller, make_account: MakeAccount
) -> None:
    """static/js/game.js counts down on the server's clock: the page gives the server's time when
    it was rendered, the start, and the end (the organiser's early end once there is one)."""
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    client = client_of(organiser)
    page = client.get(f"/games/{game.pk}").content.decode()
    assert f'data-server-now="{rfc3339(BEFORE)}"' in page
    assert f'data-starts-at="{rfc3339(START)}" data-ends-at="{rfc3339(END)}"' in page
    assert 'data-field="countdown"' in page and 'data-board-status="live"' in page

    clock.move_to(DURING)
    services.game_end(game_id=game.pk, organiser_id=organiser.user.pk, now=DURING)
    later = DURING + dt.timedelta(seconds=1)
    clock.move_to(later)
    page = client.get(f"/games/{game.pk}").content.decode()
    assert f'data-server-now="{rfc3339(later)}"' in page
    assert f'data-ends-at="{rfc3339(DURING)}"' in page
    assert 'data-state="over"' in page and 'data-board-status="closing"' in page


def page_after_a_slow_board_read(clock: time_machine.Traveller, viewer: Account, game: Game) -> str:
    """The game's page as ``viewer`` sees it when its first read of the stored boards takes 3 s
    (the clock moved on as it runs)."""
    slow = {"shifted": False}

    def slow_board_read(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if '"analytics_gameboard"' in sql and not slow["shifted"]:
            slow["shifted"] = True
            clock.shift(dt.timedelta(seconds=3))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(slow_board_read):
        page = client_of(viewer).get(f"/games/{game.pk}").content.decode()
    assert slow["shifted"]
    return page


def test_the_pages_clock_is_taken_when_it_is_rendered_after_a_slow_board_read(
    clock: time_machine.Traveller, make_account: MakeAccount
) -> None:
    """The board's read took 3 s (a refresh another process held, say): the page's
    data-server-now is the time it was rendered, not the time the request came in, so the
    browser's countdown is not 3 s behind the page it shows."""
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    page = page_after_a_slow_board_read(clock, organiser, game)
    assert f'data-server-now="{rfc3339(BEFORE + dt.timedelta(seconds=3))}"' in page
    assert 'data-state="upcoming"' in page


@pytest.mark.parametrize(
    ("at", "state", "board_status"),
    [
        (START - dt.timedelta(seconds=1), "running", "live"),
        (END - dt.timedelta(seconds=1), "over", "closing"),
        (END + game_freeze_grace() - dt.timedelta(seconds=1), "over", "final"),
    ],
    ids=["across-the-start", "across-the-end", "across-the-freeze"],
)
def test_a_board_read_across_the_games_start_or_end_shows_the_page_as_of_its_clock(
    clock: time_machine.Traveller, make_account: MakeAccount, at: dt.datetime, state: str, board_status: str
) -> None:
    """The board's read took 3 s and the game started, ended, or froze, meanwhile: the page's state and
    its board are of the instant its clock (data-server-now) says, the one read after the board,
    not of the request's arrival: never a running game (and its live board) with a clock past the
    end, nor an upcoming one with a clock past the start."""
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    services.game_join(game_id=game.pk, user=make_account(username="ada").user, now=BEFORE)
    clock.move_to(at)
    page = page_after_a_slow_board_read(clock, organiser, game)
    assert f'data-server-now="{rfc3339(at + dt.timedelta(seconds=3))}"' in page
    assert f'data-state="{state}"' in page and f'data-board-status="{board_status}"' in page


def test_other_players_positions_show_only_once_the_game_is_over(
    clock: time_machine.Traveller, make_account: MakeAccount, asset: Asset
) -> None:
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    accounts = {}
    for name in ("ada", "bob"):
        accounts[name] = services.game_join(
            game_id=game.pk, user=make_account(username=name).user, now=BEFORE
        ).account
    clock.move_to(DURING)
    place(accounts["ada"], now=DURING, qty=3)
    bob = client_of(Account.objects.get(user__username="bob", is_default=True))

    running = bob.get(f"/games/{game.pk}").content.decode()
    assert 'data-state="running"' in running and 'id="game-positions"' not in running

    clock.move_to(END)
    over = bob.get(f"/games/{game.pk}").content.decode()
    assert 'data-state="over"' in over
    assert (
        '<tr data-username="ada" data-symbol="AAPL"><td>ada</td><td>AAPL</td><td>long</td><td class="num">3</td></tr>'
        in over
    )
    assert 'data-username="bob" data-symbol' not in over


def test_the_board_is_on_the_page_live_then_final(
    clock: time_machine.Traveller, make_account: MakeAccount, asset: Asset
) -> None:
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    ada = services.game_join(game_id=game.pk, user=make_account(username="ada").user, now=BEFORE).account
    services.game_join(game_id=game.pk, user=make_account(username="bob").user, now=BEFORE)
    clock.move_to(DURING)
    place(ada, now=DURING, qty=3)
    client = client_of(organiser)

    live = client.get(f"/games/{game.pk}").content.decode()
    assert f'data-leaderboard-url="/v2/games/{game.pk}/leaderboard?limit=100&amp;offset=0"' in live
    assert 'data-final="false"' in live
    assert "js/game" in live  # the module that keeps it fresh
    assert '<tr data-username="ada">' in live and '<tr data-username="bob">' in live
    assert "Live, computed" in live

    clock.move_to(END + dt.timedelta(seconds=1))  # over, within the freeze grace
    closing = client.get(f"/games/{game.pk}").content.decode()
    assert "The game is over; final standings in a moment" in closing
    clock.move_to(END + dt.timedelta(seconds=settings.GAME_FREEZE_GRACE_S + 1))
    final = client.get(f"/games/{game.pk}").content.decode()
    assert 'data-final="true"' in final and "Final standings, as of" in final
    assert '<tr data-username="ada">' in final and '<tr data-username="bob">' in final


def test_every_rank_is_a_page_away_and_a_player_sees_their_own(
    clock: time_machine.Traveller, make_account: MakeAccount, asset: Asset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(game_pages, "BOARD_PAGE_SIZE", 2)  # three players, two pages
    organiser = make_account(username="teacher")
    game = new_game(organiser)
    accounts = {
        name: services.game_join(game_id=game.pk, user=make_account(username=name).user, now=BEFORE).account
        for name in ("ada", "bob", "cy")
    }
    clock.move_to(DURING)
    place(accounts["ada"], now=DURING, qty=3)  # the spread: ada ranks last
    viewer = client_of(Account.objects.get(user__username="ada", is_default=True))

    first = viewer.get(f"/games/{game.pk}").content.decode()
    assert '<tr data-username="ada">' not in first and "Page 1 of 2" in first and "?page=2" in first
    assert "Your rank: #3 of 3" in first
    second = viewer.get(f"/games/{game.pk}?page=2").content.decode()
    assert '<tr data-username="ada">' in second and '<tr data-username="bob">' not in second
    assert "offset=2" in second and "?page=1" in second
    teacher = client_of(organiser).get(f"/games/{game.pk}?page=x").content.decode()
    assert "Page 1 of 2" in teacher and "Your rank" not in teacher
    beyond = viewer.get(f"/games/{game.pk}?page=9").content.decode()  # past the end: the last page
    assert "Page 2 of 2" in beyond and '<tr data-username="ada">' in beyond


def test_the_page_answers_503_while_another_process_recomputes_its_board(
    clock: time_machine.Traveller, make_account: MakeAccount, asset: Asset, settings: Any
) -> None:
    """Not a 500: a board another process is recomputing past the reader's wait (Property 11)."""
    settings.CACHE_LOCK_SECONDS = 0.3
    settings.CACHE_LOCK_WAIT_SECONDS = 0.1
    cache_manager_reset()
    game = new_game(make_account(username="teacher"))
    ada = services.game_join(game_id=game.pk, user=make_account(username="ada").user, now=BEFORE).account
    clock.move_to(DURING)
    lock = f"{cache_manager().config.prefix}:lock:game-board-refresh:{game.pk}"
    redis_client().set(lock, "another process", px=60_000)
    try:
        response = client_of(ada).get(f"/games/{game.pk}")
    finally:
        redis_client().delete(lock)
        cache_manager_reset()
    assert response.status_code == 503 and response["Retry-After"] == "2"
    assert "being recomputed" in response.content.decode()
