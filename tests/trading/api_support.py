"""Helpers shared by the trading API tests (no tests here).

Responses are checked with alpaca-py's own pydantic models: that the SDK can parse an answer is
the compatibility that matters.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rest_framework.test import APIClient

from trading import services
from trading.models import Account, Asset

if TYPE_CHECKING:
    # Stub-only: what the stubs say APIClient requests return (a Response with .json() etc.).
    from rest_framework.response import _MonkeyPatchedResponse


class KeyClient(APIClient):
    """An APIClient carrying an account's API key the way alpaca-py does, plus the key itself."""

    account: Account
    key_id: str
    secret: str


def key_client(account: Account, *, style: str = "headers") -> KeyClient:
    key, secret = services.api_key_create(account_id=account.pk, label="test")
    client = KeyClient()
    client.account, client.key_id, client.secret = account, key.key_id, secret
    if style == "headers":
        client.credentials(HTTP_APCA_API_KEY_ID=key.key_id, HTTP_APCA_API_SECRET_KEY=secret)
    elif style == "basic":
        token = base64.b64encode(f"{key.key_id}:{secret}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    elif style == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.key_id}:{secret}")
    else:
        raise ValueError(style)
    return client


def key_headers(account: Account) -> dict[str, str]:
    """A new API key's headers for ``account``, for requests made without the test client."""
    client = key_client(account)
    return {"APCA-API-KEY-ID": client.key_id, "APCA-API-SECRET-KEY": client.secret}


def post_order(client: APIClient, **body: Any) -> _MonkeyPatchedResponse:
    payload = {"side": "buy", "type": "market", "time_in_force": "day", **body}
    return client.post("/v2/orders", payload, format="json")


def assert_alpaca_error(response: _MonkeyPatchedResponse, status: int) -> dict[str, Any]:
    """Any failure has Alpaca's shape and the status's code (e.g. 422 -> 42210000)."""
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == status * 100000 + 10000
    assert isinstance(body["message"], str) and body["message"]
    return body


def buy(client: APIClient, symbol: str, qty: int) -> dict[str, Any]:
    response = post_order(client, symbol=symbol, qty=qty)
    assert response.status_code == 200, response.content
    return dict(response.json())


MakeAsset = Callable[..., Asset]
MakeAccount = Callable[..., Account]
