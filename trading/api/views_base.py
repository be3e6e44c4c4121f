"""What every trading endpoint shares: the caller's account, parsing, the error responses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, Throttled, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.read_snapshot import read_snapshot
from trading import selectors
from trading.api.authentication import (
    VerifiedKey,
    account_again,
    account_joined_again,
    request_account_id,
    request_account_joined,
    request_account_or_none,
)
from trading.api.errors import DATABASE_UNAVAILABLE_ENVIRON
from trading.api.schema import ERROR_DESCRIPTIONS
from trading.api.serializers import ErrorSerializer
from trading.api.throttling import PendingDecision, rate_limit_headers_set, retry_after
from trading.errors import NotFound
from trading.models import Account


def with_errors(responses: Mapping[int, Any], *statuses: int) -> dict[int, Any]:
    """``responses`` plus the error statuses the view's own logic answers (e.g. 403 for a caller
    without a trading account, 404 for a name that matches nothing); those that follow from the
    operation's shape (401, 404 for path ids, 422 for parameters, 429...) the schema class adds
    (trading/api/schema.py)."""
    errors = {
        status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status])
        for status in statuses
    }
    return {**errors, **responses}


NO_ACCOUNT = "this user has no trading account"


def request_account(request: Request) -> Account:
    """The account the request acts on (its key's, or its session's selected one)."""
    account = request_account_or_none(request)
    if account is None:
        raise PermissionDenied(NO_ACCOUNT)
    return account


T = TypeVar("T")


def request_account_read(request: Request, read: selectors.AccountRead[T]) -> T:
    """``read`` of the account the request acts on: for a key's request, in the same statement
    as the account's row (``request_account_joined``); else after loading it.

    A session's account is loaded first (the rate limiter asks for it before the view), and a
    finished game's open orders closed then (``account_orders_closed_on_read``: a write, in its
    own transaction). A read whose answer uses the row (``AccountRead.uses_row``: cash and reset
    time with the book) then reads the row again with the read, from one moment
    (``account_read_with_row``): under READ COMMITTED a reset or a fill committed between the
    load and the read would otherwise pair cash from before it with positions from after it, an
    equity the account never had. A key's request whose read did not join reads as before."""
    joined = request_account_joined(request, part=read.part)
    if joined is not None:
        account, rows = joined
        return read.joined(account, rows)
    account = request_account(request)
    if not read.uses_row or isinstance(request.auth, VerifiedKey):
        return read.alone(account)
    return account_read_with_row(account, read)


def account_read_with_row(account: Account, read: selectors.AccountRead[T]) -> T:
    """``read`` with ``account``'s row read again: in one statement when the read joins (as a
    key's: the same count as the load and a read alone), else in one snapshot
    (config/read_snapshot.py; ``PREPARED_QUERIES`` off). For an account loaded (or written)
    before, whose row may have changed since."""
    part = read.part(str(account.pk)) if settings.PREPARED_QUERIES else None
    if part is not None:
        found = account_joined_again(account=account, part=part)
        if found is None:  # the row gone since it was loaded
            raise PermissionDenied(NO_ACCOUNT)
        again, rows = found
        return read.joined(again, rows)
    with read_snapshot():
        fresh = account_again(account=account)
        if fresh is None:
            raise PermissionDenied(NO_ACCOUNT)
        return read.alone(fresh)


def request_account_pk(request: Request) -> str:
    """The id of the account the request acts on, for a write that reads the account's row
    itself under its lock: an API key names it without a query (trading/api/authentication.py)."""
    account_id = request_account_id(request)
    if account_id is None:
        raise PermissionDenied("this user has no trading account")
    return account_id


def request_user(request: Request) -> User:
    """The user behind the request (its key's owner, or its session's)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("authentication required")
    return user


def parse_query(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    """Validated query parameters; a plain dict so absent booleans stay absent."""
    serializer = serializer_class(data=request.query_params.dict())
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def parse_body(serializer_class: type[serializers.Serializer[Any]], request: Request) -> dict[str, Any]:
    data = request.data
    if not isinstance(data, Mapping):
        raise ValidationError("request body must be a JSON object")
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def parse_uuid(value: str, *, what: str) -> uuid.UUID:
    """An id from the path; anything that is not a UUID names nothing, so it is a 404."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"{what} not found") from None


class RateLimitedAPIView(APIView):
    """Base for every rate-limited API endpoint: its answers carry the limiter's figures."""

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        rate_limit_headers_set(request._request, response)
        return response


class TradingAPIView(RateLimitedAPIView):
    """Base for the Alpaca trading endpoints (authentication and errors come from settings)."""

    # Set by views whose handler only reads precomputed, cached data: the rate limiter's verdict
    # is then read after the handler ran, so the two overlap (trading/api/throttling.py).
    rate_verdict_after_handler = False
    pending_rate_verdict: PendingDecision | None = None

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        pending, self.pending_rate_verdict = self.pending_rate_verdict, None
        if pending is not None:
            decision = pending.result()
            if not decision.allowed:
                try:
                    self.throttled(request, retry_after(decision))
                except Throttled as refused:
                    response = self.handle_exception(refused)
        return super().finalize_response(request, response, *args, **kwargs)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        # The fast path's statement already met a database outage (trading/api/fast_reads.py):
        # the handler's first statement would connect again and wait the connect timeout a second
        # time. Raised where it would have connected, after authentication and the verdict, so the
        # answer is the handler's own 503 (alpaca_exception_handler).
        failed = request._request.META.pop(DATABASE_UNAVAILABLE_ENVIRON, None)
        if isinstance(failed, Exception):
            raise failed

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return super().dispatch(request, *args, **kwargs)
        finally:
            # A handler whose error escaped DRF never reached finalize_response; the verdict is
            # still read, so the limiter's connection is free for the next request.
            if self.pending_rate_verdict is not None:
                self.pending_rate_verdict.result()
                self.pending_rate_verdict = None
