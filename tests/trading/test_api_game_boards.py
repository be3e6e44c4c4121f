"""A game's leaderboard, its organiser's CSV exports and its announcements over ``/v2/games``
(README, Running a game): live then final standings, exports that match the trades exactly with
usernames only and no cell a spreadsheet would run, and who may read and write what. The API reads
the wall clock, so it is pinned with time-machine."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from typing import Any

import pytest
import time_machine

from tests.builders import set_quote
from tests.trading.api_support import KeyClient, assert_alpaca_error, key_client, post_order
from trading import services
from trading.api.csv_export import csv_text_cell
from trading.api.serializers import rfc3339
from trading.models import GAME_ANNOUNCEMENT_MAX_LENGTH, Account, Asset, Fill, Game
from trading.units import qty_to_str, units_to_str

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

BEFORE = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)
START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
DURING = START + dt.timedelta(hours=1)
END = START + dt.timedelta(days=2)

MakeAccount = Callable[..., Account]


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL", price="100.00")
    make_asset("XOM", price="50.00")


def new_game(organiser: Account, *, visibility: str = Game.Visibility.PUBLIC) -> Game:
    rules = services.GameRules(
        name="Class", starts_at=START, ends_at=END, starting_cash_cents=1_000_000, visibility=visibility
    )
    return services.game_create(organiser=organiser.user, rules=rules, now=BEFORE)


def join(game: Game, account: Account) -> KeyClient:
    """The player's key for its game account, as the API keys page makes it."""
    return key_client(
        services.game_join(
            game_id=game.pk, user=account.user, invite_code=game.invite_code, now=BEFORE
        ).account
    )


def rows_of(response: Any) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/csv"
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_the_leaderboard_is_live_during_the_game_and_final_after(
    market: None, make_account: MakeAccount
) -> None:
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada = join(game, make_account(username="ada"))
    join(game, make_account(username="bob"))
    stranger = key_client(make_account(username="eve"))
    with time_machine.travel(DURING, tick=False):
        set_quote("AAPL", price="100.00")
        assert post_order(ada, symbol="AAPL", qty="10").status_code == 200
        set_quote("AAPL", price="110.00")
        live = stranger.get(f"/v2/games/{game.pk}/leaderboard")  # a public game: anyone reads it
        # A page past the first, and the caller's own entry wherever it ranks.
        page = ada.get(f"/v2/games/{game.pk}/leaderboard?limit=1&offset=1").json()
        assert_alpaca_error(stranger.get(f"/v2/games/{game.pk}/leaderboard?offset=-1"), 422)
    assert live.status_code == 200, live.content
    body = live.json()
    assert (body["status"], body["as_of"], body["starting_cash"]) == ("live", rfc3339(DURING), "10000.00")
    assert [row["username"] for row in body["entries"]] == ["ada", "bob"]
    assert set(body["entries"][0]) == {"rank", "username", "equity", "return_pct", "sharpe", "max_drawdown"}
    assert (body["offset"], body["me"]) == (0, None)  # eve does not play
    assert [row["rank"] for row in page["entries"]] == [2] and page["me"] == {**body["entries"][0]}

    with time_machine.travel(END + dt.timedelta(hours=1), tick=False):
        set_quote("AAPL", price="500.00")  # after the end: not in the standings
        final = ada.get(f"/v2/games/{game.pk}/leaderboard?limit=1").json()
    assert (final["status"], final["as_of"]) == ("final", rfc3339(END))
    assert [row["username"] for row in final["entries"]] == ["ada"]
    ada.account.refresh_from_db()
    assert final["entries"][0]["equity"] == f"{(ada.account.cash_cents + 10 * 110_00) / 100:.2f}"

    assert_alpaca_error(stranger.get(f"/v2/games/{game.pk}/leaderboard?limit=0"), 422)
    assert_alpaca_error(stranger.get("/v2/games/not-a-game/leaderboard"), 404)
    hidden = new_game(teacher, visibility=Game.Visibility.INVITE_ONLY)
    assert_alpaca_error(stranger.get(f"/v2/games/{hidden.pk}/leaderboard"), 404)


