"""Reads bound and prepared on the server (config/postgresql/base.py ``prepared_cursor``, used by
trading/prepared.py ``read_cursor``; a framework bypass): the polled reads' statements are prepared
once per connection and answer what Django's client-bound cursor answers, value for value and type
for type; every statement still shows to Django's wrappers; a reconnect, an atomic block and a failed
statement are survived; and what the bypass relies on in Django and psycopg still holds."""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import time
import uuid
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test.utils import CaptureQueriesContext
from psycopg import pq
from psycopg._preparing import Prepare, PrepareManager

from config.postgresql.base import PREPARE_ON_REQUEST_ONLY, PreparingCursor
from tests.trading.api_support import buy, key_client, key_headers, post_order
from tests.wsgi_calls import wsgi_call
from trading.models import Account, Asset
from trading.prepared import read_cursor

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

POLLED = ["/v2/account", "/v2/positions", "/v2/orders?status=open", "/v2/stocks/AAPL/snapshot"]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE '_pg3_%%'")
        return [row[0] for row in cursor.fetchall()]


# A statement of every parameter type the compiled reads send: uuid, int, text, a timestamp with
# a time zone, a NULL, a decimal and an IN list, and a timestamptz column to load.
PROBE = (
    "SELECT %s::uuid, %s + 1, %s || 'x', %s::timestamptz, %s::timestamptz, %s * 2, "
    "'2025-06-02 14:00:00.123456+02'::timestamptz, NULL::timestamptz, 3 IN (%s, %s, %s)"
)
PROBE_PARAMS: list[Any] = [
    uuid.uuid4(),
    1 << 40,
    "AAPL",
    dt.datetime(2025, 6, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=-4))),
    None,
    decimal.Decimal("1.25"),
    1,
    2,
    3,
]


@pytest.mark.db_backend("postgresql")
def test_a_prepared_read_answers_what_djangos_cursor_answers_type_for_type() -> None:
    with connection.cursor() as plain:
        plain.execute(PROBE, PROBE_PARAMS)
        expected = plain.fetchall()
    for _ in range(2):  # prepared on the first run, the prepared statement's on the second
        with read_cursor(connection) as cursor:
            assert isinstance(cursor.cursor, PreparingCursor)
            cursor.execute(PROBE, PROBE_PARAMS)
            found = cursor.fetchall()
        assert found == expected
        assert [type(value) for value in found[0]] == [type(value) for value in expected[0]]
        assert found[0][3].tzinfo is expected[0][3].tzinfo is dt.UTC
        assert found[0][6].tzinfo is dt.UTC
    assert PROBE.replace("%s", "$1", 1).split("$1")[0] in " ".join(_prepared_statements())


@pytest.mark.db_backend("postgresql")
@pytest.mark.parametrize("path", POLLED)
def test_the_polled_reads_are_prepared_and_still_seen_by_djangos_wrappers(
    asset: Asset, account: Account, path: str
) -> None:
    client = key_client(account)
    buy(client, "AAPL", 2)
    post_order(client, symbol="AAPL", qty=1, type="limit", limit_price="50", time_in_force="gtc")
    first = client.get(path)
    assert first.status_code == 200, first.content
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(sql, *args)

    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(wrapper):
        again = client.get(path)
    assert again.json() == first.json()
    # Each statement shows to the execute wrappers and the debug log, with its values quoted in.
    assert len(seen) == len(captured) >= 1
    assert all(query["sql"] and "%s" not in query["sql"] for query in captured.captured_queries)
    statements = _prepared_statements()
    prepared = [sql for sql in seen if "ON 1 = 1" in sql or "'m', m.symbol" in sql]
    assert prepared, seen  # the joined read, or the snapshot's bars
    assert len(statements) >= len(prepared)


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_after_a_terminated_backend_the_reads_are_prepared_again(account: Account) -> None:
    headers = key_headers(account)
    for _ in range(2):
        assert wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True).status_code == 200
    terminated = int(connection.connection.info.backend_pid)
    assert any("ON 1 = 1" in sql for sql in _prepared_statements())
    with psycopg.connect(**connection.get_connection_params(), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [terminated])
        for _ in range(500):  # bounded by the count: the server ends the backend in milliseconds
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [terminated]).fetchone():
                break
            time.sleep(0.01)
    answer = wsgi_call("GET", "/v2/account", headers=headers, connection_signals=True)
    assert answer.status_code == 200, answer.body
    assert int(connection.connection.info.backend_pid) != terminated
    assert any("ON 1 = 1" in sql for sql in _prepared_statements())


