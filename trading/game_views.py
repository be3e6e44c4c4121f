"""The game pages that only write or list games (README, Running a game): browse public games and
join one, join by an invite link, create a game, and manage it as its organiser (edit its rules
before the start, remove a player, end it early). The game's own page, with its leaderboard, reads
analytics and lives there (analytics/game_pages.py).

Views are thin: a form, one service or selector, a page. A refusal of the services (a rule, a
permission, a game that is over) is shown on the page it came from, never answered with a 500.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from trading import selectors, services
from trading.errors import Forbidden, NotFound, TradingError
from trading.game_forms import GameAnnouncementForm, GameJoinForm, GameRulesForm
from trading.models import Game


def _user(request: HttpRequest) -> User:
    # Every view here is behind login_required; this is the narrowing for the type checker.
    user = request.user
    assert isinstance(user, User)
    return user


def game_missing(request: HttpRequest) -> HttpResponse:
    # A page, not the API's JSON 404: an invite-only game the viewer may not see is "not found" too.
    return render(request, "games/missing.html", status=404)


def _forbidden(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "games/forbidden.html", {"message": message}, status=403)


@never_cache
@login_required
@require_http_methods(["GET", "HEAD"])
def games_browse(request: HttpRequest) -> HttpResponse:
    """Public games not over yet, and the viewer's own games (organised or joined)."""
    mine = selectors.games_of_user_list(user_id=_user(request).pk)
    joined = set(selectors.game_ids_joined(user_id=_user(request).pk))
    return render(
        request,
        "games/browse.html",
        {
            "public_games": selectors.game_list_public(),
            "my_games": mine,
            "joined": joined,
        },
    )


def _joined(request: HttpRequest, game: Game, invite_code: str) -> HttpResponse | None:
    """Join, then send the player to the game's page; None with a message when refused."""
    try:
        player = services.game_join(game_id=game.pk, user=_user(request), invite_code=invite_code)
    except NotFound:
        return game_missing(request)
    except TradingError as error:
        messages.error(request, f"Could not join {game.name}: {error.message}.")
        return None
    messages.success(
        request,
        f"You joined {game.name} with game account {player.account.account_number}: "
        "trade on it from the game's page or the dashboard's account switcher.",
    )
    return redirect("game_page", game_id=game.pk)


@login_required
@require_POST
def game_join(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    """Join from the browse page (a public game) or with a code typed in (an invite-only one,
    which the viewer cannot see before joining: the code is what finds it)."""
    form = GameJoinForm(request.POST)
    code = form.cleaned_data["invite_code"] if form.is_valid() else ""
    try:
        if code:
            game = selectors.game_get_by_invite_code(invite_code=code)
            if game.pk != game_id:
                raise NotFound("game not found")
        else:
            game = selectors.game_get(game_id=game_id, user_id=_user(request).pk)
    except NotFound:
        return game_missing(request)
    answer = _joined(request, game, code)
    return answer if answer is not None else redirect("games_browse")


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def game_invite(request: HttpRequest, invite_code: str) -> HttpResponse:
    """The invite link: the game's rules and a button to join (the code is in the link)."""
    try:
        game = selectors.game_get_by_invite_code(invite_code=invite_code)
    except NotFound:
        return game_missing(request)
    player = selectors.game_player_get(game_id=game.pk, user_id=_user(request).pk)
    if request.method == "POST" and player is None:
        answer = _joined(request, game, invite_code)
        if answer is not None:
            return answer
    return render(
        request,
        "games/invite.html",
        {"game": game, "player": player, "over": timezone.now() >= game.closes_at()},
        status=403 if request.method == "POST" and player is None else 200,
    )


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def game_create(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "games/create.html", {"form": GameRulesForm()})
    form = GameRulesForm(request.POST)
    if form.is_valid():
        try:
            game = services.game_create(organiser=_user(request), rules=form.rules())
        except Forbidden as error:
            return _forbidden(request, error.message)
        except TradingError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, f"{game.name} is created; share its invite link or wait for players.")
            return redirect("game_manage", game_id=game.pk)
    return render(request, "games/create.html", {"form": form}, status=422)


