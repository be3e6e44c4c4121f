"""Game leaderboards (docs/architecture.md, Game leaderboards): live boards ranked by return since
the start, refreshed for every running game at once and never older than the staleness bound, the
global boards still for default accounts only, and final standings frozen once at the end.

The wall clock is stopped before the game (rows the fixtures make are dated then); everything
after is an injected ``now`` and ticks stored at named instants."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext
from pytest_django.fixtures import Settings

from analytics import selectors, services
from analytics.models import AccountEquityDay, GameBoard, LeaderboardEntry
from config.cache import cache_manager, cache_manager_reset
from config.redis_pools import redis_client
from tests.builders import market_trade, set_quote, shares
from trading import calendar, services as trading
from trading.api.serializers import rfc3339
from trading.errors import InvalidRequest
from trading.models import Account, Asset, DailyBar, Game, MinuteBar, Order, StockPriceHistory
from trading.units import price_to_units

BEFORE = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)
START = dt.datetime(2025, 6, 2, 14, 0, tzinfo=dt.UTC)
DURING = START + dt.timedelta(hours=1)
END = START + dt.timedelta(days=2)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.time_machine(BEFORE, tick=False),
    pytest.mark.usefixtures("no_commission"),
]

MakeAccount = Callable[..., Account]


@pytest.fixture
def market(make_asset: Callable[..., Asset]) -> dict[str, Asset]:
    return {"AAPL": make_asset("AAPL", price="100.00"), "XOM": make_asset("XOM", price="50.00")}


def new_game(organiser: Account, *, starts_at: dt.datetime = START, ends_at: dt.datetime = END) -> Game:
    rules = trading.GameRules(
        name="Class", starts_at=starts_at, ends_at=ends_at, starting_cash_cents=1_000_000
    )
    return trading.game_create(organiser=organiser.user, rules=rules, now=BEFORE)


def join(game: Game, account: Account) -> Account:
    return trading.game_join(game_id=game.pk, user=account.user, now=BEFORE).account


def trade(account: Account, symbol: str, qty: int, *, side: str = "buy", now: dt.datetime = DURING) -> None:
    market_trade(account, symbol, qty, side=side, now=now)


def names(board: dict[str, Any]) -> list[str]:
    return [row["username"] for row in board["entries"]]


def test_players_rank_by_return_since_the_start_and_the_global_board_keeps_default_accounts(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada, bob, cy, dee = (make_account(username=name) for name in ("ada", "bob", "cy", "dee"))
    playing = {
        name: join(game, account) for name, account in (("ada", ada), ("bob", bob), ("cy", cy), ("dee", dee))
    }
    set_quote("AAPL", price="100.00", at=DURING)
    set_quote("XOM", price="50.00", at=DURING)
    trade(playing["ada"], "AAPL", 10)
    trade(playing["bob"], "XOM", 10)
    trade(playing["dee"], "AAPL", 50)  # the best of all, but removed
    trading.game_player_remove(game_id=game.pk, organiser_id=teacher.user.pk, username="dee", now=DURING)
    later = DURING + dt.timedelta(minutes=5)
    set_quote("AAPL", price="110.00", at=later)
    set_quote("XOM", price="40.00", at=later)

    with django_capture_on_commit_callbacks(execute=True):
        result = services.leaderboards_refresh_all(now=later)
    board = selectors.game_leaderboard_get_or_refresh(game=game, now=later)
    assert (board["status"], board["as_of"], board["player_count"]) == ("live", rfc3339(later), 3)
    assert names(board) == ["ada", "cy", "bob"]
    assert [row["rank"] for row in board["entries"]] == [1, 2, 3]
    ada_account = Account.objects.get(pk=playing["ada"].pk)
    ada_equity = ada_account.cash_cents + 10 * 110_00  # bought at the ask ($100.01), now $110
    first, second, third = board["entries"]
    assert first["equity"] == f"{ada_equity / 100:.2f}"
    assert first["return_pct"] == pytest.approx((ada_equity - 1_000_000) / 1_000_000 * 100, abs=1e-4)
    assert (second["equity"], second["return_pct"]) == ("10000.00", 0.0)
    assert third["return_pct"] < 0
    assert board["starting_cash"] == "10000.00"
    # Names only: no account numbers or ids of other players.
    text = repr(board)
    assert all(
        str(account.pk) not in text and account.account_number not in text for account in playing.values()
    )
    assert (
        selectors.game_leaderboard_get_or_refresh(game=game, limit=2, now=later)["entries"]
        == board["entries"][:2]
    )
    with pytest.raises(InvalidRequest):
        selectors.game_leaderboard_get_or_refresh(game=game, limit=0, now=later)

    # The global boards (refreshed by the same job run) hold each user's default account once.
    assert result.accounts == 5
    entries = selectors.leaderboard_get_or_refresh(period="overall", now=later)["entries"]
    assert sorted(names({"entries": entries})) == ["ada", "bob", "cy", "dee", "teacher"]
    assert not LeaderboardEntry.objects.filter(account__is_default=False).exists()


def test_one_refresh_costs_the_same_queries_for_any_number_of_games_and_players(
    market: dict[str, Asset], make_account: MakeAccount
) -> None:
    def refresh_queries(games: int, players: int) -> int:
        GameBoard.objects.all().delete()
        teacher = make_account()
        for _ in range(games):
            game = new_game(teacher)
            for _ in range(players):
                trade(join(game, make_account()), "AAPL", 1)
        with CaptureQueriesContext(connection) as queries:
            assert services.game_boards_refresh(now=DURING) >= games
        return len(queries)

    set_quote("AAPL", price="100.00", at=DURING)
    assert refresh_queries(1, 1) == refresh_queries(3, 4)


def test_the_job_refreshes_running_games_only_and_freezes_those_just_over(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    teacher = make_account()
    running = new_game(teacher)
    later_game = new_game(teacher, starts_at=END, ends_at=END + dt.timedelta(days=1))
    join(running, make_account())
    with django_capture_on_commit_callbacks(execute=True):
        services.leaderboards_refresh_all(now=DURING)
    assert set(GameBoard.objects.values_list("game_id", "final")) == {(running.pk, False)}
    # Each game keeps its two newest live boards.
    for minutes in (1, 2, 3):
        services.game_boards_refresh(now=DURING + dt.timedelta(minutes=minutes))
    kept = GameBoard.objects.filter(game=running).order_by("as_of").values_list("as_of", flat=True)
    assert list(kept) == [DURING + dt.timedelta(minutes=2), DURING + dt.timedelta(minutes=3)]

    # Within the freeze grace the game is over but not frozen yet; after it, frozen at the end.
    within = END + dt.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.leaderboards_refresh_all(now=within)
    assert not GameBoard.objects.filter(final=True).exists()
    after = END + services.game_freeze_grace() + dt.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.leaderboards_refresh_all(now=after)
    assert set(GameBoard.objects.values_list("game_id", "final", "as_of")) == {
        (running.pk, True, END),
        (later_game.pk, False, within),
        (later_game.pk, False, after),
    }


def test_a_reader_recomputes_a_board_older_than_the_bound(
    market: dict[str, Asset],
    make_account: MakeAccount,
    settings: Settings,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Property 11 for a game's board: one older than LEADERBOARD_MAX_STALENESS_S when read is
    recomputed first."""
    settings.LEADERBOARD_MAX_STALENESS_S = 5
    game = new_game(make_account())
    player = join(game, make_account(username="ada"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(player, "AAPL", 10)
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=DURING)
    set_quote("AAPL", price="150.00", at=DURING + dt.timedelta(seconds=1))

    inside = selectors.game_leaderboard_get_or_refresh(game=game, now=DURING + dt.timedelta(seconds=4.5))
    assert inside["as_of"] == rfc3339(DURING)  # within the bound: served as stored
    beyond = DURING + dt.timedelta(seconds=5.5)
    with django_capture_on_commit_callbacks(execute=True):
        fresh = selectors.game_leaderboard_get_or_refresh(game=game, now=beyond)
    assert fresh["as_of"] == rfc3339(beyond)
    player.refresh_from_db()
    assert fresh["entries"][0]["equity"] == f"{(player.cash_cents + 10 * 150_00) / 100:.2f}"
    # A game not started yet has a board too, made by its first reader.
    future = new_game(make_account(), starts_at=END, ends_at=END + dt.timedelta(days=1))
    join(future, make_account(username="bo"))
    early = selectors.game_leaderboard_get_or_refresh(game=future, now=DURING)
    assert (early["status"], names(early), early["entries"][0]["equity"]) == ("live", ["bo"], "10000.00")


def test_final_standings_freeze_at_the_end_and_never_move(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada, bob = make_account(username="ada"), make_account(username="bob")
    ada_game, bob_game = join(game, ada), join(game, bob)
    set_quote("AAPL", price="100.00", at=DURING)
    trade(ada_game, "AAPL", 10)
    early_end = DURING + dt.timedelta(hours=1)
    set_quote("AAPL", price="120.00", at=early_end - dt.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=early_end - dt.timedelta(seconds=30))
    with pytest.raises(InvalidRequest):
        services.game_standings_freeze(game_id=game.pk, now=early_end - dt.timedelta(seconds=1))
    game = trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=early_end)
    ada_game.refresh_from_db()
    cash_at_end = ada_game.cash_cents

    # After the end: the price moves, others trade, cash reaches a player's account.
    set_quote("AAPL", price="200.00", at=early_end + dt.timedelta(minutes=1))
    trade(bob, "AAPL", 5, now=early_end + dt.timedelta(minutes=2))  # bob's default account
    trading.account_grant_cash(
        account_id=bob_game.pk, amount_cents=500_000, now=early_end + dt.timedelta(minutes=3)
    )

    read_at = early_end + dt.timedelta(minutes=5)
    with django_capture_on_commit_callbacks(execute=True):
        final = selectors.game_leaderboard_get_or_refresh(game=game, now=read_at)
    assert (final["status"], final["as_of"]) == ("final", rfc3339(early_end))
    assert names(final) == ["ada", "bob"]
    # Priced at the last tick at or before the end ($120), with the cash held then.
    assert final["entries"][0]["equity"] == f"{(cash_at_end + 10 * 120_00) / 100:.2f}"
    assert final["entries"][1]["equity"] == "10000.00"
    assert GameBoard.objects.filter(game=game, final=False).count() == 0

    set_quote("AAPL", price="300.00", at=read_at + dt.timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        services.leaderboards_refresh_all(now=read_at + dt.timedelta(minutes=2))
        again = selectors.game_leaderboard_get_or_refresh(game=game, now=read_at + dt.timedelta(days=3))
    assert again == final
    board = GameBoard.objects.get(game=game, final=True)
    assert services.game_standings_freeze(game_id=game.pk, now=read_at + dt.timedelta(days=9)).pk == board.pk
    assert GameBoard.objects.filter(game=game).count() == 1


@pytest.mark.parametrize(
    ("minute_bars", "price_cents"),
    [("recent", 120_00), ("none", 110_00), ("older", 110_00)],
    ids=["minute-bar", "previous-close", "older-minute-bar"],
)
def test_a_symbol_with_no_tick_kept_is_priced_at_the_last_price_known_at_the_end(
    market: dict[str, Asset], make_account: MakeAccount, minute_bars: str, price_cents: int
) -> None:
    """The ticks are gone (retention) when the standings freeze: the fallback is whichever ended
    later of the last minute bar that ended by the end ($120 on the end day) and the close of the
    day before the end's ($110, which beats a minute bar of an earlier day: $90), never a bar that
    goes on after the end (the end day's own: $150; the minute starting at the end: $130)."""
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    player = join(game, make_account(username="ada"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(player, "AAPL", 10)
    StockPriceHistory.objects.filter(symbol="AAPL").delete()
    end_day = calendar.trading_day_of(END)

    def bar(model: type[DailyBar] | type[MinuteBar], start: dt.datetime, close: str) -> None:
        units = price_to_units(close)
        model.objects.create(symbol="AAPL", start=start, open_units=units, high_units=units,
                             low_units=units, close_units=units, volume=1, trade_count=1, vwap_units=units)  # fmt: skip

    bar(DailyBar, calendar.day_start(end_day - dt.timedelta(days=1)), "110.00")
    bar(DailyBar, calendar.day_start(end_day), "150.00")
    if minute_bars == "older":
        bar(MinuteBar, calendar.day_start(end_day - dt.timedelta(days=2)) + dt.timedelta(hours=15), "90.00")
    if minute_bars == "recent":
        bar(MinuteBar, END - dt.timedelta(minutes=2), "118.00")
        bar(MinuteBar, END - dt.timedelta(minutes=1), "120.00")
        bar(MinuteBar, END, "130.00")
    cash_at_end = Account.objects.get(pk=player.pk).cash_cents

    services.game_standings_freeze(game_id=game.pk, now=END + dt.timedelta(days=1))

    final = selectors.game_leaderboard_get_or_refresh(game=game, now=END + dt.timedelta(days=1))
    assert final["entries"][0]["equity"] == f"{(cash_at_end + 10 * price_cents) / 100:.2f}"


def test_the_first_days_move_counts_in_the_risk_figures(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    # A one-day game: without the starting cash on the eve of the start, a player's series would
    # be the end day alone, and a 40 % fall on the only day would show no drawdown.
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada_game = join(game, make_account(username="ada"))
    join(game, make_account(username="bob"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(ada_game, "AAPL", 99)  # nearly all in, at the ask ($100.01)
    end = DURING + dt.timedelta(hours=1)
    set_quote("AAPL", price="40.00", at=end - dt.timedelta(minutes=1))
    game = trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=end)
    with django_capture_on_commit_callbacks(execute=True):
        final = selectors.game_leaderboard_get_or_refresh(game=game, now=end + dt.timedelta(minutes=1))
    bob, ada = final["entries"]
    ada_game.refresh_from_db()
    fall = 1 - (ada_game.cash_cents + 99 * 40_00) / 1_000_000
    assert ada["username"] == "ada" and ada["max_drawdown"] == pytest.approx(fall, abs=1e-4)
    assert bob["max_drawdown"] == 0


def test_players_with_the_same_daily_equity_share_their_risk_figures_and_each_is_exact(
    market: dict[str, Asset], make_account: MakeAccount
) -> None:
    """The job computes the risk figures once per distinct series (most players of a large game
    have not traded): every player's Sharpe ratio and drawdown on the board are still exactly what
    their own series gives, idle players alike and the others each their own."""
    teacher = make_account(username="teacher")
    game = new_game(teacher, ends_at=START + dt.timedelta(days=10))
    names = ("ada", "bob", "cy", "dee", "eve")
    playing = {name: join(game, make_account(username=name)) for name in names}
    start_day = calendar.trading_day_of(START)
    days = [start_day + dt.timedelta(days=offset) for offset in range(3)]
    stored = {
        "ada": [1_010_000, 990_000, 1_030_000],
        "bob": [1_000_000, 1_000_000, 1_000_000],  # idle, as cy
        "cy": [1_000_000, 1_000_000, 1_000_000],
        "dee": [1_010_000, 990_000, 1_030_000],  # ada's series: the same figures
        "eve": [950_000, 1_020_000, 1_040_000],
    }
    AccountEquityDay.objects.bulk_create(
        AccountEquityDay(account_id=playing[name].pk, day=day, equity_cents=equity)
        for name, equities in stored.items()
        for day, equity in zip(days, equities, strict=True)
    )
    now = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(15), tzinfo=dt.UTC)
    assert services.game_boards_refresh(now=now, game_ids=[game.pk]) == 1
    board = selectors.game_leaderboard_get_or_refresh(game=game, now=now)
    today = calendar.trading_day_of(now)
    for entry in board["entries"]:
        series = [
            (start_day - dt.timedelta(days=1), 1_000_000, 0),
            *zip(days, stored[entry["username"]], [0, 0, 0], strict=True),
            (today, 1_000_000, 0),  # nobody traded: equity is the starting cash
        ]
        figures = services.risk_figures(
            points=series,
            today=today,
            risk_free_rate=django_settings.ANALYTICS_RISK_FREE_RATE,
            period_returns=False,
        )
        expected = (
            None if figures.sharpe is None else round(figures.sharpe, 4),
            None if figures.max_drawdown is None else round(figures.max_drawdown, 6),
        )
        assert (entry["sharpe"], entry["max_drawdown"]) == expected, entry["username"]
    by_name = {entry["username"]: entry for entry in board["entries"]}
    assert by_name["ada"]["sharpe"] == by_name["dee"]["sharpe"] is not None
    assert by_name["ada"]["sharpe"] != by_name["eve"]["sharpe"]
    assert by_name["bob"]["max_drawdown"] == by_name["cy"]["max_drawdown"] == 0


def test_a_game_ended_after_the_reader_loaded_it_answers_its_final_standings(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    join(game, make_account(username="ada"))
    loaded = Game.objects.get(pk=game.pk)  # as a view loaded it, before the organiser ended it
    end = DURING + dt.timedelta(minutes=10)
    trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=end)
    with django_capture_on_commit_callbacks(execute=True):
        # Read after the end with the game as loaded before it: no live board is written.
        board = selectors.game_leaderboard_whole_get_or_refresh(
            game=loaded, now=end + services.game_freeze_grace() + dt.timedelta(seconds=1)
        )
    assert (board["status"], board["as_of"]) == ("final", rfc3339(end))


def test_every_players_rank_is_reachable_a_page_at_a_time_and_each_sees_their_own(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    game = new_game(make_account(username="teacher"))
    set_quote("AAPL", price="100.00", at=DURING)
    playing = {}
    for index in range(7):
        name = f"p{index}"
        playing[name] = join(game, make_account(username=name))
        if index:
            trade(playing[name], "AAPL", index)  # more shares, more lost to the spread: a lower rank
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=DURING)
    whole = selectors.game_leaderboard_get_or_refresh(game=game, now=DURING)
    assert names(whole) == [f"p{index}" for index in range(7)] and whole["offset"] == 0
    pages = [
        selectors.game_leaderboard_get_or_refresh(game=game, limit=3, offset=offset, now=DURING)
        for offset in (0, 3, 6, 9)
    ]
    assert [row for page in pages for row in page["entries"]] == whole["entries"]
    assert [page["offset"] for page in pages] == [0, 3, 6, 9] and pages[3]["entries"] == []
    mine = selectors.game_leaderboard_get_or_refresh(game=game, limit=2, username="p5", now=DURING)
    assert names(mine) == ["p0", "p1"] and mine["me"] == whole["entries"][5]
    assert selectors.game_leaderboard_get_or_refresh(game=game, username="teacher", now=DURING)["me"] is None
    with pytest.raises(InvalidRequest):
        selectors.game_leaderboard_get_or_refresh(game=game, offset=-1, now=DURING)


def test_a_game_board_is_one_row_and_a_deleted_account_leaves_the_final_standings(
    market: dict[str, Asset], make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    """Item 6 of the scale work: the standings name players by username, no account key."""
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada, bob = join(game, make_account(username="ada")), join(game, make_account(username="bob"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(ada, "AAPL", 10)
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=DURING)
    assert GameBoard.objects.filter(game=game).count() == 1
    end = DURING + dt.timedelta(hours=1)
    trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=end)
    read_at = end + dt.timedelta(minutes=1)
    with django_capture_on_commit_callbacks(execute=True):
        final = selectors.game_leaderboard_get_or_refresh(game=game, now=read_at)
    get_user_model().objects.filter(pk=bob.user_id).delete()  # bob's user and both his accounts
    assert not Account.objects.filter(pk=bob.pk).exists()
    cache_manager().invalidate(services.game_standings_cache_key(game.pk))
    again = selectors.game_leaderboard_get_or_refresh(game=game, now=read_at + dt.timedelta(days=1))
    assert again == final and names(again) == ["bob", "ada"]


def test_the_freeze_waits_out_the_grace_for_ticks_the_writer_stores_late(
    market: dict[str, Asset],
    make_account: MakeAccount,
    settings: Settings,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Within GAME_FREEZE_GRACE_S of the end the last live board answers ("closing") and nothing
    freezes; a tick from before the end stored late (the writer's lag) is in the final standings."""
    settings.GAME_FREEZE_GRACE_S = 5
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada = join(game, make_account(username="ada"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(ada, "AAPL", 10)
    end = DURING + dt.timedelta(hours=1)
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=end - dt.timedelta(seconds=2))
    game = trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=end)

    within = end + dt.timedelta(seconds=3)
    closing = selectors.game_leaderboard_get_or_refresh(game=game, now=within)
    assert (closing["status"], closing["as_of"]) == ("closing", rfc3339(end - dt.timedelta(seconds=2)))
    with pytest.raises(InvalidRequest):
        services.game_standings_freeze(game_id=game.pk, now=within)
    assert services.game_standings_freeze_due(now=within) == 0
    # The writer stores the last tick before the end only now, inside the grace.
    set_quote("AAPL", price="130.00", at=end - dt.timedelta(milliseconds=300))
    ada.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.game_standings_freeze_due(now=end + dt.timedelta(seconds=5)) == 1
        final = selectors.game_leaderboard_get_or_refresh(game=game, now=end + dt.timedelta(seconds=6))
    assert (final["status"], final["as_of"]) == ("final", rfc3339(end))
    assert final["entries"][0]["equity"] == f"{(ada.cash_cents + 10 * 130_00) / 100:.2f}"


def test_a_game_over_before_its_first_board_shows_its_standings_at_the_end_while_closing(
    market: dict[str, Asset],
    make_account: MakeAccount,
    settings: Settings,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """The game ended before the job ever computed its board: within the grace the closing board
    counts every player (not 0) and ranks them as of the end, as the freeze then stores them, and
    the final standings (same players, same figures) follow."""
    settings.GAME_FREEZE_GRACE_S = 5
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    ada, bob, _ = (join(game, make_account(username=name)) for name in ("ada", "bob", "cy"))
    set_quote("AAPL", price="100.00", at=DURING)
    trade(ada, "AAPL", 10)
    trade(bob, "AAPL", 10)
    trade(bob, "AAPL", 10, side="sell", now=DURING + dt.timedelta(minutes=1))
    end = DURING + dt.timedelta(hours=1)
    set_quote("AAPL", price="120.00", at=end - dt.timedelta(minutes=1))
    game = trading.game_end(game_id=game.pk, organiser_id=teacher.user.pk, now=end)
    assert not GameBoard.objects.filter(game=game).exists()

    closing = selectors.game_leaderboard_get_or_refresh(
        game=game, username="bob", now=end + dt.timedelta(seconds=1)
    )
    assert (closing["status"], closing["as_of"], closing["player_count"]) == ("closing", rfc3339(end), 3)
    assert names(closing) == ["ada", "cy", "bob"]  # ada gained, cy held cash, bob paid the spread
    assert closing["me"] == closing["entries"][2]
    assert not GameBoard.objects.filter(game=game).exists()  # a read: nothing stored
    rows = list(
        selectors.game_standings_csv_rows_get_or_refresh(game=game, now=end + dt.timedelta(seconds=2))
    )
    assert [row[1] for row in rows[1:]] == ["ada", "cy", "bob"] and {row[7] for row in rows[1:]} == {
        "closing"
    }

    with django_capture_on_commit_callbacks(execute=True):
        assert services.game_standings_freeze_due(now=end + dt.timedelta(seconds=5)) == 1
    final = selectors.game_leaderboard_get_or_refresh(game=game, now=end + dt.timedelta(seconds=6))
    assert final["status"] == "final"
    assert final["entries"] == closing["entries"]
    assert final["player_count"] == 3


@pytest.fixture
def short_cache_locks(settings: Settings) -> Any:
    settings.CACHE_LOCK_SECONDS = 0.6
    settings.CACHE_LOCK_WAIT_SECONDS = 0.1
    cache_manager_reset()
    yield
    cache_manager_reset()


def test_a_reader_facing_a_board_another_process_is_recomputing_waits_instead_of_recomputing(
    market: dict[str, Asset],
    make_account: MakeAccount,
    short_cache_locks: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Property 11 with bounded work: while one process holds the game's refresh lock, a reader of
    the stale board neither recomputes it beside that process nor serves it stale; once the lock's
    lifetime has passed with no fresh board it answers 503, and the next reader refreshes."""
    game = new_game(make_account())
    join(game, make_account(username="ada"))
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=DURING)
    stale_at = DURING + dt.timedelta(seconds=30)
    # Another process's lock, held for longer than this reader waits.
    lock = f"{cache_manager().config.prefix}:lock:game-board-refresh:{game.pk}"
    redis_client().set(lock, "another process", px=60_000)
    try:
        with pytest.raises(selectors.BoardUnavailable) as refused:
            selectors.game_leaderboard_get_or_refresh(game=game, now=stale_at)
        assert refused.value.status == 503
        assert list(GameBoard.objects.filter(game=game).values_list("as_of", flat=True)) == [DURING]
    finally:
        redis_client().delete(lock)
    with django_capture_on_commit_callbacks(execute=True):
        fresh = selectors.game_leaderboard_get_or_refresh(game=game, now=stale_at)
    assert fresh["as_of"] == rfc3339(stale_at)


def test_a_reader_that_came_just_after_a_holder_that_died_takes_over_when_its_lock_expires(
    market: dict[str, Asset],
    make_account: MakeAccount,
    short_cache_locks: None,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """Property 11: a holder that dies right after taking the lock leaves it for its whole
    lifetime; a reader that came at that moment refreshes once it expires, not a 503."""
    game = new_game(make_account())
    join(game, make_account(username="ada"))
    with django_capture_on_commit_callbacks(execute=True):
        services.game_boards_refresh(now=DURING)
    stale_at = DURING + dt.timedelta(seconds=30)
    lock = f"{cache_manager().config.prefix}:lock:game-board-refresh:{game.pk}"
    # Taken just now by a process that then died: it expires after the lock's full lifetime.
    redis_client().set(lock, "a dead process", px=int(cache_manager().config.lock_seconds * 1000))
    with django_capture_on_commit_callbacks(execute=True):
        fresh = selectors.game_leaderboard_get_or_refresh(game=game, now=stale_at)
    assert fresh["as_of"] == rfc3339(stale_at)


def game_with_a_resting_buy(make_account: MakeAccount) -> tuple[Game, Order, dt.datetime]:
    """A game ending an hour after DURING whose one player (ada, $10,000.00) has a limit buy of 10
    AAPL at $90.00 resting since DURING (AAPL at $100.00): the game, the order and the end."""
    end = DURING + dt.timedelta(hours=1)
    game = new_game(make_account(username="teacher"), ends_at=end)
    ada = join(game, make_account(username="ada"))
    set_quote("AAPL", price="100.00", at=DURING)
    resting = trading.order_place(
        account_id=ada.pk,
        request=trading.OrderRequest(
            symbol="AAPL",
            qty=shares(10),
            side="buy",
            type="limit",
            time_in_force="gtc",
            limit_price_units=price_to_units("90.00"),
        ),
        now=DURING,
    )
    assert resting.status == "new"
    return game, resting, end


# A commit another connection makes between two of the board's reads (on SQLite, to the test
# database's WAL file: tests/settings.py).
@pytest.mark.django_db(transaction=True)
def test_the_closing_board_reads_cash_and_positions_of_one_moment_and_is_kept_briefly(
    market: dict[str, Asset], make_account: MakeAccount
) -> None:
    """Within the grace, a game that ended (at ``ends_at``) before its first live board: a fill
    stamped before the end (the market commits a moment late) commits between the closing board's
    read of the players' cash and its read of their positions. The board counts it wholly or not
    at all (here not: its reads see the moment of its first), never the cash still held and the
    shares already bought. It is cached for CACHE_TTLS["game_closing"], not the leaderboard TTL.

    The board's read takes no write lock: on SQLite the fill (BEGIN IMMEDIATE, on a connection of
    its own that does not wait for a lock) commits while the board's transaction is open; it
    found the database locked when that transaction began IMMEDIATE too."""
    game, resting, end = game_with_a_resting_buy(make_account)
    state = {"filled": False}

    def fill() -> None:
        try:
            if connection.vendor == "sqlite":
                with connection.cursor() as cursor:
                    # "database is locked" at once, not after the busy timeout, if the board holds it.
                    cursor.execute("PRAGMA busy_timeout = 0")
            filled = trading.order_fill(
                order_id=resting.pk, price_units=price_to_units("90.00"), now=end - dt.timedelta(seconds=1)
            )
            state["filled"] = filled is not None and filled.status == "filled"
        finally:
            connections.close_all()

    def fill_after_the_cash_read(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if '"cash_cents" FROM "trading_account"' in sql and not state["filled"]:
            filler = threading.Thread(target=fill)
            filler.start()
            filler.join(60)
        return result

    with connection.execute_wrapper(fill_after_the_cash_read):
        closing = selectors.game_leaderboard_get_or_refresh(game=game, now=end + dt.timedelta(seconds=1))
    assert state["filled"]
    assert (closing["status"], closing["player_count"]) == ("closing", 1)
    # Before the fill: $10,000.00 cash. After: $9,100.00 and 10 shares at $100.00, $10,100.00.
    assert closing["entries"][0]["equity"] == "10000.00"
    key = f"{cache_manager().config.prefix}:v:{services.game_closing_cache_key(game.pk)}"
    assert 0 < redis_client().pttl(key) <= django_settings.CACHE_TTLS["game_closing"] * 1000
    assert django_settings.CACHE_TTLS["game_closing"] < django_settings.CACHE_TTLS["leaderboard"]


# As above, a commit another connection tries to make between two of the freeze's reads.
@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_the_freeze_reads_cash_and_positions_of_one_moment(
    market: dict[str, Asset], make_account: MakeAccount
) -> None:
    """Past the grace, a fill stamped before the end (its transaction late) is tried between the
    freeze's read of the players' cash and its read of their positions. The freeze holds the
    accounts' locks from before its first read, so the fill waits for it and the final standings
    count it not at all (the fill commits after), never the cash still held and the shares already
    bought ($10,000.00 cash and 10 shares at $100.00: $11,000.00)."""
    game, resting, end = game_with_a_resting_buy(make_account)
    state: dict[str, Any] = {"filled": False, "pid": None}

    def fill() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                state["pid"] = cursor.fetchone()[0]
            filled = trading.order_fill(
                order_id=resting.pk, price_units=price_to_units("90.00"), now=end - dt.timedelta(seconds=1)
            )
            state["filled"] = filled is not None and filled.status == "filled"
        finally:
            connections.close_all()

    def blocked_by_this_connection() -> bool:
        """Whether the filler waits for a lock this connection holds (read beside Django's cursor,
        so this wrapper does not see its own query)."""
        if state["pid"] is None:
            return False
        with connection.connection.cursor() as raw:
            raw.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", [state["pid"]])
            row = raw.fetchone()
        return bool(row and row[0])

    filler = threading.Thread(target=fill)

    def fill_after_the_cash_read(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if '"cash_cents" FROM "trading_account"' in sql and not filler.is_alive() and not state["filled"]:
            filler.start()
            # Until the fill has committed (reads without the locks) or waits for this
            # transaction: either way the freeze's next reads come after.
            pause = threading.Event()
            for _ in range(6000):
                if not filler.is_alive() or blocked_by_this_connection():
                    break
                pause.wait(0.01)
        return result

    frozen_at = end + services.game_freeze_grace() + dt.timedelta(seconds=1)
    with connection.execute_wrapper(fill_after_the_cash_read):
        board = services.game_standings_freeze(game_id=game.pk, now=frozen_at)
    filler.join(60)
    assert state["filled"]  # committed once the freeze let go of the account
    assert board.player_count == 1
    final = selectors.game_leaderboard_get_or_refresh(game=game, now=frozen_at)
    assert (final["status"], final["entries"][0]["equity"]) == ("final", "10000.00")


def test_the_freeze_locks_the_accounts_it_prices_before_reading_them_on_postgresql_only(
    market: dict[str, Asset], make_account: MakeAccount
) -> None:
    """PostgreSQL: one statement locks the players' accounts, in key order, before the cash read. SQLite: the same statements as before, none of them locking (its
    IMMEDIATE transaction is serialised already)."""
    teacher = make_account(username="teacher")
    game = new_game(teacher)
    for name in ("ada", "bob", "cy"):
        join(game, make_account(username=name))
    trading.game_player_remove(game_id=game.pk, organiser_id=teacher.user.pk, username="cy", now=DURING)
    with CaptureQueriesContext(connection) as queries:
        services.game_standings_freeze(game_id=game.pk, now=END + dt.timedelta(days=1))
    statements = [query["sql"] for query in queries.captured_queries]
    locks = [sql for sql in statements if 'FROM "trading_account"' in sql and "FOR NO KEY UPDATE" in sql]
    cash_read = next(i for i, sql in enumerate(statements) if '"cash_cents" FROM "trading_account"' in sql)
    if connection.vendor == "postgresql":
        assert len(locks) == 1
        assert statements.index(locks[0]) < cash_read
    else:
        assert not locks
        assert not [sql for sql in statements if " FOR " in sql and "UPDATE" in sql]


def test_the_closing_boards_snapshot_refuses_to_read_inside_a_callers_transaction(
    make_account: MakeAccount,
) -> None:
    """Inside a caller's transaction the snapshot's isolation cannot be set (on PostgreSQL the
    caller's first statement set READ COMMITTED): it says so instead of reading one moment per
    statement unseen. On its own it reads."""
    game = new_game(make_account(username="teacher"), ends_at=DURING + dt.timedelta(hours=1))
    join(game, make_account(username="ada"))
    with transaction.atomic():
        Game.objects.filter(pk=game.pk).exists()
        with pytest.raises(TransactionManagementError, match="must not run inside a caller's"):
            services.game_board_at_end_get(game=game)
    assert services.game_board_at_end_get(game=game).player_count == 1
