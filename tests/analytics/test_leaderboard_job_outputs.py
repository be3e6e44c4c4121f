"""The leaderboard job's outputs pinned on one varied book (docs/architecture.md, Game
leaderboards): the global boards, their fingerprints, a game's live board, the equity points and
the per-account analytics. A guard for the job's reads (book_load): they were made cheaper (the
reset compared by the database instead of decoded, rows as tuples) and must give what they gave.

Three trading days on injected instants: trades on each, a reset the day before, one exactly at
today's boundary, one after it, an account never reset, cash granted today, a sale today."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from analytics import services
from analytics.models import (
    AccountAnalytics,
    AccountEquityDay,
    GameBoard,
    LeaderboardEntry,
    LeaderboardSnapshot,
)
from tests.builders import market_trade, set_quote
from trading import calendar, services as trading
from trading.models import Account, Asset

DAY1 = dt.datetime(2025, 6, 2, 13, 0, tzinfo=dt.UTC)

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.time_machine(DAY1, tick=False),
    pytest.mark.usefixtures("no_commission"),
]


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 6, 1 + day, hour, minute, tzinfo=dt.UTC)


def name(account_id: Any) -> str:
    account = Account.objects.select_related("user").get(pk=account_id)
    return f"{account.user.username}{'' if account.is_default else '@game'}"


def test_the_jobs_outputs_on_a_varied_book_are_as_pinned(
    make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    make_asset("AAPL", price="100.00")
    make_asset("XOM", price="50.00")
    ada, bob, cy, dee, eve, fay = (
        make_account(username=n) for n in ("ada", "bob", "cy", "dee", "eve", "fay")
    )
    Account.objects.filter(pk=fay.pk).update(reset_at=None)
    game = trading.game_create(
        organiser=make_account(username="teacher").user,
        rules=trading.GameRules(
            name="Class", starts_at=at(1, 14), ends_at=at(5, 20), starting_cash_cents=1_000_000
        ),
        now=DAY1,
    )
    ada_game, bob_game = (
        trading.game_join(game_id=game.pk, user=a.user, now=DAY1).account for a in (ada, bob)
    )

    set_quote("AAPL", price="100.00", at=at(1, 15))
    set_quote("XOM", price="50.00", at=at(1, 15))
    market_trade(ada, "AAPL", 10, now=at(1, 15, 1))
    market_trade(ada_game, "XOM", 20, now=at(1, 15, 2))
    market_trade(bob_game, "AAPL", 5, now=at(1, 15, 3))
    market_trade(cy, "XOM", 3, now=at(1, 15, 4))
    market_trade(fay, "AAPL", 4, now=at(1, 15, 5))
    services.leaderboards_refresh_all(now=at(1, 20))

    set_quote("AAPL", price="110.00", at=at(2, 15))
    set_quote("XOM", price="45.00", at=at(2, 15))
    market_trade(bob, "AAPL", 2, now=at(2, 15, 1))
    trading.account_reset(account_id=cy.pk, now=at(2, 16))
    market_trade(cy, "AAPL", 1, now=at(2, 16, 1))
    services.leaderboards_refresh_all(now=at(2, 20))

    boundary = calendar.day_start(calendar.trading_day_of(at(3, 12)))
    trading.account_reset(account_id=eve.pk, now=boundary)
    set_quote("AAPL", price="120.00", at=at(3, 14))
    set_quote("XOM", price="47.00", at=at(3, 14))
    trading.account_reset(account_id=dee.pk, now=at(3, 15))
    market_trade(dee, "AAPL", 1, now=at(3, 15, 1))
    market_trade(eve, "XOM", 2, now=at(3, 15, 2))
    trading.account_grant_cash(account_id=bob.pk, amount_cents=100_000, now=at(3, 15, 30))
    market_trade(ada_game, "XOM", 10, side="sell", now=at(3, 16))
    now = at(3, 20)
    services.leaderboards_refresh_all(now=now)
    services.account_analytics_refresh(now=now)

    boards = {}
    for period in ("overall", "daily"):
        snapshot = LeaderboardSnapshot.objects.filter(period=period).order_by("-as_of", "-id").first()
        assert snapshot is not None
        entries = list(LeaderboardEntry.objects.filter(snapshot=snapshot).order_by("rank"))
        lines = "".join(f"{e.account_id}|{e.username}|{e.equity_cents}|{e.baseline_cents}\n" for e in entries)
        assert snapshot.fingerprint == hashlib.blake2b(lines.encode(), digest_size=32).hexdigest()
        boards[period] = [
            (e.rank, e.username, e.equity_cents, e.baseline_cents, e.return_pct) for e in entries
        ]
    board = GameBoard.objects.filter(game=game, final=False).order_by("-as_of", "-id").first()
    assert board is not None
    outputs = {
        "boards": boards,
        "game": (board.player_count, board.baseline_cents, board.standings),
        "equity_days": sorted(
            (name(a), day.isoformat(), equity, flows)
            for a, day, equity, flows in AccountEquityDay.objects.values_list(
                "account_id", "day", "equity_cents", "flows_cents"
            )
        ),
        "analytics": sorted(
            (
                name(row.account_id),
                row.equity_cents,
                row.return_1d,
                row.return_1w,
                row.return_1m,
                row.return_since_reset,
                row.volatility,
                row.max_drawdown,
                row.sharpe,
                row.rank,
                row.win_rate,
                row.closed_trades,
                row.sector_allocation,
            )
            for row in AccountAnalytics.objects.all()
        ),
    }
    assert outputs == EXPECTED


# As the job wrote them before its reads were made cheaper (at 93c284b), on both backends.
EXPECTED: dict[str, Any] = {
    "boards": {
        "overall": [
            (1, "ada", 10019990, 10000000, 0.001999),
            (2, "fay", 10007996, 10000000, 0.0007996),
            (3, "bob", 10101998, 10100000, 0.00019782178217821783),
            (4, "cy", 10000999, 10000000, 9.99e-05),
            (5, "teacher", 10000000, 10000000, 0.0),
            (6, "dee", 9999999, 10000000, -1e-07),
            (7, "eve", 9999998, 10000000, -2e-07),
        ],
        "daily": [
            (1, "bob", 10101998, 10101998, 0.0),
            (2, "ada", 10019990, 10019990, 0.0),
            (3, "fay", 10007996, 10007996, 0.0),
            (4, "cy", 10000999, 10000999, 0.0),
            (5, "teacher", 10000000, 10000000, 0.0),
            (6, "dee", 9999999, 10000000, -1e-07),
            (7, "eve", 9999998, 10000000, -2e-07),
        ],
    },
    "game": (
        2,
        1000000,
        [
            ["bob", 1009995, 0.009995, 18.302596109507373, 5.000000000032756e-06],
            ["ada", 993970, -0.00603, -4.389226557508293, 0.010020000000000029],
        ],
    ),
    "equity_days": [
        ("ada", "2025-06-02", 9999990, 0),
        ("ada", "2025-06-03", 10009990, 0),
        ("ada", "2025-06-04", 10019990, 0),
        ("ada@game", "2025-06-02", 999980, 0),
        ("ada@game", "2025-06-03", 989980, 0),
        ("ada@game", "2025-06-04", 993970, 0),
        ("bob", "2025-06-02", 10000000, 0),
        ("bob", "2025-06-03", 9999998, 0),
        ("bob", "2025-06-04", 10101998, 100000),
        ("bob@game", "2025-06-02", 999995, 0),
        ("bob@game", "2025-06-03", 1004995, 0),
        ("bob@game", "2025-06-04", 1009995, 0),
        ("cy", "2025-06-02", 9999997, 0),
        ("cy", "2025-06-03", 9999999, 0),
        ("cy", "2025-06-04", 10000999, 0),
        ("dee", "2025-06-02", 10000000, 0),
        ("dee", "2025-06-03", 10000000, 0),
        ("dee", "2025-06-04", 9999999, 0),
        ("eve", "2025-06-02", 10000000, 0),
        ("eve", "2025-06-03", 10000000, 0),
        ("eve", "2025-06-04", 9999998, 0),
        ("fay", "2025-06-02", 9999996, 10000000),
        ("fay", "2025-06-03", 10003996, 0),
        ("fay", "2025-06-04", 10007996, 0),
        ("teacher", "2025-06-02", 10000000, 0),
        ("teacher", "2025-06-03", 10000000, 0),
        ("teacher", "2025-06-04", 10000000, 0),
    ],
    "analytics": [
        (
            "ada",
            10019990,
            0.0,
            0.0020000020000021657,
            0.0020000020000021657,
            0.001999,
            1.1213780818267493e-05,
            0.0,
            22461.14684286019,
            1,
            None,
            0,
            {"Technology": 1.0},
        ),
        (
            "ada@game",
            993970,
            -1.0060564598885289e-05,
            -0.00601012020240399,
            -0.00601012020240399,
            -0.00603,
            0.15749291991401526,
            0.010000200004000037,
            -4.7760671396280765,
            None,
            0.0,
            1,
            {"Technology": 1.0},
        ),
        (
            "bob",
            10101998,
            0.0,
            0.0001997999999998612,
            0.0001997999999998612,
            0.00019782178217821783,
            0.0022472398754954056,
            2.0000000000575113e-07,
            11.202544647999007,
            3,
            None,
            0,
            {"Technology": 1.0},
        ),
        (
            "bob@game",
            1009995,
            0.0,
            0.01000005000024995,
            0.01000005000024995,
            0.009995,
            0.00027923094854857735,
            0.0,
            4501.191386344792,
            None,
            None,
            0,
            {"Technology": 1.0},
        ),
        (
            "cy",
            10000999,
            0.0,
            0.00010000000999998981,
            0.00010000000999998981,
            9.99e-05,
            None,
            0.0,
            None,
            4,
            None,
            0,
            {"Technology": 1.0},
        ),
        ("dee", 9999999, -1e-07, None, None, -1e-07, None, None, None, 6, None, 0, {"Technology": 1.0}),
        ("eve", 9999998, -2e-07, None, None, -2e-07, None, None, None, 7, None, 0, {"Technology": 1.0}),
        (
            "fay",
            10007996,
            0.0,
            0.0008000003199999384,
            0.0008000003199999384,
            0.0007996,
            1.7952788706130922e-06,
            0.0,
            56136.06332383164,
            2,
            None,
            0,
            {"Technology": 1.0},
        ),
        ("teacher", 10000000, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, None, 5, None, 0, {}),
    ],
}