def test_the_organiser_exports_standings_and_every_trade_with_usernames_only(
    market: None, make_account: MakeAccount
) -> None:
    teacher = key_client(make_account(username="teacher"))
    game = new_game(teacher.account)
    players = {name: join(game, make_account(username=name)) for name in ("ada", "-bob", "@cy")}
    with time_machine.travel(DURING, tick=False):
        set_quote("AAPL", price="100.00")
        set_quote("XOM", price="50.00")
        for client, symbol, qty, side in [
            (players["ada"], "AAPL", "10", "buy"),
            (players["-bob"], "XOM", "3", "buy"),
            (players["ada"], "AAPL", "4", "sell"),
            (players["@cy"], "XOM", "0.5", "buy"),
        ]:
            assert post_order(client, symbol=symbol, qty=qty, side=side).status_code == 200
        set_quote("XOM", price="45.00")
        trades = rows_of(teacher.get(f"/v2/games/{game.pk}/trades.csv"))
        standings = rows_of(teacher.get(f"/v2/games/{game.pk}/standings.csv"))
        refused = [
            players["ada"].get(f"/v2/games/{game.pk}/trades.csv"),
            players["ada"].get(f"/v2/games/{game.pk}/standings.csv"),
        ]
    for response in refused:
        assert_alpaca_error(response, 403)

    fills = Fill.objects.filter(account__game_player__game=game).order_by("filled_at", "id")
    names = {client.account.pk: name for name, client in players.items()}
    assert trades == [
        ["filled_at", "username", "symbol", "side", "qty", "price", "notional", "commission"],
        *(
            [
                fill.filled_at.isoformat(),
                csv_text_cell(names[fill.account_id]),
                fill.asset.symbol,
                fill.side,
                qty_to_str(fill.qty),
                units_to_str(fill.price_units),
                f"{fill.value_cents / 100:.2f}",
                f"{fill.commission_cents / 100:.2f}",
            ]
            for fill in fills
        ),
    ]
    assert len(trades) == 5
    # A username a spreadsheet would run as a formula is written as text.
    assert {row[1] for row in trades[1:]} == {"ada", "'-bob", "'@cy"}

    assert standings[0] == [
        "rank", "username", "equity", "starting_cash", "return_pct", "sharpe", "max_drawdown", "status", "as_of",
    ]  # fmt: skip
    assert [(row[0], row[1], row[7]) for row in standings[1:]] == [
        ("1", "ada", "live"),
        ("2", "'@cy", "live"),
        ("3", "'-bob", "live"),
    ]
    # Numbers stay numbers: a loss is a negative figure, not text.
    assert standings[3][4].startswith("-") and float(standings[3][4]) < 0
    exported = repr(trades + standings)
    for client in players.values():
        assert client.account.account_number not in exported and str(client.account.pk) not in exported


def test_announcements_are_posted_by_the_organiser_and_read_by_players_newest_first(
    make_account: MakeAccount,
) -> None:
    teacher = key_client(make_account(username="teacher"))
    game = new_game(teacher.account, visibility=Game.Visibility.INVITE_ONLY)
    ada_default = make_account(username="ada")
    ada = join(game, ada_default)
    bob = join(game, make_account(username="bob"))
    outsider = key_client(make_account(username="eve"))
    url = f"/v2/games/{game.pk}/announcements"
    for minutes, text in ((1, "Welcome!"), (2, "  Markets open at 9:30.  ")):
        with time_machine.travel(BEFORE + dt.timedelta(minutes=minutes), tick=False):
            posted = teacher.post(url, {"text": text}, format="json")
        assert posted.status_code == 200, posted.content
        assert posted.json()["author"] == "teacher" and posted.json()["text"] == text.strip()

    for reader in (teacher, ada, key_client(ada_default), bob):
        listed = reader.get(url)
        assert listed.status_code == 200, listed.content
        assert [item["text"] for item in listed.json()] == ["Markets open at 9:30.", "Welcome!"]
    assert [item["text"] for item in ada.get(f"{url}?limit=1").json()] == ["Markets open at 9:30."]

    assert_alpaca_error(ada.post(url, {"text": "I win"}, format="json"), 403)
    assert_alpaca_error(teacher.post(url, {"text": "   "}, format="json"), 422)
    assert_alpaca_error(
        teacher.post(url, {"text": "x" * (GAME_ANNOUNCEMENT_MAX_LENGTH + 1)}, format="json"), 422
    )
    assert_alpaca_error(teacher.get(f"{url}?limit=0"), 422)
    # An invite-only game is not there for outsiders; a public one refuses them.
    assert_alpaca_error(outsider.get(url), 404)
    assert_alpaca_error(outsider.post(url, {"text": "hi"}, format="json"), 404)
    public = new_game(teacher.account)
    assert_alpaca_error(outsider.get(f"/v2/games/{public.pk}/announcements"), 403)
    assert_alpaca_error(
        outsider.post(f"/v2/games/{public.pk}/announcements", {"text": "hi"}, format="json"), 403
    )
    # A removed player no longer reads them.
    services.game_player_remove(
        game_id=game.pk, organiser_id=teacher.account.user_id, username="bob", now=BEFORE
    )
    bob_default = Account.objects.get(user__username="bob", is_default=True)
    assert_alpaca_error(key_client(bob_default).get(url), 403)