def _organised(request: HttpRequest, game_id: uuid.UUID) -> Game | HttpResponse:
    try:
        game = selectors.game_get(game_id=game_id, user_id=_user(request).pk)
    except NotFound:
        return game_missing(request)
    if game.organiser_id != _user(request).pk:
        return _forbidden(request, "Only the game's organiser can manage it.")
    return game


def _manage_page(
    request: HttpRequest,
    game: Game,
    form: GameRulesForm | None,
    *,
    announcement_form: GameAnnouncementForm | None = None,
    status: int = 200,
) -> HttpResponse:
    now = timezone.now()
    started = now >= game.starts_at
    context: dict[str, Any] = {
        "game": game,
        "form": form
        if form is not None
        else (None if started else GameRulesForm(initial=GameRulesForm.initial_of(game))),
        "players": selectors.game_players_list(game_id=game.pk),
        "announcement_form": announcement_form or GameAnnouncementForm(),
        "announcements": selectors.game_announcements_list(game_id=game.pk, user_id=game.organiser_id),
        "started": started,
        "over": now >= game.closes_at(),
        "invite_url": request.build_absolute_uri(
            reverse("game_invite", kwargs={"invite_code": game.invite_code})
        ),
    }
    return render(request, "games/manage.html", context, status=status)


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def game_manage(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    """The organiser's page; a POST is the rules form (only before the start)."""
    game = _organised(request, game_id)
    if isinstance(game, HttpResponse):
        return game
    if request.method != "POST":
        return _manage_page(request, game, None)
    form = GameRulesForm(request.POST)
    if form.is_valid():
        try:
            game = services.game_update(game_id=game.pk, organiser_id=_user(request).pk, rules=form.rules())
        except TradingError as error:
            form.add_error(None, error.message)
        else:
            messages.success(request, "The rules are saved; players who joined start again under them.")
            return redirect("game_manage", game_id=game.pk)
    return _manage_page(request, game, form, status=422)


@login_required
@require_POST
def game_player_remove(request: HttpRequest, game_id: uuid.UUID, username: str) -> HttpResponse:
    game = _organised(request, game_id)
    if isinstance(game, HttpResponse):
        return game
    try:
        services.game_player_remove(game_id=game.pk, organiser_id=_user(request).pk, username=username)
    except TradingError as error:
        messages.error(request, f"Could not remove {username}: {error.message}.")
    else:
        messages.success(request, f"{username} is removed: their orders are canceled and their keys revoked.")
    return redirect("game_manage", game_id=game.pk)


@login_required
@require_POST
def game_end(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    game = _organised(request, game_id)
    if isinstance(game, HttpResponse):
        return game
    try:
        services.game_end(game_id=game.pk, organiser_id=_user(request).pk)
    except TradingError as error:
        messages.error(request, f"Could not end the game: {error.message}.")
        return redirect("game_manage", game_id=game.pk)
    messages.success(request, f"{game.name} is over: open orders are canceled and the standings are final.")
    return redirect("game_page", game_id=game.pk)


@login_required
@require_POST
def game_announce(request: HttpRequest, game_id: uuid.UUID) -> HttpResponse:
    game = _organised(request, game_id)
    if isinstance(game, HttpResponse):
        return game
    form = GameAnnouncementForm(request.POST)
    if form.is_valid():
        try:
            services.game_announcement_post(
                game_id=game.pk, author_id=_user(request).pk, text=form.cleaned_data["text"]
            )
        except TradingError as error:
            form.add_error("text", error.message)
        else:
            messages.success(request, "Announced to the players.")
            return redirect("game_manage", game_id=game.pk)
    return _manage_page(request, game, None, announcement_form=form, status=422)
