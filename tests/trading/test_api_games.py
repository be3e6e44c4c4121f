"""``/v2/games`` (README, Running a game): an organiser scripts a game, players join with their
key, a game account's key trades only its own account, and every refusal is in Alpaca's shape.
The clock is pinned with time-machine: the API reads the time itself."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine

from tests.trading.api_support import KeyClient, assert_alpaca_error, key_client, post_order
from trading.models import Account, Asset, Order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

BEFORE = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)
START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
DURING = START + dt.timedelta(hours=1)
END = START + dt.timedelta(days=2)

MakeAccount = Callable[..., Account]


@pytest.fixture
def organiser(make_account: MakeAccount) -> KeyClient:
    return key_client(make_account(username="teacher"))


def create(client: KeyClient, **fields: object) -> dict[str, object]:
    body = {
        "name": "Class of 2025",
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
        "starting_cash": "10000.00",
        **fields,
    }
    with time_machine.travel(BEFORE, tick=False):
        response = client.post("/v2/games", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def join(client: KeyClient, game: dict[str, object], code: str = "") -> KeyClient:
    """Join as the key's user; the key for the new game account, as the API keys page makes it."""
    with time_machine.travel(BEFORE, tick=False):
        response = client.post(f"/v2/games/{game['id']}/join", {"invite_code": code}, format="json")
    assert response.status_code == 200, response.content
    return key_client(Account.objects.get(pk=response.json()["account_id"]))


def test_an_organiser_scripts_a_game_and_players_trade_under_its_rules(
    asset: Asset, organiser: KeyClient, make_account: MakeAccount
) -> None:
    game = create(organiser, allowed_order_types=["market", "limit"], max_position_percent="50")
    assert game["max_position_percent"] == "50.00" and game["starting_cash"] == "10000.00"
    assert game["invite_code"]  # the organiser sees it
    player_default = key_client(make_account(username="ada"))
    with time_machine.travel(BEFORE, tick=False):
        listed = player_default.get("/v2/games").json()
    assert [(g["id"], g["invite_code"], g["player_count"]) for g in listed] == [(game["id"], None, 0)]
    player = join(player_default, game)

    with time_machine.travel(BEFORE, tick=False):
        body = assert_alpaca_error(post_order(player, symbol="AAPL", qty="1"), 403)
    assert body["message"] == "game rule: the game has not started yet"
    with time_machine.travel(DURING, tick=False):
        assert post_order(player, symbol="AAPL", qty="10").status_code == 200
        refused = assert_alpaca_error(
            post_order(player, symbol="AAPL", qty="1", type="stop", stop_price="120"), 403
        )
        assert "stop orders are not allowed" in refused["message"]
        too_big = assert_alpaca_error(post_order(player, symbol="AAPL", qty="45"), 403)
        assert (
            "at most 50.00 % of equity" in too_big["message"]
            or "at most 50 % of equity" in too_big["message"]
        )
        account = player.get("/v2/account").json()
        assert account["cash"] == "8999.90"  # 10,000 less 10 x $100.01

        ended = organiser.post(f"/v2/games/{game['id']}/end")
        assert ended.status_code == 200 and ended.json()["ended_at"]
        assert_alpaca_error(post_order(player, symbol="AAPL", qty="1"), 403)


def test_a_game_key_never_reaches_the_users_other_accounts(
    asset: Asset, organiser: KeyClient, make_account: MakeAccount
) -> None:
    default = make_account(username="grace")
    player = join(key_client(default), create(organiser))
    with time_machine.travel(DURING, tick=False):
        order = post_order(player, symbol="AAPL", qty="1").json()
    assert player.get("/v2/account").json()["id"] == str(player.account.pk)
    assert player.get("/v2/account").json()["id"] != str(default.pk)
    default_order = Order.objects.create(
        account=default, client_order_id="mine", asset=asset, side="buy", position_intent="buy_to_open",
        type="limit", time_in_force="gtc", qty=10**9, limit_price_units=10_000, submitted_at=DURING,
    )  # fmt: skip
    assert_alpaca_error(player.get(f"/v2/orders/{default_order.pk}"), 404)
    assert [o["id"] for o in player.get("/v2/orders?status=all").json()] == [order["id"]]
    assert_alpaca_error(key_client(default).get(f"/v2/orders/{order['id']}"), 404)


def test_only_the_organiser_ends_a_game_or_removes_a_player(
    asset: Asset, organiser: KeyClient, make_account: MakeAccount
) -> None:
    game = create(organiser)
    player_default = key_client(make_account(username="linus"))
    player = join(player_default, game)
    assert_alpaca_error(player_default.post(f"/v2/games/{game['id']}/end"), 403)
    assert_alpaca_error(player_default.delete(f"/v2/games/{game['id']}/players/linus"), 403)
    with time_machine.travel(DURING, tick=False):
        removed = organiser.delete(f"/v2/games/{game['id']}/players/linus")
        assert removed.status_code == 200 and removed.json()["removed_at"]
        # The game account's key is revoked at once.
        assert_alpaca_error(post_order(player, symbol="AAPL", qty="1"), 401)
    assert_alpaca_error(organiser.delete(f"/v2/games/{game['id']}/players/nobody"), 404)


def test_invite_only_games_are_hidden_without_their_code(
    organiser: KeyClient, make_account: MakeAccount
) -> None:
    game = create(organiser, visibility="invite_only")
    stranger = key_client(make_account())
    with time_machine.travel(BEFORE, tick=False):
        assert stranger.get("/v2/games").json() == []
        assert_alpaca_error(stranger.get(f"/v2/games/{game['id']}"), 404)
        assert_alpaca_error(
            stranger.post(f"/v2/games/{game['id']}/join", {"invite_code": "x"}, format="json"), 404
        )
    join(stranger, game, code=str(game["invite_code"]))
    with time_machine.travel(BEFORE, tick=False):
        seen = stranger.get(f"/v2/games/{game['id']}").json()
    assert seen["player_count"] == 1 and seen["invite_code"] is None


def test_rules_change_by_patch_until_the_start(organiser: KeyClient) -> None:
    game = create(organiser)
    with time_machine.travel(BEFORE, tick=False):
        changed = organiser.patch(f"/v2/games/{game['id']}", {"shorting_allowed": True}, format="json")
        assert changed.status_code == 200 and changed.json()["shorting_allowed"] is True
    with time_machine.travel(START, tick=False):
        assert_alpaca_error(organiser.patch(f"/v2/games/{game['id']}", {"name": "x"}, format="json"), 403)


@pytest.mark.parametrize(
    "fields",
    [
        {"starting_cash": "-1"},
        {"ends_at": START.isoformat()},
        {"allowed_order_types": ["iceberg"]},
        {"allowed_order_classes": ["bracket"]},
        {"max_position_percent": "0"},
        {"max_position_percent": "100.01"},
        {"player_cap": 0},
        {"visibility": "secret"},
        {"commission_plan_id": 999},
    ],
)
def test_bad_rules_answer_422(organiser: KeyClient, fields: dict[str, object]) -> None:
    body = {
        "name": "g",
        "starts_at": START.isoformat(),
        "ends_at": END.isoformat(),
        "starting_cash": "1",
        **fields,
    }
    with time_machine.travel(BEFORE, tick=False):
        assert_alpaca_error(organiser.post("/v2/games", body, format="json"), 422)


def test_unknown_games_are_404(organiser: KeyClient) -> None:
    assert_alpaca_error(organiser.get("/v2/games/not-a-uuid"), 404)
    assert_alpaca_error(organiser.post("/v2/games/00000000-0000-0000-0000-000000000000/join"), 404)
