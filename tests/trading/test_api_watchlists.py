"""``/v2/watchlists`` by id and by name, with the bodies alpaca-py's request models produce."""

from __future__ import annotations

import uuid

import pytest
from alpaca.trading.models import Watchlist as AlpacaWatchlist
from alpaca.trading.requests import CreateWatchlistRequest, UpdateWatchlistRequest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from pydantic import TypeAdapter

from tests.clock import ManualClock
from tests.trading.api_support import (
    MakeAccount,
    MakeAsset,
    assert_alpaca_error,
    key_client,
)
from trading.api.serializers import WatchlistSerializer
from trading.models import Account, Watchlist

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(account: Account, make_asset: MakeAsset) -> object:
    for symbol in ("AAPL", "MSFT", "IBM"):
        make_asset(symbol)
    return key_client(account)


def _create(client, name: str, symbols: list[str]) -> AlpacaWatchlist:
    body = CreateWatchlistRequest(name=name, symbols=symbols).to_request_fields()
    response = client.post("/v2/watchlists", body, format="json")
    assert response.status_code == 200, response.content
    assert set(response.json()) == set(WatchlistSerializer().fields)
    return AlpacaWatchlist(**response.json())


def test_create_get_list(client, account: Account) -> None:
    created = _create(client, "tech", ["msft", "AAPL"])

    assert created.account_id == account.pk
    assert [asset.symbol for asset in created.assets or []] == ["MSFT", "AAPL"]
    fetched = AlpacaWatchlist(**client.get(f"/v2/watchlists/{created.id}").json())
    assert fetched == created
    listed = TypeAdapter(list[AlpacaWatchlist]).validate_python(client.get("/v2/watchlists").json())
    assert [watchlist.id for watchlist in listed] == [created.id]


def test_update_add_and_remove(client) -> None:
    created = _create(client, "tech", ["AAPL"])
    path = f"/v2/watchlists/{created.id}"

    update = UpdateWatchlistRequest(name="renamed", symbols=["IBM", "MSFT"]).to_request_fields()
    updated = AlpacaWatchlist(**client.put(path, update, format="json").json())
    assert updated.name == "renamed"
    assert [asset.symbol for asset in updated.assets or []] == ["IBM", "MSFT"]

    added = AlpacaWatchlist(**client.post(path, {"symbol": "AAPL"}, format="json").json())
    assert [asset.symbol for asset in added.assets or []] == ["IBM", "MSFT", "AAPL"]
    assert_alpaca_error(client.post(path, {"symbol": "AAPL"}, format="json"), 422)

    removed = AlpacaWatchlist(**client.delete(f"{path}/MSFT").json())
    assert [asset.symbol for asset in removed.assets or []] == ["IBM", "AAPL"]
    assert_alpaca_error(client.delete(f"{path}/MSFT"), 404)

    response = client.delete(path)
    assert response.status_code == 204 and response.content == b""
    assert_alpaca_error(client.get(path), 404)


def test_by_name_variants(client) -> None:
    created = _create(client, "my list", ["AAPL"])
    path = "/v2/watchlists:by_name?name=my%20list"

    assert AlpacaWatchlist(**client.get(path).json()).id == created.id
    added = AlpacaWatchlist(**client.post(path, {"symbol": "IBM"}, format="json").json())
    assert [asset.symbol for asset in added.assets or []] == ["AAPL", "IBM"]
    renamed = AlpacaWatchlist(**client.put(path, {"name": "other"}, format="json").json())
    assert renamed.name == "other"
    assert_alpaca_error(client.get(path), 404)
    assert client.delete("/v2/watchlists:by_name?name=other").status_code == 204
    assert not Watchlist.objects.exists()
    assert_alpaca_error(client.get("/v2/watchlists:by_name"), 422)


def test_invalid_watchlists_are_refused(client) -> None:
    _create(client, "tech", [])
    for body in (
        {"name": "tech", "symbols": []},
        {"name": "", "symbols": []},
        {"name": "x", "symbols": ["NOPE"]},
    ):
        assert_alpaca_error(client.post("/v2/watchlists", body, format="json"), 422)
    assert Watchlist.objects.count() == 1


def test_another_accounts_watchlist_is_not_found(client, make_account: MakeAccount) -> None:
    stranger = key_client(make_account())
    theirs = _create(stranger, "secret", ["AAPL"])
    path = f"/v2/watchlists/{theirs.id}"

    assert_alpaca_error(client.get(path), 404)
    assert_alpaca_error(client.put(path, {"name": "mine"}, format="json"), 404)
    assert_alpaca_error(client.delete(path), 404)
    assert_alpaca_error(client.get(f"/v2/watchlists/{uuid.uuid4()}"), 404)
    assert_alpaca_error(client.get("/v2/watchlists/not-a-uuid"), 404)
    assert Watchlist.objects.get(pk=theirs.id).name == "secret"


def test_property_2_watchlist_list_query_count_does_not_grow(l1_clock: ManualClock, client) -> None:
    """Property 2: watchlists and all their assets load in the same queries for 1 or 10 lists."""

    def queries() -> int:
        client.get("/v2/watchlists")
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/v2/watchlists").status_code == 200
        return len(captured)

    _create(client, "first", ["AAPL"])
    one = queries()
    for index in range(9):
        _create(client, f"list {index}", ["AAPL", "MSFT", "IBM"])
    assert queries() == one == 3  # the account, the watchlists, their entries with assets
