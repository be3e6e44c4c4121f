"""A game's own page (README, Running a game): its rules, its players, the game's leaderboard,
live while it runs and final once it is over, and after the end every player's positions.

The page is here, not in trading, because it reads analytics (the game's leaderboard); the pages
that only write or list games are trading's (trading/game_views.py). The leaderboard is rendered
in the page when it loads and then refreshed by static/js/game.js, which polls the game's
leaderboard API at a third of the staleness bound while the game runs.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from trading import selectors as trading_selectors
from trading.errors import NotFound


def _user(request: HttpRequest) -> User:
    # Behind login_required; this is the narrowing for the type checker.
    user = request.user
    assert isinstance(user, User)
    return user


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def game_page(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    user = _user(request)
    try:
        game = trading_selectors.game_get(game_id=game_id, user_id=user.pk)
    except NotFound:
        return render(request, "games/missing.html", status=404)
    now = timezone.now()
    over = now >= game.closes_at()
    player = trading_selectors.game_player_get(game_id=game.pk, user_id=user.pk)
    session_account = trading_selectors.account_for_session_get(user_id=user.pk, session=request.session)
    return render(
        request,
        "games/game.html",
        {
            "game": game,
            "player": player,
            "is_organiser": game.organiser_id == user.pk,
            "started": now >= game.starts_at,
            "over": over,
            "trading_on_game": player is not None
            and session_account is not None
            and session_account.pk == player.account_id,
            "players": trading_selectors.game_players_list(game_id=game.pk),
            # Other players' holdings only once nobody can trade on what they see.
            "positions": trading_selectors.game_positions_list(game_id=game.pk) if over else None,
            "poll_ms": int(settings.LEADERBOARD_MAX_STALENESS_S * 1000 / 3),
        },
    )
