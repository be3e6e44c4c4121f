"""Forms of the server-rendered pages: sign-up, login (with the throttle's message) and API keys.

Forms check what a browser can get wrong in one request (a missing field, two passwords that
differ); the rules of the domain (username taken, password strength, invite code) live in
``services.user_signup``, whose field-keyed errors the views attach to these forms.
"""

from __future__ import annotations

import math
from typing import Any

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from trading.api.throttling import login_throttled_for


class SignupForm(forms.Form):
    username = forms.CharField(
        max_length=150,
        help_text="Letters, digits and @/./+/-/_ only; shown on the leaderboard.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    email = forms.EmailField(
        required=False,
        help_text="Optional; needed only to reset a forgotten password.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    password = forms.CharField(
        strip=False,
        help_text=password_validation.password_validators_help_text_html(),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    invite_code = forms.CharField(
        max_length=200, help_text="The code the operator gave you.", widget=forms.TextInput()
    )

    def __init__(self, *args: Any, invite_required: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not invite_required:
            del self.fields["invite_code"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        password, again = cleaned.get("password"), cleaned.get("password_confirm")
        if password and again and password != again:
            self.add_error("password_confirm", "The two passwords differ.")
        if password:
            # Checked here as well as in the service so every problem shows in one round trip.
            candidate = User(username=cleaned.get("username", ""), email=cleaned.get("email", ""))
            try:
                password_validation.validate_password(password, user=candidate)
            except ValidationError as error:
                self.add_error("password", error)
        return cleaned


class ThrottledAuthenticationForm(AuthenticationForm):
    """Django's login form, saying so when the login throttle refused the attempt: a locked-out
    user who types the right password must not be told it is wrong."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": "Too many login attempts for this account from your address. "
        "Try again in %(minutes)s minute(s).",
    }

    @property
    def throttled(self) -> bool:
        return self.request is not None and login_throttled_for(self.request) is not None

    def get_invalid_login_error(self) -> ValidationError:
        wait = login_throttled_for(self.request) if self.request is not None else None
        if wait is None:
            return super().get_invalid_login_error()
        return ValidationError(
            self.error_messages["throttled"],
            code="throttled",
            params={"minutes": max(1, math.ceil(wait / 60))},
        )


class ApiKeyCreateForm(forms.Form):
    label = forms.CharField(
        max_length=100,
        required=False,
        help_text="Optional: what the key is for, e.g. the bot's name.",
        widget=forms.TextInput(attrs={"placeholder": "my trading bot"}),
    )
