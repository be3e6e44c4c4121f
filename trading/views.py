"""Server-rendered pages: the landing page or the dashboard at ``/``, sign-up, login and API keys.

Views are thin: they read a form, call one service or selector and render. The dashboard itself is
a page of ES modules (``templates/dashboard.html``) that loads its data from
``/v2/dashboard/bootstrap`` and the WebSocket streams; this module only hands it those addresses.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_http_methods, require_POST

from trading import selectors, services
from trading.api import throttling
from trading.errors import Forbidden, NotFound
from trading.forms import ApiKeyCreateForm, SignupForm, ThrottledAuthenticationForm
from trading.models import Account, Asset
from trading.public_urls import api_base_url, stream_base_url, stream_urls


def _account_of(request: HttpRequest) -> Account | None:
    """The account this browser session acts on (its selected one, else its user's default)."""
    if not request.user.is_authenticated:
        return None
    return selectors.account_for_session_get(user_id=request.user.pk, session=request.session)


def _no_account(request: HttpRequest) -> HttpResponse:
    # Operators' own logins (the seeded superuser) have no trading account to show.
    return render(request, "no_account.html", status=403)


@ensure_csrf_cookie  # the dashboard's POSTs send the cookie's token as X-CSRFToken
@require_http_methods(["GET", "HEAD"])
def home(request: HttpRequest) -> HttpResponse:
    """The dashboard for a signed-in trader, the landing page for everyone else."""
    if request.user.is_authenticated:
        account = _account_of(request)
        if account is None:
            return _no_account(request)
        accounts = selectors.accounts_list(user_id=request.user.pk)
        return render(
            request,
            "dashboard.html",
            {
                "bootstrap_url": reverse("dashboard-bootstrap"),
                "perf_url": reverse("frontend-metrics"),
                "ws_base": stream_base_url(request),
                "account": account,
                # The switcher shows only when there is something to switch to.
                "accounts": accounts if len(accounts) > 1 else [],
            },
        )
    return render(
        request,
        "home.html",
        {
            "base_url": api_base_url(request),
            "asset_count": Asset.objects.filter(active=True).count(),
            "market_hours": settings.MARKET_HOURS,
        },
    )


# --- Sign-up and login ----------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    mode = settings.SIGNUP_MODE
    if mode == services.SIGNUP_CLOSED:
        return render(request, "registration/signup_closed.html", status=403)
    if request.user.is_authenticated:
        return redirect("home")
    invite_required = mode == services.SIGNUP_INVITE
    form = SignupForm(request.POST or None, invite_required=invite_required)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        wait = throttling.signup_throttled_for(request)
        if wait is not None:
            minutes = max(1, math.ceil(wait / 60))
            form.add_error(None, f"Too many sign-ups from this address. Try again in {minutes} minute(s).")
            response = render(
                request, "registration/signup.html", {"form": form, "invite_required": invite_required}
            )
            response.status_code = 429
            return response
        try:
            user = services.user_signup(
                username=data["username"],
                password=data["password"],
                email=data.get("email") or "",
                invite_code=data.get("invite_code") or "",
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
            messages.success(request, f"Welcome, {user.get_username()}: your account is open.")
            return redirect("home")
    return render(request, "registration/signup.html", {"form": form, "invite_required": invite_required})


class ThrottledLoginView(LoginView):
    """Django's login view; a throttled attempt answers 429 with the throttle's message."""

    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if isinstance(form, ThrottledAuthenticationForm) and form.throttled:
            response.status_code = 429
        return response


# --- API keys -------------------------------------------------------------------------------------


def _keys_page(
    request: HttpRequest, account: Account, form: ApiKeyCreateForm, **extra: Any
) -> dict[str, Any]:
    accounts = selectors.accounts_list(user_id=account.user_id)
    return {
        "account": next((option for option in accounts if option.pk == account.pk), account),
        # A user with game accounts picks here which account a new key trades.
        "accounts": accounts if len(accounts) > 1 else [],
        "keys": selectors.api_keys_list(account_id=account.pk),
        "form": form,
        "api_base_url": api_base_url(request),
        "streams": stream_urls(request),
        **extra,
    }


@never_cache
@login_required
@require_http_methods(["GET", "HEAD", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """List and create keys. The answer to a create is the only page that ever shows the secret:
    it is rendered into that response, never stored, redirected with or kept in the session."""
    account = _account_of(request)
    if account is None:
        return _no_account(request)
    if request.method != "POST":
        return render(request, "keys.html", _keys_page(request, account, ApiKeyCreateForm()))
    form = ApiKeyCreateForm(request.POST)
    if not form.is_valid():
        return render(request, "keys.html", _keys_page(request, account, form), status=422)
    try:
        key, secret = services.api_key_create(account_id=account.pk, label=form.cleaned_data["label"])
    except Forbidden as refused:  # a player removed from the account's game
        form.add_error(None, refused.message)
        return render(request, "keys.html", _keys_page(request, account, form), status=403)
    return render(
        request,
        "keys.html",
        _keys_page(request, account, ApiKeyCreateForm(), new_key=key, new_secret=secret),
        status=201,
    )


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: str) -> HttpResponseRedirect:
    account = _account_of(request)
    if account is None:
        raise Http404("no trading account")
    try:
        # Scoped to the caller's account: another user's key id is simply not found.
        services.api_key_revoke(key_id=key_id, account_id=account.pk)
    except NotFound:
        raise Http404("API key not found") from None
    messages.success(request, f"Key {key_id} is revoked; bots using it are refused from now on.")
    return redirect("keys")


# --- Account selection ----------------------------------------------------------------------------


@login_required
@require_POST
def account_select(request: HttpRequest) -> HttpResponseRedirect:
    """Switch the account this browser session acts on, then show the dashboard on it (the
    session's other pages reconnect their account streams on their own)."""
    if not request.user.is_authenticated:  # for the type: login_required sent anonymous callers away
        raise Http404("account not found")
    try:
        account = services.session_account_select(
            user_id=request.user.pk, session=request.session, account_id=request.POST.get("account_id", "")
        )
    except NotFound:
        raise Http404("account not found") from None
    messages.success(request, f"Now trading on account {account.account_number}.")
    # The game page sends its player here to trade (the dashboard) or to make a key (the keys
    # page) on the game account; anything but a path of this site goes to the dashboard.
    next_url = request.POST.get("next", "")
    if next_url and url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return redirect(next_url)
    return redirect("home")
