"""The server-rendered pages: sign-up in each mode, login/logout with the throttle, password change
and reset, API keys (secret shown once, revocation, other users' keys), and what `/` shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper
from rest_framework.test import APIClient

from trading import services
from trading.errors import Forbidden, InvalidRequest
from trading.models import Account, ApiKey, Asset

pytestmark = pytest.mark.django_db

MakeAccount = Callable[..., Account]
STRONG_PASSWORD = "correct-horse-battery-9"


def _templates(response: Any) -> list[str]:
    return [template.name for template in response.templates if template.name]


def _signup(client: Client, **fields: str) -> Any:
    data = {
        "username": "alice",
        "email": "alice@example.com",
        "password": STRONG_PASSWORD,
        "password_confirm": STRONG_PASSWORD,
        **fields,
    }
    return client.post("/signup", data)


def _logged_in_as(client: Client) -> str | None:
    response = client.get("/")
    user = response.wsgi_request.user
    return user.get_username() if user.is_authenticated else None


# --- Sign-up --------------------------------------------------------------------------------------


def test_open_sign_up_creates_the_user_and_account_and_logs_in(
    client: Client, settings: SettingsWrapper
) -> None:
    settings.SIGNUP_MODE = "open"
    settings.ACCOUNT_STARTING_CASH = "25000.00"
    page = client.get("/signup")
    assert page.status_code == 200
    assert 'name="invite_code"' not in page.content.decode()

    response = _signup(client)

    assert response.status_code == 302 and response["Location"] == "/"
    user = get_user_model().objects.get(username="alice")
    assert user.email == "alice@example.com" and user.check_password(STRONG_PASSWORD)
    assert Account.objects.get(user=user).cash_cents == 2_500_000
    assert _logged_in_as(client) == "alice"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"password": "123", "password_confirm": "123"}, "password", "too short"),
        ({"password": "alice123!", "password_confirm": "alice123!"}, "password", "too similar"),
        ({"password_confirm": "something-else-42"}, "password_confirm", "differ"),
        ({"username": "bad name!"}, "username", "valid username"),
        ({"email": "not-an-address"}, "email", "valid email"),
    ],
)
def test_sign_up_refuses_bad_input_beside_its_field(
    client: Client, fields: dict[str, str], field: str, message: str
) -> None:
    response = _signup(client, **fields)

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    assert message in " ".join(errors[field]).lower()
    assert not get_user_model().objects.exists()
    assert not Account.objects.exists()


def test_sign_up_refuses_a_taken_username(client: Client, make_account: MakeAccount) -> None:
    make_account(username="alice")

    response = _signup(client)

    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["form"].errors["username"])
    assert Account.objects.count() == 1


def test_invite_sign_up_needs_the_right_code(client: Client, settings: SettingsWrapper) -> None:
    settings.SIGNUP_MODE = "invite"
    settings.SIGNUP_INVITE_CODE = "open-sesame"
    assert 'name="invite_code"' in client.get("/signup").content.decode()

    missing = _signup(client)
    wrong = _signup(client, invite_code="open-sesam")

    for response in (missing, wrong):
        assert response.status_code == 200
        assert "invite_code" in response.context["form"].errors
    assert not get_user_model().objects.exists()

    response = _signup(client, invite_code="open-sesame")
    assert response.status_code == 302
    assert Account.objects.filter(user__username="alice").exists()


def test_closed_sign_up_says_so_and_creates_nobody(client: Client, settings: SettingsWrapper) -> None:
    settings.SIGNUP_MODE = "closed"

    page = client.get("/signup")
    posted = _signup(client)

    for response in (page, posted):
        assert response.status_code == 403
        assert "Sign-up is closed" in response.content.decode()
    assert not get_user_model().objects.exists()
    landing = client.get("/").content.decode()
    assert 'href="/signup"' not in landing  # neither in the header nor in the page
    with pytest.raises(Forbidden):
        services.user_signup(username="bob", password=STRONG_PASSWORD)


def test_sign_ups_from_one_address_are_limited(client: Client, settings: SettingsWrapper) -> None:
    settings.SIGNUP_MODE = "open"
    settings.SIGNUP_IP_RATE_LIMIT = "2/hour"

    assert _signup(client, username="first").status_code == 302
    client.post("/logout")
    assert _signup(client, username="second").status_code == 302
    client.post("/logout")
    refused = _signup(client, username="third")

    assert refused.status_code == 429
    assert "Too many sign-ups from this address" in refused.content.decode()
    assert not get_user_model().objects.filter(username="third").exists()
    other_address = Client(REMOTE_ADDR="10.9.8.7")
    assert _signup(other_address, username="third").status_code == 302


def test_sign_up_is_all_or_nothing(settings: SettingsWrapper) -> None:
    # A starting cash the account cannot open with fails after the user row was written.
    settings.ACCOUNT_STARTING_CASH = "-1.00"

    with pytest.raises(InvalidRequest):
        services.user_signup(username="carol", password=STRONG_PASSWORD)

    assert not get_user_model().objects.filter(username="carol").exists()


def test_sign_up_needs_the_csrf_token() -> None:
    client = Client(enforce_csrf_checks=True)

    response = _signup(client)

    assert response.status_code == 403
    assert not get_user_model().objects.exists()


# --- Login and logout -----------------------------------------------------------------------------


def test_login_and_logout(client: Client, make_account: MakeAccount) -> None:
    make_account(username="dave")
    assert client.get("/login").status_code == 200

    wrong = client.post("/login", {"username": "dave", "password": "nope-nope-1"})
    assert wrong.status_code == 200
    assert "correct username and password" in wrong.content.decode()
    assert _logged_in_as(client) is None

    right = client.post("/login", {"username": "dave", "password": "pw-123456!"})
    assert right.status_code == 302 and right["Location"] == "/"
    assert _logged_in_as(client) == "dave"

    assert client.get("/logout").status_code == 405  # logging out takes a POST (CSRF-protected)
    out = client.post("/logout")
    assert out.status_code == 302 and out["Location"] == "/"
    assert _logged_in_as(client) is None


def test_login_follows_next(client: Client, make_account: MakeAccount) -> None:
    make_account(username="erin")
    bounced = client.get("/keys")
    assert bounced.status_code == 302 and bounced["Location"] == "/login?next=/keys"

    response = client.post(
        "/login?next=/keys", {"username": "erin", "password": "pw-123456!", "next": "/keys"}
    )

    assert response.status_code == 302 and response["Location"] == "/keys"


def test_a_throttled_login_says_so_even_with_the_right_password(
    make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    settings.LOGIN_RATE_LIMIT = "2/15min"
    make_account(username="frank")
    attacker = Client(REMOTE_ADDR="10.0.0.9")
    for guess in ("guess-1", "guess-2"):
        response = attacker.post("/login", {"username": "frank", "password": guess})
        assert response.status_code == 200
        assert "Too many login attempts" not in response.content.decode()

    response = attacker.post("/login", {"username": "frank", "password": "pw-123456!"})

    assert response.status_code == 429
    body = response.content.decode()
    assert "Too many login attempts" in body and "Try again in 15 minute(s)" in body
    assert _logged_in_as(attacker) is None
    # The owner, from another address, still gets in.
    owner = Client(REMOTE_ADDR="10.0.0.1")
    assert owner.post("/login", {"username": "frank", "password": "pw-123456!"}).status_code == 302


# --- Passwords ------------------------------------------------------------------------------------


def test_password_change(client: Client, make_account: MakeAccount) -> None:
    account = make_account(username="gina")
    client.force_login(account.user)
    assert client.get("/password/change").status_code == 200

    response = client.post(
        "/password/change",
        {"old_password": "pw-123456!", "new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD},
    )

    assert response.status_code == 302 and response["Location"] == "/password/change/done"
    assert client.get("/password/change/done").status_code == 200  # still signed in
    account.user.refresh_from_db()
    assert account.user.check_password(STRONG_PASSWORD)


def test_password_change_needs_the_old_password(client: Client, make_account: MakeAccount) -> None:
    account = make_account(username="hank")
    client.force_login(account.user)

    response = client.post(
        "/password/change",
        {"old_password": "wrong-one-1", "new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD},
    )

    assert response.status_code == 200
    account.user.refresh_from_db()
    assert account.user.check_password("pw-123456!")


def test_password_reset_by_mail(client: Client, make_account: MakeAccount) -> None:
    account = make_account(username="ivy")
    account.user.email = "ivy@example.com"
    account.user.save()
    assert client.get("/password/reset/").status_code == 200

    response = client.post("/password/reset/", {"email": "ivy@example.com"})

    assert response.status_code == 302 and response["Location"] == "/password/reset/done/"
    assert client.get("/password/reset/done/").status_code == 200
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ivy@example.com"] and "password" in message.subject.lower()
    link = re.search(r"http://testserver(/password/reset/\S+/\S+/)", str(message.body))
    assert link is not None, message.body
    form_page = client.get(link.group(1), follow=True)
    assert form_page.status_code == 200 and form_page.context["validlink"]
    set_password_url = form_page.redirect_chain[-1][0]

    done = client.post(set_password_url, {"new_password1": STRONG_PASSWORD, "new_password2": STRONG_PASSWORD})

    assert done.status_code == 302 and done["Location"] == "/password/reset/complete/"
    assert client.get("/password/reset/complete/").status_code == 200
    assert Client().login(username="ivy", password=STRONG_PASSWORD)
    # The link works once.
    assert client.get(link.group(1), follow=True).context["validlink"] is False


def test_password_reset_mails_nobody_for_an_unknown_address(client: Client) -> None:
    response = client.post("/password/reset/", {"email": "nobody@example.com"})

    assert response.status_code == 302  # the same answer, so addresses cannot be probed
    assert mail.outbox == []


# --- API keys -------------------------------------------------------------------------------------


def test_a_new_key_secret_is_shown_once_with_a_working_snippet(
    client: Client, make_account: MakeAccount
) -> None:
    account = make_account(username="jack")
    client.force_login(account.user)
    assert client.get("/keys").status_code == 200

    response = client.post("/keys", {"label": "my bot"})

    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.objects.get(account=account)
    secret = response.context["new_secret"]
    body = response.content.decode()
    assert key.label == "my bot" and key.key_id in body and secret in body
    assert f'KEY, SECRET = "{key.key_id}", "{secret}"' in body
    assert 'url_override="http://testserver"' in body
    assert 'url_override="ws://testserver:8001/v2/iex"' in body
    # The secret is the key's: a bot can use it.
    bot = APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
    assert bot.get("/v2/account").json()["account_number"] == account.account_number
    # ...and no page shows it again.
    listing = client.get("/keys").content.decode()
    assert key.key_id in listing and secret not in listing
    assert secret not in client.get("/").content.decode()


def test_revoking_a_key_refuses_it_at_once(
    client: Client, make_account: MakeAccount, django_capture_on_commit_callbacks: Any
) -> None:
    account = make_account(username="kate")
    key, secret = services.api_key_create(account_id=account.pk, label="old bot")
    bot = APIClient(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
    assert bot.get("/v2/account").status_code == 200  # cached as valid
    client.force_login(account.user)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/keys/{key.key_id}/revoke")

    assert response.status_code == 302 and response["Location"] == "/keys"
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert bot.get("/v2/account").status_code == 401
    page = client.get("/keys").content.decode()
    assert "Revoked" in page and f"/keys/{key.key_id}/revoke" not in page
    assert client.get(f"/keys/{key.key_id}/revoke").status_code == 405


def test_other_users_keys_are_invisible_and_unrevocable(client: Client, make_account: MakeAccount) -> None:
    mine, theirs = make_account(username="liam"), make_account(username="mia")
    my_key, _ = services.api_key_create(account_id=mine.pk, label="mine")
    their_key, _ = services.api_key_create(account_id=theirs.pk, label="theirs")
    client.force_login(mine.user)

    page = client.get("/keys").content.decode()
    response = client.post(f"/keys/{their_key.key_id}/revoke")

    assert my_key.key_id in page and their_key.key_id not in page
    assert response.status_code == 404
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_keys_page_needs_login_and_csrf(make_account: MakeAccount) -> None:
    account = make_account(username="noah")
    client = Client(enforce_csrf_checks=True)
    assert client.post("/keys", {"label": "x"}).status_code == 403  # CSRF first
    client.force_login(account.user)

    assert client.post("/keys", {"label": "x"}).status_code == 403
    assert not ApiKey.objects.exists()


# --- `/` ------------------------------------------------------------------------------------------


def test_anonymous_visitors_get_the_landing_page(client: Client, make_asset: Callable[..., Asset]) -> None:
    make_asset("AAPL")

    response = client.get("/")

    assert response.status_code == 200
    assert "home.html" in _templates(response) and "dashboard.html" not in _templates(response)
    body = response.content.decode()
    assert 'class="button" href="/signup"' in body and 'href="/login"' in body
    assert 'url_override="http://testserver"' in body


def test_signed_in_traders_get_the_dashboard(
    client: Client, make_account: MakeAccount, settings: SettingsWrapper
) -> None:
    account = make_account(username="olga")
    client.force_login(account.user)

    response = client.get("/")

    assert response.status_code == 200
    assert "dashboard.html" in _templates(response) and "home.html" not in _templates(response)
    assert response.context["bootstrap_url"] == "/v2/dashboard/bootstrap"
    assert response.context["perf_url"] == "/v2/metrics/frontend"
    assert response.context["ws_base"] == "ws://testserver:8001"
    assert "csrftoken" in response.cookies  # the page's POSTs send it as X-CSRFToken

    settings.STREAM_PUBLIC_URL = "wss://sim.example.com"
    assert client.get("/").context["ws_base"] == "wss://sim.example.com"
    settings.STREAM_PUBLIC_URL = ""
    settings.WS_PORT = 9101
    assert client.get("/", HTTP_HOST="localhost:9100").context["ws_base"] == "ws://localhost:9101"


def test_a_login_without_a_trading_account_gets_an_explanation(client: Client) -> None:
    staff = get_user_model().objects.create_user(username="ops", is_staff=True)
    client.force_login(staff)

    response = client.get("/")

    assert response.status_code == 403
    assert "No trading account" in response.content.decode()
    assert client.get("/keys").status_code == 403
