"""What every trading endpoint shares: the caller's account, parsing, the error responses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.views import APIView

from trading.api.serializers import ErrorSerializer
from trading.errors import NotFound
from trading.models import Account

ERRORS: dict[int, OpenApiResponse] = {
    status: OpenApiResponse(ErrorSerializer, description=description)
    for status, description in (
        (401, "missing or invalid API key"),
        (403, "forbidden: insufficient buying power or shares, or not allowed"),
        (404, "not found"),
        (422, "invalid parameters"),
    )
}


def with_errors(responses: Mapping[int, Any]) -> dict[int, Any]:
    return {**ERRORS, **responses}


def request_account(request: Request) -> Account:
    """The caller's trading account; API-key auth has already loaded it with the user."""
    account = getattr(request.user, "account", None)
    if not isinstance(account, Account):
        raise PermissionDenied("this user has no trading account")
    return account


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


class TradingAPIView(APIView):
    """Base for the Alpaca trading endpoints (authentication and errors come from settings)."""
