"""Reads bound and prepared on the server (config/postgresql/base.py ``prepared_cursor`` and
``prepared_rows``, used by trading/prepared.py ``read_cursor`` and ``read_rows``; a framework
bypass): the polled reads' statements are prepared once per connection and answer what Django's
client-bound cursor answers, value for value and type for type; ``prepared_rows`` keeps its cursor
between statements on one connection only; every statement still shows to Django's wrappers; a
reconnect, an atomic block and a failed statement are survived; and what the bypass relies on in
Django and psycopg still holds."""

from __future__ import annotations

import datetime as dt
import decimal
import inspect
import time
import uuid
from typing import Any, cast

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
from trading.prepared import read_cursor, read_rows

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_commission")]

POLLED = ["/v2/account", "/v2/positions", "/v2/orders?status=open", "/v2/stocks/AAPL/snapshot"]


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE '_pg3_%%'")
        return [row[0] for row in cursor.fetchall()]


def _kept_cursor() -> Any:
    """The cursor ``prepared_rows`` keeps on this thread's connection (None before its first)."""
    return cast(Any, connection)._rows_cursor


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
@pytest.mark.django_db(transaction=True)
def test_prepared_rows_keeps_one_cursor_per_connection_and_shows_each_statement() -> None:
    with connection.cursor() as plain:
        plain.execute(PROBE, PROBE_PARAMS)
        expected = plain.fetchall()
    seen: list[str] = []

    def wrapper(execute: Any, sql: str, *args: Any) -> Any:
        seen.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(wrapper):
        first = read_rows(connection, PROBE, PROBE_PARAMS)
        kept = _kept_cursor()
        second = read_rows(connection, PROBE, PROBE_PARAMS)
    assert first == second == expected
    assert [type(value) for value in second[0]] == [type(value) for value in expected[0]]
    assert second[0][3].tzinfo is dt.UTC
    assert isinstance(kept.cursor, PreparingCursor) and _kept_cursor() is kept
    assert seen == [PROBE, PROBE]  # each statement through the execute wrappers
    with CaptureQueriesContext(connection) as captured:  # logged: a cursor of its own, as before
        assert read_rows(connection, PROBE, PROBE_PARAMS) == expected
    assert len(captured) == 1 and "%s" not in captured.captured_queries[0]["sql"]
    assert _kept_cursor() is kept
    # A new connection gets a new cursor: the kept one stays with the connection it was made on.
    connection.close()
    assert read_rows(connection, PROBE, PROBE_PARAMS) == expected
    assert _kept_cursor() is not kept
    assert _kept_cursor().cursor.connection is connection.connection


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
@pytest.mark.parametrize("kept", [False, True], ids=["read_cursor", "read_rows"])
def test_prepared_reads_inside_atomic_blocks_and_after_a_failed_statement(kept: bool) -> None:
    def probe() -> list[Any]:
        if kept:
            return read_rows(connection, PROBE, PROBE_PARAMS)
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
    before = _kept_cursor()
    try:
        with read_cursor(connection) as cursor:
            assert not isinstance(cursor.cursor, PreparingCursor)
            cursor.execute(PROBE, PROBE_PARAMS)
        read_rows(connection, PROBE, PROBE_PARAMS)
        assert _kept_cursor() is before  # neither made nor used: Django's cursor
        client = key_client(account)
        assert client.get("/v2/account").status_code == 200
        assert _prepared_statements() == []
    finally:
        raw.prepare_threshold = PREPARE_ON_REQUEST_ONLY


@pytest.mark.db_backend("sqlite")
def test_on_sqlite_the_reads_take_djangos_cursor() -> None:
    with read_cursor(connection) as cursor:
        assert type(cursor.cursor).__module__.startswith("django.db.backends.sqlite3")
    assert not hasattr(connection, "prepared_rows")  # read_rows: a cursor of its own
    assert read_rows(connection, "SELECT %s + 1", [1]) == [(2,)]


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
