"""The pages' Content-Security-Policy (settings.CONTENT_SECURITY_POLICY, trading/page_security.py):
every page sends one without 'unsafe-inline', the few inline scripts carry its nonce, no page holds
inline handlers, <style> elements or style attributes, and connect-src names the WebSocket origin
the dashboard is told to use. tests/e2e/test_dashboard_browser.py runs the same pages in chromium."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from csp.middleware import CSPMiddleware
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.test import Client, RequestFactory
from pytest_django.fixtures import Settings as SettingsWrapper

from trading.models import Account
from trading.page_security import ContentSecurityPolicyMiddleware

pytestmark = pytest.mark.django_db

ANONYMOUS_PAGES = ["/", "/login", "/signup", "/password/reset/", "/admin/login/", "/v2/docs", "/v2/redoc"]
TRADER_PAGES = ["/", "/keys", "/password/change"]
STAFF_PAGES = ["/admin/", "/admin/trading/account/", "/admin/trading/account/add/"]


def policy_of(response: HttpResponseBase) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


class InlineCode(HTMLParser):
    """What a page runs or styles inline: scripts without src (with their nonce), <style>
    elements, style attributes and on* handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts: list[str | None] = []  # their nonces
        self.style_elements: list[str | None] = []
        self.style_attributes: list[str] = []
        self.handlers: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "script" and "src" not in attributes:
            self.inline_scripts.append(attributes.get("nonce"))
        if tag == "style":
            self.style_elements.append(attributes.get("nonce"))
        if "style" in attributes:
            self.style_attributes.append(f"<{tag} style={attributes['style']!r}>")
        self.handlers += [f"<{tag} {name}=...>" for name in attributes if name.startswith("on")]


def assert_strict_page(response: Any) -> None:
    assert response.status_code == 200, response
    policy = policy_of(response)
    assert policy["default-src"] == ["'self'"]
    for directive in ("script-src", "style-src"):
        assert "'self'" in policy[directive]
        assert not {"'unsafe-inline'", "'unsafe-eval'", "'unsafe-hashes'", "*"} & set(policy[directive])
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]

    page = InlineCode()
    page.feed(response.content.decode())
    nonces = {source for source in policy["script-src"] if source.startswith("'nonce-")}
    assert all(f"'nonce-{nonce}'" in nonces for nonce in page.inline_scripts), (page.inline_scripts, nonces)
    assert all(f"'nonce-{nonce}'" in policy["style-src"] for nonce in page.style_elements)
    assert page.style_attributes == []
    assert page.handlers == []


@pytest.mark.parametrize("path", ANONYMOUS_PAGES)
def test_anonymous_pages_send_a_strict_policy(client: Client, path: str) -> None:
    assert_strict_page(client.get(path))


@pytest.mark.parametrize("path", TRADER_PAGES)
def test_trader_pages_send_a_strict_policy(
    client: Client, make_account: Callable[..., Account], path: str
) -> None:
    client.force_login(make_account().user)
    assert_strict_page(client.get(path))


@pytest.mark.parametrize("path", STAFF_PAGES)
def test_admin_pages_send_a_strict_policy(client: Client, path: str) -> None:
    client.force_login(get_user_model().objects.create_superuser(username="ops", password="pw-123456!"))
    assert_strict_page(client.get(path))


def test_the_dashboards_import_map_carries_the_nonce(
    client: Client, make_account: Callable[..., Account]
) -> None:
    client.force_login(make_account().user)
    response = client.get("/")
    page = InlineCode()
    page.feed(response.content.decode())

    assert len(page.inline_scripts) == 1  # the import map, the page's only inline script
    assert f"'nonce-{page.inline_scripts[0]}'" in policy_of(response)["script-src"]
    assert 'type="importmap"' in response.content.decode()


def test_each_page_gets_its_own_nonce(client: Client, make_account: Callable[..., Account]) -> None:
    client.force_login(make_account().user)
    first, second = (policy_of(client.get("/"))["script-src"] for _ in range(2))
    assert first != second


def test_connect_src_names_the_stream_origin_from_the_request(
    client: Client, make_account: Callable[..., Account], settings: SettingsWrapper
) -> None:
    settings.STREAM_PUBLIC_URL = ""
    settings.WS_PORT = 8123
    settings.ALLOWED_HOSTS = ["sim.example.com"]
    client.force_login(make_account().user)

    response = client.get("/", HTTP_HOST="sim.example.com:8000")

    assert policy_of(response)["connect-src"] == ["'self'", "ws://sim.example.com:8123"]
    assert 'data-ws-base="ws://sim.example.com:8123"' in response.content.decode()


def test_connect_src_names_the_public_stream_url(
    client: Client, make_account: Callable[..., Account], settings: SettingsWrapper
) -> None:
    settings.STREAM_PUBLIC_URL = "wss://streams.example.com"
    client.force_login(make_account().user)

    assert policy_of(client.get("/"))["connect-src"] == ["'self'", "wss://streams.example.com"]


