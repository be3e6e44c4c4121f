"""A game's own page (README, Running a game): its rules, its announcements, its players, the game's
leaderboard, live while it runs and final once it is over, and after the end every player's
positions.

The page is here, not in trading, because it reads analytics (the game's leaderboard,
``selectors.game_leaderboard_get_or_refresh``); the pages that only write or list games are
trading's (trading/game_views.py). The board is rendered in the page when it loads and then
refreshed by static/js/game.js, which polls the game's leaderboard API (the same selector) at a
third of the staleness bound while the game runs, and stops once the board is final. The page
carries the server's time when it was rendered, so the script's countdown (starts in, ends in)
and phase (upcoming, running, closing, final) follow the server's clock, not the browser's.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from analytics import selectors
from analytics.services import game_freeze_grace
from trading import selectors as trading_selectors
from trading.api.serializers import rfc3339
from trading.errors import Forbidden, NotFound
from trading.models import Game


def _user(request: HttpRequest) -> User:
    # Behind login_required; this is the narrowing for the type checker.
    user = request.user
    assert isinstance(user, User)
    return user


def _signed_percent(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f} %"


def board_rows(board: dict[str, Any]) -> list[dict[str, Any]]:
    """The board's entries as the page shows them, written as static/js/game.js writes them."""
    return [
        {
            "rank": entry["rank"],
            "username": entry["username"],
            "equity": "—" if entry["equity"] is None else f"{Decimal(entry['equity']):,.2f}",
            "return": _signed_percent(entry["return_pct"]),
            "sharpe": "—" if entry["sharpe"] is None else f"{entry['sharpe']:.2f}",
            "drawdown": "—" if entry["max_drawdown"] is None else f"{abs(entry['max_drawdown']) * 100:.2f} %",
        }
        for entry in board["entries"]
    ]


def board_status(board: dict[str, Any]) -> str:
    as_of = board["as_of"].replace("T", " ").split(".")[0].removesuffix("+00:00")[:19]
    if board["status"] == "final":
        return f"Final standings, as of {as_of} UTC."
    if board["status"] == "closing":
        return f"The game is over; final standings in a moment (last live board {as_of} UTC)."
    return f"Live, computed {as_of} UTC."


# Players per page of the game's board: a 10,000-player game is a hundred pages, each reachable.
BOARD_PAGE_SIZE = 100


def _board_page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def _game_phase(game: Game, now: dt.datetime) -> tuple[bool, bool, bool]:
    """Whether ``game`` has started, whether it is over, and whether its standings are frozen,
    at ``now``: the page's state and which board it shows (live, closing, final)."""
    end = game.closes_at()
    return now >= game.starts_at, now >= end, now >= end + game_freeze_grace()


def _board_read(game: Game, *, page: int, username: str) -> tuple[dict[str, Any], int, int, dt.datetime]:
    """The board's page (the last one if ``page`` is past it), the page number, the page count,
    and the instant the page is of: the clock read after the board (whose read may wait for a
    refresh), when the game's phase is still the one the board was read in; else the board is
    read again at that later instant. So the page never says running, or shows a live board,
    with a clock past the game's end (or says upcoming with one past its start)."""
    read_at = timezone.now()
    for _ in range(4):  # a read spans the start, the end, then the freeze, once each at most
        board_at = read_at
        board, page, pages = _board_page(game, page=page, username=username, now=board_at)
        read_at = timezone.now()
        if _game_phase(game, read_at) == _game_phase(game, board_at):
            return board, page, pages, read_at
    return board, page, pages, board_at  # a clock stepping back and forth: the board's instant


def _board_page(game: Game, *, page: int, username: str, now: dt.datetime) -> tuple[dict[str, Any], int, int]:
    board = selectors.game_leaderboard_get_or_refresh(
        game=game, limit=BOARD_PAGE_SIZE, offset=(page - 1) * BOARD_PAGE_SIZE, username=username, now=now
    )
    pages = max(1, -(-board["player_count"] // BOARD_PAGE_SIZE))
    if page > pages:  # past the last page: show the last one, not an empty board
        page = pages
        board = selectors.game_leaderboard_get_or_refresh(
            game=game, limit=BOARD_PAGE_SIZE, offset=(page - 1) * BOARD_PAGE_SIZE, username=username, now=now
        )
    return board, page, pages


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def game_page(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    user = _user(request)
    try:
        game = trading_selectors.game_get(game_id=game_id, user_id=user.pk)
    except NotFound:
        return render(request, "games/missing.html", status=404)
    player = trading_selectors.game_player_get(game_id=game.pk, user_id=user.pk)
    session_account = trading_selectors.account_for_session_get(user_id=user.pk, session=request.session)
    try:
        announcements = trading_selectors.game_announcements_list(game_id=game.pk, user_id=user.pk)
    except Forbidden:
        announcements = None  # only the organiser and the players read them
    players = trading_selectors.game_players_list(game_id=game.pk)
    try:
        board, page, pages, now = _board_read(
            game, page=_board_page_number(request), username=user.get_username()
        )
    except selectors.BoardUnavailable:
        response = render(request, "games/busy.html", status=503)
        response["Retry-After"] = "2"
        return response
    over = now >= game.closes_at()
    url = reverse("game-leaderboard", kwargs={"game_id": str(game.pk)})
    context = {
        "game": game,
        "player": player,
        "is_organiser": game.organiser_id == user.pk,
        "started": now >= game.starts_at,
        # The window the page's countdown counts to (static/js/game.js), RFC 3339 as the API
        # writes its times (trading/api/serializers.py, rfc3339).
        "starts_at": rfc3339(game.starts_at),
        "ends_at": rfc3339(game.closes_at()),
        "over": over,
        "trading_on_game": player is not None
        and session_account is not None
        and session_account.pk == player.account_id,
        "players": players,
        "announcements": announcements,
        "board": board,
        "board_rows": board_rows(board),
        "board_status": board_status(board),
        "board_me": board_rows({"entries": [board["me"]]})[0] if board["me"] else None,
        "board_page": page,
        "board_pages": pages,
        "board_previous": page - 1 if page > 1 else None,
        "board_next": page + 1 if page < pages else None,
        "leaderboard_url": f"{url}?limit={BOARD_PAGE_SIZE}&offset={(page - 1) * BOARD_PAGE_SIZE}",
        # Other players' holdings only once nobody can trade on what they see.
        "positions": trading_selectors.game_positions_list(game_id=game.pk) if over else None,
        "poll_ms": int(settings.LEADERBOARD_MAX_STALENESS_S * 1000 / 3),
        # Past it with no newer board, the page marks its board stale (static/js/game.js).
        "max_age_ms": int(settings.LEADERBOARD_MAX_STALENESS_S * 1000),
        # The page's clock (static/js/game.js keeps the browser's offset from it): the instant
        # the page's state (upcoming, running, over) and its board are of, read after the board
        # (which may wait for a refresh), so the countdown starts from when the page was made.
        "server_now": rfc3339(now),
    }
    return render(request, "games/game.html", context)
