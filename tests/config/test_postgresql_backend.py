"""The project's PostgreSQL backend (config/postgresql/base.py): its health check sends nothing to
the server, Django still asks it once per request before the first query, and a connection whose
backend the server terminated is replaced before the next request answers, through config.wsgi's
application with the request signals a gunicorn worker runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from django.db.backends.postgresql.base import DatabaseWrapper as DjangosWrapper

from config.postgresql.base import DatabaseWrapper
from tests.trading.api_support import key_headers
from tests.wsgi_calls import wsgi_call
from trading.models import Account

pytestmark = [pytest.mark.db_backend("postgresql"), pytest.mark.django_db(transaction=True)]


def admin_connection() -> psycopg.Connection[Any]:
    """A second session on the test database, outside Django."""
    return psycopg.connect(**connection.get_connection_params(), autocommit=True)


def backend_pid() -> int:
    return int(connection.connection.info.backend_pid)


def last_statement(pid: int) -> str:
    with admin_connection() as admin:
        row = admin.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()
    assert row is not None
    return str(row[0])


def test_a_terminated_backend_is_replaced_before_the_next_request_answers(account: Account) -> None:
    headers = key_headers(account)
    assert wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True).status_code == 200
    terminated = backend_pid()
    with admin_connection() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [terminated])
        # Bounded by the count, not a clock: the server ends the backend within milliseconds.
        for _ in range(500):
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [terminated]).fetchone():
                break
            time.sleep(0.01)
    answer = wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True)
    assert answer.status_code == 200, answer.body
    assert backend_pid() != terminated


def test_the_health_check_sends_nothing_to_the_server() -> None:
    assert isinstance(connections["default"], DatabaseWrapper)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'before the health checks'")
    pid = backend_pid()
    assert all(connection.is_usable() for _ in range(5))
    assert last_statement(pid) == "SELECT 'before the health checks'"
    # What the check replaces would have shown here: the guard sees a statement when one is sent.
    assert DjangosWrapper.is_usable(connection)
    assert last_statement(pid) == "SELECT 1"


def test_django_asks_the_health_check_once_per_request_before_its_first_query(
    account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = key_headers(account)
    assert wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True).status_code == 200
    events: list[str] = []
    is_usable = connection.is_usable

    def checked() -> bool:
        events.append("check")
        return is_usable()

    def executed(execute: Callable[..., Any], *args: Any) -> Any:
        events.append("query")
        return execute(*args)

    monkeypatch.setattr(connection, "is_usable", checked)
    pid = backend_pid()
    with connection.execute_wrapper(executed):
        for _ in range(2):
            start = len(events)
            answer = wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True)
            assert answer.status_code == 200
            assert events[start] == "check" and events[start:].count("check") == 1
            assert "query" in events[start:]
    assert backend_pid() == pid  # the connection was kept: the check found it usable
