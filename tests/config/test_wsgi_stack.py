"""config.wsgi: the REST API under /v2/ runs through its own middleware stack, pages through the
full one; both are called here as gunicorn calls them, with a WSGI environ."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from config.wsgi import application, handler_for
from tests.builders import session_cookie
from tests.wsgi_calls import wsgi_call
from trading import services
from trading.models import Account

pytestmark = pytest.mark.django_db


def _routes(patterns: list[URLPattern | URLResolver], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern), pattern.callback


def test_every_api_route_is_a_drf_view() -> None:
    """The API stack leaves out Django's CSRF middleware. That is safe only while every /v2/ view
    is a DRF view: DRF marks them exempt from the middleware and checks CSRF itself for callers
    that authenticate with a session."""
    api = [
        (route, callback)
        for route, callback in _routes(get_resolver().url_patterns)
        if route.startswith("v2/")
    ]
    assert len(api) > 30
    not_drf = [route for route, callback in api if not issubclass(getattr(callback, "cls", object), APIView)]
    assert not_drf == []


@pytest.fixture
def browser_session(make_account: Callable[..., Account]) -> dict[str, str]:
    """A logged-in dashboard session: its cookie and its CSRF token, as the page hands them out."""
    client, cookie = session_cookie(make_account().user_id)
    client.get("/")  # the dashboard page sets the CSRF cookie
    return {"cookie": cookie, "csrf": client.cookies[settings.CSRF_COOKIE_NAME].value}


def test_session_writes_to_the_api_still_need_the_csrf_token(browser_session: dict[str, str]) -> None:
    cookie = browser_session["cookie"]
    order = json.dumps(
        {"symbol": "NOPE", "qty": "1", "side": "buy", "type": "market", "time_in_force": "day"}
    )
    forged = wsgi_call(
        "POST", "/v2/orders", body=order.encode(), content_type="application/json", headers={"Cookie": cookie}
    )
    assert forged.status_code == 403 and "CSRF" in forged.json()["message"]
    signed = wsgi_call(
        "POST",
        "/v2/orders",
        body=order.encode(),
        content_type="application/json",
        headers={
            "Cookie": f"{cookie}; {settings.CSRF_COOKIE_NAME}={browser_session['csrf']}",
            "X-CSRFToken": browser_session["csrf"],
            "Origin": "http://127.0.0.1",
        },
    )
    # Past the CSRF check the order itself is judged: the symbol does not exist.
    assert signed.status_code == 422, signed.body
    assert wsgi_call("GET", "/v2/account", headers={"Cookie": cookie}).status_code == 200


def test_pages_keep_the_csrf_middleware() -> None:
    refused = wsgi_call(
        "POST", "/login", body=b"username=a&password=b", content_type="application/x-www-form-urlencoded"
    )
    assert refused.status_code == 403


def test_api_answers_keep_the_security_headers_and_the_host_check() -> None:
    clock = wsgi_call("GET", "/v2/clock")
    assert clock.status_code == 401  # no key; the answer still passed through the stack
    assert clock.headers["X-Content-Type-Options"] == "nosniff"
    assert clock.headers["X-Frame-Options"] == "DENY"
    assert wsgi_call("GET", "/v2/clock", headers={"Host": "evil.example"}).status_code == 400
    assert wsgi_call("GET", "/", headers={"Host": "evil.example"}).status_code == 400


def test_api_paths_take_the_shorter_stack() -> None:
    def view_hooks(handler: Any) -> set[str]:
        return {type(hook.__self__).__name__ for hook in handler._view_middleware}

    assert "CsrfViewMiddleware" in view_hooks(application.pages)
    assert "CsrfViewMiddleware" not in view_hooks(application.api)
    configured = list(settings.MIDDLEWARE)
    handler_for(["django.middleware.common.CommonMiddleware"])
    assert configured == settings.MIDDLEWARE  # swapped only while the handler was built


def test_the_api_stack_is_every_middleware_but_the_named_skips_in_the_same_order() -> None:
    """New middleware reaches /v2/ unless API_MIDDLEWARE_SKIPPED names it, with the reason."""
    skipped = settings.API_MIDDLEWARE_SKIPPED
    kept = [name for name in settings.MIDDLEWARE if name not in skipped]
    assert kept == settings.API_MIDDLEWARE
    assert set(skipped) <= set(settings.MIDDLEWARE), "a skip naming no middleware (renamed?)"
    assert all(isinstance(reason, str) and reason.strip() for reason in skipped.values())
    # The pages' Content-Security-Policy is deliberately page-only.
    assert "trading.page_security.ContentSecurityPolicyMiddleware" in skipped


def test_pages_and_the_api_docs_get_the_content_security_policy_and_json_answers_do_not() -> None:
    """A policy only matters for what a browser renders: the JSON API (held to its cached-read
    latency) runs no CSP middleware; its two HTML pages, the API docs, take the pages' stack."""
    for path in ("/login", "/v2/docs", "/v2/redoc"):
        answer = wsgi_call("GET", path)
        assert answer.status_code == 200, path
        assert "script-src 'self'" in answer.headers["Content-Security-Policy"], path
    for path in ("/v2/clock", "/v2/openapi.json", "/v2/docs/"):
        assert "Content-Security-Policy" not in wsgi_call("GET", path).headers, path
    assert not any("page_security" in name or "csp" in name for name in settings.API_MIDDLEWARE)


def test_api_bodies_over_the_upload_limit_are_413_before_any_view(
    make_account: Callable[..., Account],
) -> None:
    """Even an operation that never reads its body (a reset) refuses one over the limit, unread."""
    account = make_account()
    key, secret = services.api_key_create(account_id=account.pk)
    auth = {"APCA-API-KEY-ID": key.key_id, "APCA-API-SECRET-KEY": secret}
    Account.objects.filter(pk=account.pk).update(cash_cents=1)
    oversized = b"{" + b" " * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b"}"
    for method, path in (("POST", "/v2/account/reset"), ("GET", "/v2/clock"), ("POST", "/v1beta1/news")):
        refused = wsgi_call(method, path, body=oversized, content_type="application/json", headers=auth)
        assert refused.status_code == 413, (path, refused.body)
        assert refused.json()["code"] == 41310000
        assert refused.headers["Content-Type"] == "application/json"
    account.refresh_from_db()
    assert account.cash_cents == 1  # not reset
    # At the limit the request is served.
    fitting = b"{" + b" " * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 2) + b"}"
    assert (
        wsgi_call("GET", "/v2/clock", body=fitting, content_type="application/json", headers=auth).status_code
        == 200
    )
    # Pages keep Django's own handling (here the CSRF check refuses the form first).
    page = wsgi_call("POST", "/login", body=oversized, content_type="application/x-www-form-urlencoded")
    assert page.status_code == 403


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ["/v1beta1/news", "/v1beta3/crypto/us/latest/quotes", "/v2", "/v2/nothing"])
def test_unknown_api_paths_are_json_404_on_either_stack(method: str, path: str) -> None:
    """/v1beta* paths run through the pages' stack, whose CSRF middleware must not answer first."""
    answer = wsgi_call(method, path, body=b"{}", content_type="application/json")
    assert answer.status_code == 404
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"code": 40410000, "message": "endpoint not found"}
