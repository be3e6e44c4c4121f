"""The dashboard's own channel through a real daphne and a real Redis: the account snapshot on
connect, then one leaderboard frame per refresh that changed the board and none for one that did not.

The leaderboard job runs here, in the test process, as the Celery worker would run it; its message
reaches daphne over Redis and daphne reads the board from the same test database.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from pytest_django.fixtures import Settings
from websockets.sync.client import ClientConnection, connect

from analytics import services as analytics_services
from realtime.selectors import account_snapshot_get
from tests.builders import shares
from tests.realtime.servers import daphne_server
from trading import services
from trading.models import Account, Asset

pytestmark = [pytest.mark.live, pytest.mark.slow]

TIMEOUT = 10


def logged_in(user_id: int) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.get(pk=user_id))
    return client


def receive(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout))
    return message


def test_snapshot_on_connect_then_only_changed_leaderboards(
    stream_settings: Settings,
    transactional_db: None,
    make_account: Callable[..., Account],
    make_asset: Callable[..., Asset],
    tmp_path: Path,
) -> None:
    make_asset("AAPL", price="100.00")
    me, rival, other = (make_account(cash=1_000_000) for _ in range(3))
    services.order_place(
        account_id=me.pk,
        request=services.OrderRequest(
            symbol="AAPL", qty=shares(5), side="buy", type="market", time_in_force="day"
        ),
    )
    browser = logged_in(me.user_id)
    cookie = f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}"

    with (
        daphne_server(tmp_path) as server,
        connect(
            f"{server.ws_url}/ws/dashboard", additional_headers={"Cookie": cookie}, open_timeout=10
        ) as ws,
    ):
        # On connect: the account and positions the page resumes from, as the REST API shapes them.
        snapshot = receive(ws)
        assert snapshot == {
            "stream": "account_update",
            "data": json.loads(json.dumps(account_snapshot_get(account_id=str(me.pk)))),
        }
        assert [p["symbol"] for p in snapshot["data"]["positions"]] == ["AAPL"]

        # The first board ever is a change: one frame, exactly GET /v2/leaderboard?limit=20.
        first = analytics_services.leaderboard_refresh()
        assert first.changed
        frame = receive(ws)
        assert frame["stream"] == "leaderboard"
        assert frame["data"] == browser.get("/v2/leaderboard?limit=20").json()
        assert frame["data"]["as_of"] == first.as_of.isoformat()
        assert {e["username"] for e in frame["data"]["entries"]} == {
            a.user.username for a in (me, rival, other)
        }
        assert all("account_number" not in e for e in frame["data"]["entries"])

        # Nothing moved: a new snapshot is stored, but no frame goes out.
        unchanged = analytics_services.leaderboard_refresh()
        assert not unchanged.changed
        with pytest.raises(TimeoutError):
            ws.recv(1.0)

        # The rival's equity changes: the next frame is the board of that refresh.
        services.account_grant_cash(account_id=rival.pk, amount_cents=250_000)
        changed = analytics_services.leaderboard_refresh()
        assert changed.changed
        frame = receive(ws)
        assert frame["stream"] == "leaderboard"
        assert frame["data"]["as_of"] == changed.as_of.isoformat()
        assert frame["data"] == browser.get("/v2/leaderboard?limit=20").json()
        equities = {e["username"]: e["equity"] for e in frame["data"]["entries"]}
        assert equities[rival.user.username] == "12500.00"
    assert "Traceback" not in server.log(), server.log()
