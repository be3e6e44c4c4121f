"""With the database unreachable, the web answers 503 at once (Alpaca's shape under /v2/, a plain
page elsewhere) and serves again as soon as the database is back, through config.wsgi as gunicorn
calls it. The outage is real: the connection is pointed at a database that cannot be opened (a
file in a directory that does not exist, a port nothing listens on), as a stopped server is.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from config.wsgi import SplitStackHandler, application
from tests.clock import ManualClock
from tests.processes import free_port
from tests.trading.api_support import key_headers
from tests.wsgi_calls import Answer, wsgi_call
from trading.api.errors import UNAVAILABLE_MESSAGE
from trading.models import Account, Asset

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def database_pointed_at(**changes: Any) -> Iterator[None]:
    """This thread's connection re-pointed (NAME, HOST, PORT...) until the block ends."""
    saved = {name: connection.settings_dict.get(name) for name in changes}
    connection.close()
    connection.settings_dict.update(changes)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.update(saved)


def unreachable() -> dict[str, Any]:
    if connection.vendor == "sqlite":
        return {"NAME": "/nonexistent-directory/db.sqlite3"}
    return {"HOST": "127.0.0.1", "PORT": free_port()}  # nothing listens there: refused


def test_the_api_answers_503_in_alpacas_shape_then_200(account: Account) -> None:
    headers = key_headers(account)
    assert wsgi_call("GET", "/v2/account", headers=headers).status_code == 200
    with database_pointed_at(**unreachable()):
        down = wsgi_call("GET", "/v2/account", headers=headers)
    assert down.status_code == 503, down.body
    assert down.json() == {"code": 50310000, "message": UNAVAILABLE_MESSAGE}
    assert wsgi_call("GET", "/v2/account", headers=headers).status_code == 200


def test_a_page_answers_a_plain_503_page_then_200(make_asset: Callable[..., Asset]) -> None:
    make_asset("AAA")
    assert wsgi_call("GET", "/").status_code == 200
    with database_pointed_at(**unreachable()):
        down = wsgi_call("GET", "/")
    assert down.status_code == 503, down.body
    assert down.headers["Content-Type"].startswith("text/html")
    assert b"Service unavailable" in down.body
    assert wsgi_call("GET", "/").status_code == 200


@pytest.mark.db_backend("postgresql")
@pytest.mark.parametrize("path", ["/v2/account", "/v2/orders"])
def test_a_server_that_never_answers_is_a_503_after_the_views_connection_attempts(
    account: Account, path: str, l1_clock: ManualClock
) -> None:
    """A server that accepts connections and never answers (hung, or a black-holed network)
    would hold the request for minutes without a connect timeout; with it the answer is a 503
    after DB_CONNECT_TIMEOUT_S (psycopg's shortest, 2 s). The polled reads' fast path (L1 holds
    the key, on a stopped clock) hands its failure on to the view, which does not connect again: the server accepts
    as many connections as for the view alone, counted rather than timed."""
    assert connection.settings_dict["OPTIONS"]["connect_timeout"] == settings.DB_CONNECT_TIMEOUT_S <= 2
    headers = key_headers(account)
    assert wsgi_call("GET", path, headers=headers).status_code == 200  # L1 holds the key
    view_alone = SplitStackHandler(pages=application.pages, api=application.api)
    down = {name: _accepted_while(path, headers, app) for name, app in (("view", view_alone), ("fast", None))}
    for answer, _ in down.values():
        assert answer.status_code == 503, answer.body
        assert answer.json()["code"] == 50310000
    assert down["fast"][1] == down["view"][1] >= 1


def _accepted_while(path: str, headers: dict[str, str], app: Any) -> tuple[Answer, int]:
    """``GET path`` with the database pointed at a server that accepts connections, holds them
    open and never writes; the answer and the connections it accepted."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(0.05)
    accepted: list[socket.socket] = []
    done = threading.Event()

    def accept() -> None:
        while not done.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    def hang_up() -> None:
        done.set()
        silent.close()
        for peer in accepted:
            peer.close()

    server = threading.Thread(target=accept, daemon=True)
    server.start()
    try:
        with database_pointed_at(HOST="127.0.0.1", PORT=silent.getsockname()[1]):
            # The request runs on this thread (the connection settings are this thread's); a
            # watchdog ends the wait for a hung connect by closing the sockets.
            watchdog = threading.Timer(30, hang_up)
            watchdog.start()
            try:
                answer = wsgi_call("GET", path, headers=headers, application=app)
            finally:
                watchdog.cancel()
    finally:
        hang_up()
        server.join()
    return answer, len(accepted)
