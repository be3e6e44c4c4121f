"""Trading games (docs/architecture.md, Games): creating, joining and ending a game, and the rules
order placement enforces for a game account, each refused and allowed at its edge, in Alpaca's
error shape. Time is the ``now`` each call is given, never the wall clock.

The asset trades at $100.00 (bid $99.99, ask $100.01) with no commission.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from pytest_django.fixtures import Settings

from tests.trading.api_support import assert_alpaca_error, key_client
from tests.trading.test_services import assert_books_balance, fresh, place
from trading import selectors, services
from trading.errors import Forbidden, InvalidRequest, NotFound
from trading.models import Account, ApiKey, Asset, CommissionPlan, Game, GamePlayer, Order

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
END = START + dt.timedelta(days=5)
BEFORE = START - dt.timedelta(hours=1)
DURING = START + dt.timedelta(hours=1)

MakeAccount = Callable[..., Account]


def rules(**fields: object) -> services.GameRules:
    values: dict[str, object] = {
        "name": "Class of 2025",
        "starts_at": START,
        "ends_at": END,
        "starting_cash_cents": 1_000_000,
    }
    values.update(fields)
    return services.GameRules(**values)  # type: ignore[arg-type]


def new_game(organiser: User, **fields: object) -> Game:
    return services.game_create(organiser=organiser, rules=rules(**fields), now=BEFORE)


def join(game: Game, account: Account, *, now: dt.datetime = BEFORE, code: str = "") -> Account:
    player = services.game_join(game_id=game.pk, user=account.user, invite_code=code, now=now)
    return player.account


@pytest.fixture
def organiser(make_account: MakeAccount) -> User:
    return make_account(username="teacher").user


# --- creating and joining ------------------------------------------------------------------------


def test_joining_opens_a_further_account_with_the_games_cash(
    asset: Asset, organiser: User, account: Account
) -> None:
    game = new_game(organiser)
    game_account = join(game, account)
    assert (game_account.user_id, game_account.is_default, game_account.cash_cents) == (
        account.user_id,
        False,
        1_000_000,
    )
    assert_books_balance(game_account)
    assert fresh(account).cash_cents == 10_000_000  # the default account is untouched
    assert selectors.game_rules_for_account(account_id=game_account.pk) == game
    assert selectors.game_rules_for_account(account_id=account.pk) is None


def test_rules_are_validated(organiser: User) -> None:
    for bad in (
        {"ends_at": START},
        {"allowed_order_types": ("market", "iceberg")},
        {"allowed_order_types": ()},
        {"allowed_order_classes": ("bracket",)},
        {"max_position_share_bp": 0},
        {"max_position_share_bp": 10_001},
        {"visibility": "secret"},
        {"player_cap": 0},
        {"starting_cash_cents": -1},
        {"name": "  "},
    ):
        with pytest.raises(InvalidRequest):
            new_game(organiser, **bad)


def test_a_game_starts_at_most_a_day_in_the_past(organiser: User) -> None:
    # A start years back would have its boards price a past no tick or bar covers.
    a_day = services.GAME_START_BACKDATE_MAX
    for starts_at in (BEFORE - a_day - dt.timedelta(seconds=1), dt.datetime(1, 1, 2, tzinfo=dt.UTC)):
        with pytest.raises(InvalidRequest, match="more than a day in the past"):
            new_game(organiser, starts_at=starts_at)
    assert new_game(organiser, starts_at=BEFORE - a_day).starts_at == BEFORE - a_day


def test_the_organiser_cannot_play_in_their_own_game(organiser: User, make_account: MakeAccount) -> None:
    # The organiser reads every player's trades while the game runs.
    game = new_game(organiser)
    before = Account.objects.filter(user=organiser).count()
    with pytest.raises(Forbidden, match="organiser of a game cannot play"):
        services.game_join(game_id=game.pk, user=organiser, now=BEFORE)
    assert Account.objects.filter(user=organiser).count() == before
    assert join(game, make_account()).user != organiser


def test_staff_only_organising(settings: Settings, organiser: User) -> None:
    settings.GAME_CREATE_STAFF_ONLY = True
    with pytest.raises(Forbidden, match="staff"):
        new_game(organiser)
    organiser.is_staff = True
    assert new_game(organiser).organiser == organiser


def test_invite_only_games_need_their_code(organiser: User, make_account: MakeAccount) -> None:
    game = new_game(organiser, visibility="invite_only")
    assert len(game.invite_code) >= 20
    stranger = make_account()
    with pytest.raises(NotFound):
        join(game, stranger, code="wrong")
    with pytest.raises(NotFound):
        selectors.game_get(game_id=game.pk, user_id=stranger.user_id)
    assert game not in selectors.game_list_public(now=BEFORE)
    join(game, stranger, code=game.invite_code)
    assert selectors.game_get(game_id=game.pk, user_id=stranger.user_id) == game


def test_the_player_cap_is_met_exactly(organiser: User, make_account: MakeAccount) -> None:
    game = new_game(organiser, player_cap=2)
    join(game, make_account())
    join(game, make_account())
    with pytest.raises(Forbidden, match="full"):
        join(game, make_account())


def test_one_place_per_user(organiser: User, account: Account) -> None:
    game = new_game(organiser)
    join(game, account)
    with pytest.raises(Forbidden, match="already"):
        join(game, account)


def test_late_joining_at_its_edges(organiser: User, make_account: MakeAccount) -> None:
    closed = new_game(organiser, late_joining_allowed=False)
    join(closed, make_account(), now=START - dt.timedelta(microseconds=1))
    with pytest.raises(Forbidden, match="late joining"):
        join(closed, make_account(), now=START)
    open_ = new_game(organiser)
    join(open_, make_account(), now=END - dt.timedelta(microseconds=1))
    with pytest.raises(Forbidden, match="over"):
        join(open_, make_account(), now=END)


def test_rules_change_only_before_the_start(organiser: User, make_account: MakeAccount) -> None:
    game = new_game(organiser)
    player = join(game, make_account())
    updated = services.game_update(
        game_id=game.pk, organiser_id=organiser.pk, rules=rules(starting_cash_cents=500_000), now=BEFORE
    )
    assert updated.starting_cash_cents == 500_000
    assert fresh(player).cash_cents == 500_000  # joined players follow the new cash
    assert_books_balance(player)
    with pytest.raises(Forbidden, match="organiser"):
        services.game_update(game_id=game.pk, organiser_id=player.user_id, rules=rules(), now=BEFORE)
    with pytest.raises(Forbidden, match="started"):
        services.game_update(game_id=game.pk, organiser_id=organiser.pk, rules=rules(), now=START)


def test_a_rule_edit_keeps_each_players_own_shorting_choice(
    asset: Asset, organiser: User, make_account: MakeAccount
) -> None:
    """The game's shorting rule is a ceiling over each player's own no_shorting: an edit before the
    start recomputes the account's shorting under the new ceiling and never loses, nor lifts, what
    the player chose, even a choice made while the ceiling hid it."""
    game = new_game(organiser, shorting_allowed=True)
    follower, tightener, later_tightener, asked_for_shorts = (join(game, make_account()) for _ in range(4))
    services.account_configure(account_id=tightener.pk, no_shorting=True, now=BEFORE)

    def edit(*, shorting_allowed: bool) -> None:
        services.game_update(
            game_id=game.pk,
            organiser_id=organiser.pk,
            rules=rules(shorting_allowed=shorting_allowed),
            now=BEFORE,
        )

    def may_short(account: Account) -> bool:
        return fresh(account).shorting_enabled

    edit(shorting_allowed=False)
    assert not any(may_short(a) for a in (follower, tightener, later_tightener, asked_for_shorts))
    # Choices made under the forbidding ceiling are kept, though they change nothing yet.
    services.account_configure(account_id=later_tightener.pk, no_shorting=True, now=BEFORE)
    services.account_configure(account_id=asked_for_shorts.pk, no_shorting=False, now=BEFORE)
    assert not may_short(asked_for_shorts)

    edit(shorting_allowed=True)
    assert [may_short(a) for a in (follower, tightener, later_tightener, asked_for_shorts)] == [
        True,
        False,
        False,
        True,
    ]
    assert place(follower, now=DURING, side="sell").position_intent == "sell_to_open"
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(tightener, now=DURING, side="sell")
    # The player may lift their own tightening while the game allows shorts.
    services.account_configure(account_id=tightener.pk, no_shorting=False, now=DURING)
    assert place(tightener, now=DURING, side="sell").position_intent == "sell_to_open"


# --- the trading window ------------------------------------------------------------------------------


def test_a_game_account_trades_only_inside_the_window(
    asset: Asset, organiser: User, account: Account
) -> None:
    game_account = join(new_game(organiser), account)
    with pytest.raises(Forbidden, match="not started"):
        place(game_account, now=START - dt.timedelta(microseconds=1))
    assert place(game_account, now=START).status == "filled"
    assert place(game_account, now=END - dt.timedelta(microseconds=1)).status == "filled"
    with pytest.raises(Forbidden, match="over"):
        place(game_account, now=END)
    # The user's default account is outside the game and trades whenever.
    assert place(account, now=BEFORE).status == "filled"


def test_ending_early_stops_trading_and_cancels_open_orders(
    asset: Asset, organiser: User, account: Account
) -> None:
    game = new_game(organiser)
    game_account = join(game, account)
    resting = place(game_account, now=DURING, type="limit", limit_price_units=900_000)
    assert resting.status == "new"
    with pytest.raises(Forbidden, match="organiser"):
        services.game_end(game_id=game.pk, organiser_id=account.user_id, now=DURING)
    services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=DURING)
    assert Order.objects.get(pk=resting.pk).status == "canceled"
    assert_books_balance(game_account)
    with pytest.raises(Forbidden, match="over"):
        place(game_account, now=DURING + dt.timedelta(seconds=1))
    with pytest.raises(Forbidden, match="over already"):
        services.game_end(game_id=game.pk, organiser_id=organiser.pk, now=DURING)


def test_a_removed_player_cannot_trade_and_loses_its_keys(
    asset: Asset, organiser: User, account: Account
) -> None:
    game = new_game(organiser)
    game_account = join(game, account)
    key, _secret = services.api_key_create(account_id=game_account.pk)
    default_key, _ = services.api_key_create(account_id=account.pk)
    resting = place(game_account, now=DURING, type="limit", limit_price_units=900_000)
    services.game_player_remove(
        game_id=game.pk, organiser_id=organiser.pk, username=account.user.username, now=DURING
    )
    assert GamePlayer.objects.get(account=game_account).removed_at == DURING
    assert Order.objects.get(pk=resting.pk).status == "canceled"
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert ApiKey.objects.get(pk=default_key.pk).revoked_at is None  # other accounts keep theirs
    with pytest.raises(Forbidden, match="removed"):
        place(game_account, now=DURING)


def test_players_stay_in_the_final_standings(organiser: User, make_account: MakeAccount) -> None:
    game = new_game(organiser)
    player = make_account()
    join(game, player)
    for after_the_end in (END, END + dt.timedelta(days=1)):
        with pytest.raises(Forbidden, match="game is over"):
            services.game_player_remove(
                game_id=game.pk, organiser_id=organiser.pk, username=player.user.username, now=after_the_end
            )
    assert GamePlayer.objects.get(game=game).removed_at is None


# --- order rules -------------------------------------------------------------------------------------


def test_order_types_outside_the_rules_are_refused(asset: Asset, organiser: User, account: Account) -> None:
    game_account = join(new_game(organiser, allowed_order_types=("limit",)), account)
    with pytest.raises(Forbidden, match="market orders are not allowed"):
        place(game_account, now=DURING)
    assert place(game_account, now=DURING, type="limit", limit_price_units=1_010_000).status == "filled"


def test_order_classes_outside_the_rules_are_refused(asset: Asset, organiser: User, account: Account) -> None:
    simple_only = join(new_game(organiser), account)
    legs = {"take_profit_limit_units": 1_100_000, "stop_loss_stop_units": 950_000}
    with pytest.raises(Forbidden, match="bracket orders are not allowed"):
        place(simple_only, now=DURING, order_class="bracket", **legs)
    other = join(new_game(organiser, allowed_order_classes=("simple", "bracket")), account)
    entry = place(other, now=DURING, order_class="bracket", **legs)
    assert (entry.status, Order.objects.filter(parent=entry).count()) == ("filled", 2)


def test_the_games_shorting_rule_is_a_ceiling(
    asset: Asset, organiser: User, make_account: MakeAccount
) -> None:
    no_shorts = join(new_game(organiser, shorting_allowed=False), make_account())
    # The account's own configuration cannot lift the game's rule.
    services.account_configure(account_id=no_shorts.pk, no_shorting=False, now=DURING)
    with pytest.raises(Forbidden, match="short selling is not allowed"):
        place(no_shorts, now=DURING, side="sell")

    shorts = join(new_game(organiser, shorting_allowed=True), make_account())
    assert place(shorts, now=DURING, side="sell").position_intent == "sell_to_open"
    # ...but it can tighten it.
    services.account_configure(account_id=shorts.pk, no_shorting=True, now=DURING)
    with pytest.raises(Forbidden, match="insufficient qty"):
        place(shorts, now=DURING, side="sell")


def test_closing_a_position_is_never_refused_by_the_size_rule(
    asset: Asset, organiser: User, account: Account
) -> None:
    game_account = join(new_game(organiser, max_position_share_bp=1_000), account)
    place(game_account, now=DURING, qty=9)  # $900.09 of $10,000: under 10 %
    with pytest.raises(Forbidden, match=r"at most 10\.00 % of equity"):
        place(game_account, now=DURING, qty=1)
    assert place(game_account, now=DURING, qty=9, side="sell").position_intent == "sell_to_close"


@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(share_bp=st.integers(min_value=1, max_value=10_000), qty=st.integers(min_value=1, max_value=120))
def test_the_position_size_rule_holds_at_its_edge(
    make_asset: Callable[..., Asset], make_account: MakeAccount, share_bp: int, qty: int
) -> None:
    """A buy of ``qty`` shares at the $100.01 ask is allowed exactly when its value is at most the
    share of the $10,000 equity (the equity before the fill: the fill moves cash into the position)."""
    if not Asset.objects.filter(symbol="AAPL").exists():
        make_asset("AAPL", price="100.00")
    organiser = make_account().user
    game_account = join(new_game(organiser, max_position_share_bp=share_bp), make_account())
    allowed = qty * 10_001 * 10_000 <= 1_000_000 * share_bp  # in cents times basis points
    if allowed:
        assert place(game_account, now=DURING, qty=qty, type="limit", limit_price_units=1_000_100).status
    else:
        with pytest.raises(Forbidden, match="game rule"):
            place(game_account, now=DURING, qty=qty, type="limit", limit_price_units=1_000_100)


def test_placement_loads_the_rules_with_the_account(asset: Asset, organiser: User, account: Account) -> None:
    """A game account's order reads its rules in the account's own query: its placement costs no
    more queries than the same order from an account outside any game."""
    game_account = join(new_game(organiser), account)
    with CaptureQueriesContext(connection) as plain:
        place(account, now=DURING)
    with CaptureQueriesContext(connection) as in_game:
        place(game_account, now=DURING)
    assert len(in_game.captured_queries) == len(plain.captured_queries)


def test_reset_in_a_game_restores_the_games_cash(asset: Asset, organiser: User, account: Account) -> None:
    game_account = join(new_game(organiser, self_reset_allowed=True), account)
    place(game_account, now=DURING, qty=3)
    services.account_reset(account_id=game_account.pk, now=DURING)
    assert fresh(game_account).cash_cents == 1_000_000
    assert_books_balance(game_account)


def test_reset_in_a_game_is_refused_unless_the_rules_allow_it(
    asset: Asset, organiser: User, account: Account
) -> None:
    game_account = join(new_game(organiser), account)
    with time_machine.travel(DURING, tick=False):
        body = assert_alpaca_error(key_client(game_account).post("/v2/account/reset"), 403)
    assert "resetting is not allowed" in body["message"]


def test_a_game_account_pays_its_games_commission_plan(
    asset: Asset, organiser: User, account: Account
) -> None:
    """The game's plan applies even if the operator has not made it the active one; a game
    without a plan, and any account outside a game, pays the operator's."""
    CommissionPlan.objects.create(name="house", per_order_cents=100)
    game_plan = CommissionPlan.objects.create(name="game", per_order_cents=7, active=False)
    in_planned_game = join(new_game(organiser, commission_plan_id=game_plan.pk), account)
    in_plain_game = join(new_game(organiser), account)
    for each in (in_planned_game, account, in_plain_game):
        assert place(each, now=DURING).fills.get().commission_cents == (7 if each == in_planned_game else 100)
        assert_books_balance(each)