@pytest.mark.db_backend("postgresql")
@pytest.mark.django_db(transaction=True)
def test_prepared_reads_inside_atomic_blocks_and_after_a_failed_statement() -> None:
    def probe() -> list[Any]:
        with read_cursor(connection) as cursor:
            cursor.execute(PROBE, PROBE_PARAMS)
            return list(cursor.fetchall())

    expected = probe()
    with transaction.atomic():
        assert probe() == expected
        with pytest.raises(DatabaseError), transaction.atomic():  # a savepoint rolled back
            probe()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1 / 0")
        assert probe() == expected  # after ROLLBACK TO SAVEPOINT
    with pytest.raises(DatabaseError), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 / 0")
        probe()  # the transaction is aborted: refused, as any statement is
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert probe() == expected  # after the rollback (which clears psycopg's prepared names)
    assert probe() == expected
    with pytest.raises(DatabaseError), transaction.atomic():
        assert probe() == expected
        raise DatabaseError("roll back")
    assert probe() == expected


@pytest.mark.db_backend("postgresql")
def test_with_preparing_turned_off_the_reads_take_djangos_cursor(account: Account) -> None:
    """``OPTIONS: {"prepare_threshold": None}`` (a pooler in transaction mode) is Django's default:
    no statement prepared, ``prepared_cursor`` is Django's client-bound cursor."""
    raw = connection.connection
    raw.prepare_threshold = None
    try:
        with read_cursor(connection) as cursor:
            assert not isinstance(cursor.cursor, PreparingCursor)
            cursor.execute(PROBE, PROBE_PARAMS)
        client = key_client(account)
        assert client.get("/v2/account").status_code == 200
        assert _prepared_statements() == []
    finally:
        raw.prepare_threshold = PREPARE_ON_REQUEST_ONLY


@pytest.mark.db_backend("sqlite")
def test_on_sqlite_the_reads_take_djangos_cursor() -> None:
    with read_cursor(connection) as cursor:
        assert type(cursor.cursor).__module__.startswith("django.db.backends.sqlite3")


# --- What the bypass relies on (psycopg==3.3.9, Django==5.2.19 in requirements.txt) ---------------


def test_djangos_cursor_steps_are_the_ones_prepared_cursor_repeats() -> None:
    """``prepared_cursor`` repeats ``BaseDatabaseWrapper._cursor``'s steps with its own cursor."""
    source = inspect.getsource(BaseDatabaseWrapper._cursor)  # type: ignore[attr-defined]
    body = source.split(":", 1)[1].split()
    assert body == [
        "self.close_if_health_check_failed()",
        "self.ensure_connection()",
        "with",
        "self.wrap_database_errors:",
        "return",
        "self._prepare_cursor(self.create_cursor(name))",
    ]


@pytest.mark.db_backend("postgresql")
def test_psycopg_prepares_only_with_a_threshold_and_loads_utc_with_its_c_loader() -> None:
    manager = PrepareManager()
    query: Any = type("Query", (), {"query": b"SELECT $1", "types": (23,)})()
    manager.prepare_threshold = None
    assert manager.get(query, prepare=True)[0] is Prepare.NO  # why Django's None is replaced
    manager.prepare_threshold = PREPARE_ON_REQUEST_ONLY
    assert manager.get(query, prepare=True)[0] is Prepare.SHOULD
    assert manager.get(query)[0] is Prepare.NO  # and nothing unasked is ever prepared
    assert connection.connection.prepare_threshold == PREPARE_ON_REQUEST_ONLY
    with read_cursor(connection) as cursor:
        loader = cursor.cursor.adapters.get_loader(psycopg.postgres.types["timestamptz"].oid, pq.Format.TEXT)
        assert loader.__module__.startswith("psycopg_binary")  # the C loader
        cursor.execute("SELECT '2025-06-02 14:00:00+00'::timestamptz")
        (value,) = cursor.fetchone()
    assert value == dt.datetime(2025, 6, 2, 14, tzinfo=dt.UTC) and value.tzinfo is dt.UTC
