"""Concurrent orders through real server processes on the real database (file SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.builders import shares
from tests.processes import ServerProcess, gunicorn_server
from trading import services
from trading.models import Account, Asset, CashEntry, Order, Position

pytestmark = pytest.mark.live

BUYERS = 50
AFFORDABLE = 10


@pytest.fixture
def server(transactional_db: None, tmp_path: Path) -> Iterator[ServerProcess]:
    with gunicorn_server(tmp_path, workers=4) as running:
        yield running


def _post_order(
    base_url: str, key_id: str, secret: str, body: dict[str, object]
) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(
        f"{base_url}/v2/orders",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "APCA-API-KEY-ID": key_id,
            "APCA-API-SECRET-KEY": secret,
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_fifty_concurrent_buys_against_cash_for_ten(
    server: ServerProcess, make_asset: Callable[..., Asset], make_account: Callable[..., Account]
) -> None:
    make_asset("AAPL", price="99.99", spread_units=100)  # ask exactly $100.00
    account = make_account(cash=AFFORDABLE * 100_00)
    key, secret = services.api_key_create(account_id=account.pk)
    barrier = threading.Barrier(BUYERS)
    results: list[tuple[int, dict[str, object]]] = []
    lock = threading.Lock()

    def buy() -> None:
        barrier.wait()
        outcome = _post_order(
            server.base_url,
            key.key_id,
            secret,
            {"symbol": "AAPL", "qty": 1, "side": "buy", "type": "market", "time_in_force": "day"},
        )
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=buy) for _ in range(BUYERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = Counter(status for status, _ in results)
    assert statuses == {200: AFFORDABLE, 403: BUYERS - AFFORDABLE}, (statuses, server.log()[-3000:])
    assert {body["code"] for status, body in results if status == 403} == {40310000}
    assert "database is locked" not in server.log()
    account.refresh_from_db()
    assert (account.cash_cents, account.reserved_cents) == (0, 0)
    assert Order.objects.filter(account=account, status="filled").count() == AFFORDABLE
    assert Order.objects.filter(account=account).count() == AFFORDABLE  # rejected orders leave nothing behind
    assert Position.objects.get(account=account).qty == shares(AFFORDABLE)
    assert sum(CashEntry.objects.filter(account=account).values_list("amount_cents", flat=True)) == 0
