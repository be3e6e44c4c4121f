"""What the fast reads' guard tests share (tests/analytics/test_fast_reads.py,
tests/trading/test_fast_reads.py): config.wsgi's split stack with the fast path and without it,
and the comparison of the two answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

from rest_framework.request import Request

from config.wsgi import FAST_READS_MIDDLEWARE, FastReads, SplitStackHandler, application, handler_for
from tests.wsgi_calls import Answer, wsgi_call

RATE_HEADERS = ("X-RateLimit-Remaining",)


class CountingFastReads(FastReads):
    """FastReads that counts the requests it answered itself."""

    answered = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes] | None:
        answer = super().__call__(environ, start_response)
        self.answered += answer is not None
        return answer


class Stacks:
    """config.wsgi's split stack as the settings now are: with the fast path, and without it."""

    def __init__(self, *, fast_on: bool = True) -> None:
        api = handler_for(FAST_READS_MIDDLEWARE)
        self.fast = CountingFastReads()
        assert self.fast.enabled is fast_on
        self.with_fast = SplitStackHandler(pages=application.pages, api=api, fast=self.fast)
        self.drf_only = SplitStackHandler(pages=application.pages, api=api)

    def get(self, path: str, query: str = "", *, fast: bool, **kwargs: Any) -> Answer:
        return wsgi_call(
            "GET", path, query=query, application=self.with_fast if fast else self.drf_only, **kwargs
        )


# A 429's wait in its message (DRF's Throttled), counted on Redis's clock.
_WAIT_SECONDS = re.compile(r"\d+(?= seconds?\b)")


def same_answer(drf: Answer, fast: Answer, *, consumed: int = 1) -> None:
    """The same status, body and headers in the same order; the limit's remaining count differs by
    the ``consumed`` requests between the two. A 429's wait (``Retry-After``, the message's seconds,
    so its ``Content-Length``) may differ by the second that passed on Redis's clock between them."""
    assert fast.status == drf.status
    assert [name for name, _ in fast.header_list] == [name for name, _ in drf.header_list]
    if fast.status_code == 429:
        drf_body, fast_body = drf.json(), fast.json()
        drf_wait, fast_wait = (
            int(_WAIT_SECONDS.findall(body["message"])[0]) for body in (drf_body, fast_body)
        )
        assert abs(fast_wait - drf_wait) <= 1
        assert _WAIT_SECONDS.sub("N", fast_body["message"]) == _WAIT_SECONDS.sub("N", drf_body["message"])
        assert {**fast_body, "message": ""} == {**drf_body, "message": ""}
    else:
        assert fast.body == drf.body
    for (name, drf_value), (_, fast_value) in zip(drf.header_list, fast.header_list, strict=True):
        if name in RATE_HEADERS:
            assert int(fast_value) == int(drf_value) - consumed
        elif name == "Retry-After":
            assert abs(int(fast_value) - int(drf_value)) <= 1
        elif name == "Content-Length" and fast.status_code == 429:
            assert int(fast_value) == len(fast.body)
        else:
            assert fast_value == drf_value, name


# --- Checks both guard tests make ------------------------------------------------------------------

# The cases of credentials and headers the fast paths leave to the view, and the status the view
# answers each with.
OWNER_CASES = {
    "wrong secret": 401,
    "unknown key": 401,
    "no credentials": 401,
    "half the headers": 401,
    "accept html": 200,
}


def headers_for_case(headers: dict[str, str], case: str) -> dict[str, str]:
    """``headers`` changed as an ``OWNER_CASES`` case says."""
    changed = dict(headers)
    if case == "wrong secret":
        changed["APCA-API-SECRET-KEY"] = "not-the-secret"
    elif case == "unknown key":
        changed["APCA-API-KEY-ID"] = "PKNOSUCHKEY"
    elif case == "no credentials":
        changed = {}
    elif case == "half the headers":
        del changed["APCA-API-SECRET-KEY"]
    elif case == "accept html":
        changed["Accept"] = "text/html"
    else:
        raise ValueError(case)
    return changed


def check_answered_as_the_view(built: Stacks, path: str, query: str, headers: dict[str, str]) -> None:
    """The view's answer, then the fast path's (L1 holding the key, and the value for a cached
    read): the same, one request further into the window."""
    built.get(path, query, fast=False, headers=headers)
    drf = built.get(path, query, fast=False, headers=headers)
    fast = built.get(path, query, fast=True, headers=headers)
    assert built.fast.answered == 1 and fast.status_code == 200, fast.body
    same_answer(drf, fast)


def check_a_key_l1_does_not_hold_is_the_views(
    built: Stacks, path: str, query: str, headers: dict[str, str]
) -> None:
    """A key L1 no longer holds: the view finds it in Redis, or in the database."""
    from config.cache import cache_manager

    built.get(path, query, fast=False, headers=headers)
    drf = built.get(path, query, fast=False, headers=headers)
    cache_manager().l1.clear()
    fast = built.get(path, query, fast=True, headers=headers)
    assert built.fast.answered == 0
    same_answer(drf, fast)


def check_a_refused_request_gets_the_views_429_counted_once(
    built: Stacks, path: str, query: str, headers: dict[str, str], *, refused: Callable[[], Any]
) -> None:
    """Under a limit of 3 a minute: two answered fast (counted), the third refused with the view's
    429 (inside ``refused()``, a context), and the view's own 429 then the same."""
    first = built.get(path, query, fast=False, headers=headers)
    second = built.get(path, query, fast=True, headers=headers)
    assert built.fast.answered == 1
    assert (first.headers["X-RateLimit-Remaining"], second.headers["X-RateLimit-Remaining"]) == ("2", "1")
    built.get(path, query, fast=True, headers=headers)
    with refused():
        refused_fast = built.get(path, query, fast=True, headers=headers)
    refused_drf = built.get(path, query, fast=False, headers=headers)
    assert built.fast.answered == 2
    assert refused_fast.status_code == 429
    same_answer(refused_drf, refused_fast, consumed=0)


def check_the_view_authenticates_permits_and_limits_as_assumed(view: type, path: str, module: str) -> None:
    """``module``'s fast path answers for ``view`` without running its DRF classes: it
    authenticates with ``key_owner_held`` (APIKeyAuthentication's L1 hit, first in line), admits
    any authenticated user, and asks the limiter under ``READ_SCOPE``. A change here changes what
    the view answers; re-check ``module`` against it before updating this check."""
    from django.urls import resolve
    from rest_framework.authentication import SessionAuthentication
    from rest_framework.permissions import IsAuthenticated

    from trading.api.authentication import APIKeyAuthentication
    from trading.api.fast_reads import READ_SCOPE
    from trading.api.throttling import EndpointRateThrottle, endpoint_scope

    assert resolve(path).func.view_class is view  # type: ignore[attr-defined]
    changed = f"{view.__name__} changed: re-check {module} before updating this test"
    assert list(view.authentication_classes) == [APIKeyAuthentication, SessionAuthentication], changed
    assert list(view.permission_classes) == [IsAuthenticated], changed
    assert list(view.throttle_classes) == [EndpointRateThrottle], changed
    assert getattr(view, "throttle_scope", None) is None, changed
    request = SimpleNamespace(user=SimpleNamespace(is_authenticated=True), path=path, method="GET")
    assert endpoint_scope(cast(Request, request), view()) == READ_SCOPE, changed
