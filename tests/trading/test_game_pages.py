"""The game pages of trading/game_views.py (README, Running a game): creating a game from a form
with every rule, browsing and joining public games, joining an invite-only one by its link, and
managing a game as its organiser. Only the organiser manages; an invite-only game needs its code;
bad input is a form error, never a 500. The clock is pinned with time-machine: the pages read the
time themselves."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import time_machine
from django.test import Client
from pytest_django.fixtures import Settings

from trading import services
from trading.models import Account, ApiKey, CommissionPlan, Game, GamePlayer

pytestmark = pytest.mark.django_db

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


def form_data(**fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Class of 2025",
        "description": "Period 3",
        "starts_at": "2025-06-02T14:00",
        "ends_at": "2025-06-04T14:00",
        "starting_cash": "10000.00",
        "allowed_order_types": ["market", "limit"],
        "allowed_order_classes": ["simple", "bracket"],
        "visibility": "public",
        "late_joining_allowed": "on",
    }
    data.update(fields)
    return {key: value for key, value in data.items() if value is not None}


def new_game(organiser: Account, **fields: Any) -> Game:
    values: dict[str, Any] = {
        "name": "Class of 2025",
        "starts_at": START,
        "ends_at": END,
        "starting_cash_cents": 1_000_000,
        **fields,
    }
    return services.game_create(organiser=organiser.user, rules=services.GameRules(**values), now=BEFORE)


def errors_of(response: Any) -> str:
    page = response.content.decode()
    assert 'class="errorlist"' in page, page
    return page


@pytest.fixture
def organiser(make_account: MakeAccount) -> Account:
    return make_account(username="teacher")


# --- Creating -------------------------------------------------------------------------------------


def test_the_form_takes_every_rule_the_api_takes(clock: time_machine.Traveller, organiser: Account) -> None:
    plan = CommissionPlan.objects.create(name="Flat dollar", per_order_cents=100)
    client = client_of(organiser)
    page = client.get("/games/new")
    assert page.status_code == 200
    for field in (
        "name",
        "description",
        "starts_at",
        "ends_at",
        "starting_cash",
        "commission_plan",
        "allowed_order_types",
        "allowed_order_classes",
        "shorting_allowed",
        "max_position_percent",
        "late_joining_allowed",
        "self_reset_allowed",
        "visibility",
        "player_cap",
    ):
        assert f'name="{field}"' in page.content.decode(), field

    response = client.post(
        "/games/new",
        form_data(
            commission_plan=str(plan.pk),
            shorting_allowed="on",
            max_position_percent="12.5",
            self_reset_allowed="on",
            late_joining_allowed=None,
            visibility="invite_only",
            player_cap="30",
        ),
    )

    game = Game.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/games/{game.pk}/manage"
    assert (game.name, game.description, game.organiser_id) == (
        "Class of 2025",
        "Period 3",
        organiser.user_id,
    )
    assert (game.starts_at, game.ends_at, game.starting_cash_cents) == (START, END, 1_000_000)
    assert game.commission_plan_id == plan.pk
    assert (game.allowed_order_types, game.allowed_order_classes) == (
        ["limit", "market"],
        ["bracket", "simple"],
    )
    assert (game.shorting_allowed, game.max_position_share_bp, game.self_reset_allowed) == (True, 1250, True)
    assert (game.late_joining_allowed, game.visibility, game.player_cap) == (False, "invite_only", 30)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required"),
        ({"ends_at": "2025-06-02T13:59"}, "The end must be after the start"),
        ({"starts_at": "next tuesday"}, "Enter a valid date/time"),
        ({"starting_cash": "-5"}, "greater than or equal to 0"),
        ({"starting_cash": "lots"}, "Enter a number"),
        ({"starting_cash": "1e400"}, "no more than 14 digits"),
        ({"allowed_order_types": ["market", "moonshot"]}, "Select a valid choice"),
        ({"allowed_order_types": None}, "This field is required"),
        ({"max_position_percent": "0"}, "greater than or equal to 0.01"),
        ({"max_position_percent": "101"}, "less than or equal to 100"),
        ({"visibility": "secret"}, "Select a valid choice"),
        ({"player_cap": "0"}, "greater than or equal to 1"),
        ({"commission_plan": "999999"}, "Select a valid choice"),
        # The service's own rule, shown on the form: a game that would be over before it exists.
        ({"starts_at": "2025-06-01T10:00", "ends_at": "2025-06-01T11:00"}, "ends_at must be in the future"),
    ],
)
def test_bad_input_is_a_form_error_and_creates_nothing(
    clock: time_machine.Traveller, organiser: Account, fields: dict[str, Any], message: str
) -> None:
    response = client_of(organiser).post("/games/new", form_data(**fields))
    assert response.status_code == 422
    assert message in errors_of(response)
    assert not Game.objects.exists()


def test_only_staff_create_games_when_settings_say_so(
    clock: time_machine.Traveller, organiser: Account, settings: Settings
) -> None:
    settings.GAME_CREATE_STAFF_ONLY = True
    response = client_of(organiser).post("/games/new", form_data())
    assert response.status_code == 403
    assert "only staff may organise games" in response.content.decode()
    assert not Game.objects.exists()


def test_the_game_pages_need_a_login(clock: time_machine.Traveller, organiser: Account) -> None:
    game = new_game(organiser)
    anonymous = Client()
    for path in (
        "/games",
        "/games/new",
        f"/games/join/{game.invite_code}",
        f"/games/{game.pk}",
        f"/games/{game.pk}/manage",
    ):
        response = anonymous.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login?next="), path
    for path in (f"/games/{game.pk}/join", f"/games/{game.pk}/end", f"/games/{game.pk}/players/x/remove"):
        assert anonymous.post(path).status_code == 302, path
    assert not GamePlayer.objects.exists() and Game.objects.get().ended_at is None


# --- Browsing and joining ---------------------------------------------------------------------------


def test_public_games_are_listed_and_joined_from_the_list(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    public = new_game(organiser, name="Open league")
    hidden = new_game(organiser, name="Secret club", visibility=Game.Visibility.INVITE_ONLY)
    ada = make_account(username="ada")
    client = client_of(ada)

    listing = client.get("/games").content.decode()
    assert "Open league" in listing and "Secret club" not in listing
    assert f'action="/games/{public.pk}/join"' in listing

    response = client.post(f"/games/{public.pk}/join")
    assert response.status_code == 302 and response["Location"] == f"/games/{public.pk}"
    player = GamePlayer.objects.get(game=public, user=ada.user)
    assert player.account.cash_cents == 1_000_000 and not player.account.is_default
    assert "joined" in client.get("/games").content.decode()

    again = client.post(f"/games/{public.pk}/join", follow=True)
    assert "already joined this game" in again.content.decode()
    assert GamePlayer.objects.filter(user=ada.user).count() == 1
    # The invite-only game is not there to be joined without its code.
    assert client.post(f"/games/{hidden.pk}/join").status_code == 404
    assert client.post(f"/games/{hidden.pk}/join", {"invite_code": "wrong"}).status_code == 404
    assert not GamePlayer.objects.filter(game=hidden).exists()


def test_an_invite_only_game_is_joined_by_its_link(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser, name="Secret club", visibility=Game.Visibility.INVITE_ONLY)
    ada = make_account(username="ada")
    client = client_of(ada)
    assert client.get(f"/games/{game.pk}").status_code == 404
    assert client.get("/games/join/not-the-code").status_code == 404
    assert client.post("/games/join/not-the-code").status_code == 404

    invite = client.get(f"/games/join/{game.invite_code}")
    assert invite.status_code == 200 and "Secret club" in invite.content.decode()
    response = client.post(f"/games/join/{game.invite_code}")

    assert response.status_code == 302 and response["Location"] == f"/games/{game.pk}"
    player = GamePlayer.objects.get(game=game, user=ada.user)
    page = client.get(f"/games/{game.pk}").content.decode()
    assert player.account.account_number in page
    # The code typed in (not the link) joins too.
    bob = make_account(username="bob")
    assert client_of(bob).post(f"/games/{game.pk}/join", {"invite_code": game.invite_code}).status_code == 302
    assert GamePlayer.objects.filter(game=game).count() == 2


def test_a_refused_join_says_why(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser, visibility=Game.Visibility.INVITE_ONLY, player_cap=1)
    services.game_join(
        game_id=game.pk, user=make_account(username="ada").user, invite_code=game.invite_code, now=BEFORE
    )
    response = client_of(make_account(username="bob")).post(f"/games/join/{game.invite_code}")
    assert response.status_code == 403
    assert "the game is full" in response.content.decode()
    clock.move_to(END + dt.timedelta(minutes=1))
    late = client_of(make_account(username="cy")).get(f"/games/join/{game.invite_code}")
    assert "This game is over" in late.content.decode()


def test_a_game_account_is_in_the_switcher_and_gets_its_own_key(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser, name="Open league")
    ada = make_account(username="ada")
    client = client_of(ada)
    client.post(f"/games/{game.pk}/join")
    game_account = GamePlayer.objects.get(user=ada.user).account

    dashboard = client.get("/").content.decode()
    assert (
        f'<option value="{game_account.pk}">{game_account.account_number} (game: Open league)</option>'
        in dashboard
    )

    # The game page's "API key for a bot" selects the game account and lands on the keys page.
    response = client.post("/account/select", {"account_id": str(game_account.pk), "next": "/keys"})
    assert response.status_code == 302 and response["Location"] == "/keys"
    keys = client.get("/keys").content.decode()
    assert game_account.account_number in keys and "your game account in" in keys
    created = client.post("/keys", {"label": "bot"})
    assert created.status_code == 201
    assert ApiKey.objects.get(label="bot").account_id == game_account.pk
    assert not ApiKey.objects.filter(account=ada).exists()


def test_the_switch_goes_back_only_to_this_site(
    clock: time_machine.Traveller, make_account: MakeAccount
) -> None:
    ada = make_account(username="ada")
    client = client_of(ada)
    response = client.post("/account/select", {"account_id": str(ada.pk), "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/"


# --- Managing -------------------------------------------------------------------------------------


def test_only_the_organiser_manages_a_game(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser, name="Open league")
    ada = make_account(username="ada")
    services.game_join(game_id=game.pk, user=ada.user, now=BEFORE)
    client = client_of(ada)

    assert client.get(f"/games/{game.pk}/manage").status_code == 403
    assert client.post(f"/games/{game.pk}/manage", form_data(name="Mine now")).status_code == 403
    assert client.post(f"/games/{game.pk}/players/ada/remove").status_code == 403
    assert client.post(f"/games/{game.pk}/end").status_code == 403
    game.refresh_from_db()
    assert (game.name, game.ended_at) == ("Open league", None)
    assert GamePlayer.objects.get(user=ada.user).removed_at is None
    assert "/manage" not in client.get(f"/games/{game.pk}").content.decode()


def test_the_organiser_edits_the_rules_until_the_start(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser, name="Open league")
    client = client_of(organiser)
    page = client.get(f"/games/{game.pk}/manage").content.decode()
    assert 'value="Open league"' in page and 'value="2025-06-02T14:00"' in page
    assert game.invite_code in page

    response = client.post(f"/games/{game.pk}/manage", form_data(name="Renamed", starting_cash="5000"))
    assert response.status_code == 302
    game.refresh_from_db()
    assert (game.name, game.starting_cash_cents) == ("Renamed", 500_000)

    bad = client.post(f"/games/{game.pk}/manage", form_data(max_position_percent="abc"))
    assert bad.status_code == 422 and "Enter a number" in errors_of(bad)

    clock.move_to(DURING)
    assert 'id="game-form"' not in client.get(f"/games/{game.pk}/manage").content.decode()
    late = client.post(f"/games/{game.pk}/manage", form_data(name="Too late"))
    assert late.status_code == 422 and "cannot change once it has started" in errors_of(late)
    game.refresh_from_db()
    assert game.name == "Renamed"


def test_the_organiser_removes_a_player_and_ends_the_game(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser)
    ada, bob = make_account(username="ada"), make_account(username="bob")
    for player in (ada, bob):
        services.game_join(game_id=game.pk, user=player.user, now=BEFORE)
    client = client_of(organiser)
    clock.move_to(DURING)

    removed = client.post(f"/games/{game.pk}/players/bob/remove", follow=True)
    assert "bob is removed" in removed.content.decode()
    assert GamePlayer.objects.get(user=bob.user).removed_at == DURING
    unknown = client.post(f"/games/{game.pk}/players/nobody/remove", follow=True)
    assert "Could not remove nobody: player not found" in unknown.content.decode()

    ended = client.post(f"/games/{game.pk}/end")
    assert ended.status_code == 302 and ended["Location"] == f"/games/{game.pk}"
    game.refresh_from_db()
    assert game.ended_at == DURING
    twice = client.post(f"/games/{game.pk}/end", follow=True)
    assert "the game is over already" in twice.content.decode()
    assert 'id="end-game"' not in client.get(f"/games/{game.pk}/manage").content.decode()


def test_the_organiser_posts_announcements_the_players_read(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser)
    ada, eve = make_account(username="ada"), make_account(username="eve")
    services.game_join(game_id=game.pk, user=ada.user, now=BEFORE)
    client = client_of(organiser)

    posted = client.post(f"/games/{game.pk}/announce", {"text": "  Markets open at 14:00 UTC.  "})
    assert posted.status_code == 302 and posted["Location"] == f"/games/{game.pk}/manage"
    assert "Markets open at 14:00 UTC." in client.get(f"/games/{game.pk}/manage").content.decode()
    assert "Markets open at 14:00 UTC." in client_of(ada).get(f"/games/{game.pk}").content.decode()
    # Someone outside the (public) game sees its page, not its announcements.
    assert "Markets open" not in client_of(eve).get(f"/games/{game.pk}").content.decode()

    blank = client.post(f"/games/{game.pk}/announce", {"text": "   "})
    assert blank.status_code == 422 and "This field is required" in errors_of(blank)
    long = client.post(f"/games/{game.pk}/announce", {"text": "x" * 2001})
    assert long.status_code == 422 and "at most 2000 characters" in errors_of(long)
    assert client_of(ada).post(f"/games/{game.pk}/announce", {"text": "I win"}).status_code == 403
    assert "I win" not in client_of(ada).get(f"/games/{game.pk}").content.decode()


def test_the_manage_page_links_the_exports_for_the_organiser_only(
    clock: time_machine.Traveller, organiser: Account, make_account: MakeAccount
) -> None:
    game = new_game(organiser)
    ada = make_account(username="ada")
    services.game_join(game_id=game.pk, user=ada.user, now=BEFORE)
    page = client_of(organiser).get(f"/games/{game.pk}/manage").content.decode()
    for link in (f"/v2/games/{game.pk}/standings.csv", f"/v2/games/{game.pk}/trades.csv"):
        assert f'href="{link}"' in page
        answer = client_of(organiser).get(link)
        assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
        assert client_of(ada).get(link).status_code == 403