def test_redocs_search_worker_is_the_only_addition(client: Client) -> None:
    assert policy_of(client.get("/v2/redoc"))["worker-src"] == ["'self'", "blob:"]
    assert "worker-src" not in policy_of(client.get("/v2/docs"))
    assert "worker-src" not in policy_of(client.get("/login"))


def test_swagger_ui_loads_its_start_up_script_from_the_server(client: Client) -> None:
    page = client.get("/v2/docs").content.decode()
    assert 'src="/v2/docs?script="' in page

    script = client.get("/v2/docs?script=")

    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "/v2/openapi.json" in script.content.decode()


def test_a_request_for_another_host_still_answers_400(client: Client) -> None:
    assert client.get("/login", HTTP_HOST="evil.example").status_code == 400


def _headers_ours_and_django_csps(
    request: HttpRequest, *, use_nonce: bool, response: Callable[[], HttpResponseBase] = HttpResponse
) -> tuple[str | None, str | None]:
    """The header the middleware writes, and the one django-csp's own ``process_response`` writes
    for the same request (its nonce included) through the middleware's ``get_policy_parts``."""
    middleware = ContentSecurityPolicyMiddleware(lambda _: HttpResponse())
    middleware.process_request(request)
    if use_nonce:
        str(request.csp_nonce)  # type: ignore[attr-defined]
    theirs = CSPMiddleware.process_response(middleware, request, response())
    ours = middleware.process_response(request, response())
    return ours.get("Content-Security-Policy"), theirs.get("Content-Security-Policy")


@pytest.mark.parametrize("use_nonce", [True, False])
@pytest.mark.parametrize("host", ["testserver", "sim.example.com:8000", "evil.example"])
def test_the_policy_built_once_is_the_header_django_csp_builds(
    rf: RequestFactory, settings: SettingsWrapper, host: str, use_nonce: bool
) -> None:
    """Per process, the policy with marks for the nonce and the stream origin; per response, the
    two filled in: the same header, to the byte, as django-csp builds from the settings on every
    response. Another host (DisallowedHost, answered 400) has no stream origin in either."""
    settings.ALLOWED_HOSTS = ["testserver", "sim.example.com"]
    settings.STREAM_PUBLIC_URL = ""
    ours, theirs = _headers_ours_and_django_csps(rf.get("/", HTTP_HOST=host), use_nonce=use_nonce)
    assert ours is not None and ours == theirs
    assert ("'nonce-" in ours) is use_nonce
    assert ("ws://sim.example.com:" in ours) is host.startswith("sim.")


def test_the_policy_built_once_follows_the_settings_and_each_request(
    rf: RequestFactory, settings: SettingsWrapper
) -> None:
    middleware = ContentSecurityPolicyMiddleware(lambda _: HttpResponse())
    nonces = []
    for _ in range(3):
        request = rf.get("/")
        middleware.process_request(request)
        nonces.append(str(request.csp_nonce))  # type: ignore[attr-defined]
        header = middleware.process_response(request, HttpResponse())["Content-Security-Policy"]
        assert f"'nonce-{nonces[-1]}'" in header
    assert len(set(nonces)) == 3 and len(middleware._built) == 1  # one policy built for all three

    settings.STREAM_PUBLIC_URL = "wss://streams.example.com"
    settings.CONTENT_SECURITY_POLICY = {
        "DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"], "img-src": ["'self'"]}
    }
    ours, theirs = _headers_ours_and_django_csps(rf.get("/"), use_nonce=True)
    assert ours == theirs and ours is not None
    assert "img-src 'self';" in ours + ";" and "wss://streams.example.com" in ours


def test_a_policy_changed_in_place_is_built_again(
    rf: RequestFactory, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same dict, one directive changed in it (as ``monkeypatch.setitem`` does): the next
    response carries the new policy, not the one built before."""
    settings.CONTENT_SECURITY_POLICY = {"DIRECTIVES": dict(settings.CONTENT_SECURITY_POLICY["DIRECTIVES"])}
    middleware = ContentSecurityPolicyMiddleware(lambda _: HttpResponse())
    before = middleware.process_response(rf.get("/"), HttpResponse())["Content-Security-Policy"]
    monkeypatch.setitem(
        settings.CONTENT_SECURITY_POLICY["DIRECTIVES"], "img-src", ["'self'", "https://img.example"]
    )
    after = middleware.process_response(rf.get("/"), HttpResponse())["Content-Security-Policy"]
    assert "img-src 'self' https://img.example" in after and after != before
    theirs = CSPMiddleware.process_response(middleware, rf.get("/"), HttpResponse())
    assert after == theirs["Content-Security-Policy"]


def test_a_views_own_policy_change_takes_django_csps_path(rf: RequestFactory) -> None:
    """A view's decorator (the API docs' ``csp_update``) leaves its change on the response."""

    def updated() -> HttpResponseBase:
        response = HttpResponse()
        response._csp_update = {"worker-src": ["'self'", "blob:"]}  # type: ignore[attr-defined]
        return response

    ours, theirs = _headers_ours_and_django_csps(rf.get("/"), use_nonce=False, response=updated)
    assert ours == theirs and ours is not None and "worker-src 'self' blob:" in ours
