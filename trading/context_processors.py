"""Template context every page needs: the header links depend on the operator's sign-up mode."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def signup_mode(request: HttpRequest) -> dict[str, str]:
    return {"signup_mode": settings.SIGNUP_MODE}
