"""Django's PostgreSQL backend with a health check decided locally instead of by ``SELECT 1``.

With ``CONN_HEALTH_CHECKS`` Django asks ``is_usable()`` once per request, before the request's
first query on a reused connection (``close_if_unusable_or_obsolete`` at ``request_started``
clears ``health_check_done``; ``close_if_health_check_failed`` runs before the next cursor or
autocommit change), and again at a request's end when a database error occurred. Django's
PostgreSQL answer is a ``SELECT 1``: a round trip (client CPU, the server's, two context
switches) on every request, ~10% of a polled read's CPU.

An idle backend sends nothing unsolicited except when it goes away: a terminated backend
(``pg_terminate_backend``, a server restart or shutdown) writes its FATAL ErrorResponse and
closes, which makes the client's socket readable. So a connection that psycopg holds open, whose
libpq status is OK, that is idle (no transaction, no command in flight) and whose socket has
nothing to read is usable; readable, closed or any other state is not, and Django reconnects.
A transaction open at the check (Django never leaves one open between requests, but a caller may
run the request cycle inside one) keeps Django's ``SELECT 1``: closing it would lose the
transaction. What neither check sees in time is a peer that vanished without a word (a host
down, a cable cut): ``SELECT 1`` would wait for TCP's timeout there too.

A framework bypass (docs/architecture.md, Framework bypasses): it relies on Django calling
``is_usable`` as described, which ``tests/config/test_postgresql_backend.py`` checks, with a
terminated backend replaced before the next request answers and no statement sent by the check.

``prepared_cursor()``: a cursor whose statements are bound and prepared on the server, for the
statements ``trading/prepared.py`` compiles once and runs again and again. Django's cursors bind
on the client (psycopg's ``ClientCursor``: each run quotes its parameters into a new SQL text the
server parses and plans again); a polled read's one statement (~3 KB, a dozen joins and
subqueries) cost the server ~0.65 ms to plan for ~0.2 ms to execute. Prepared once per connection
(psycopg's per-connection cache, re-prepared on a new connection after a reconnect; cleared on a
rollback), each run is a Bind and Execute of the plan PostgreSQL keeps. Its timestamps load through
psycopg's C ``TimestamptzLoader`` (the same ``datetime.timezone.utc`` datetimes Django's Python
loader makes on a UTC session, ~2x faster). Also a framework bypass: it relies on Django's
``_cursor`` steps (health check, connection, ``_prepare_cursor``'s wrappers), on psycopg preparing
only when its connection's ``prepare_threshold`` is not None (Django sets None), and on the C loader
answering ``timezone.utc`` for a UTC session; ``tests/config/test_postgresql_backend.py`` and
``tests/trading/test_prepared.py`` check each.

``prepared_rows(sql, params)``: such a statement's rows through a ``prepared_cursor()`` the
connection keeps between statements (a polled read runs one per request; a cursor made and closed
per statement cost ~40-60 us of worker CPU of its ~180-240). It relies on a psycopg cursor staying
usable across statements and transactions on its connection, and on Django's ``CursorWrapper.execute``
doing the per-statement steps (execute wrappers, broken-transaction check, error wrapping);
``tests/trading/test_server_prepared.py`` checks it.
"""

from __future__ import annotations

import datetime as dt
import select
from typing import Any, Self

from django.db.backends.postgresql import base, operations
from django.db.backends.utils import CursorWrapper
from django.utils.asyncio import async_unsafe
from psycopg import Cursor, pq
from psycopg.types.datetime import TimestamptzLoader

# psycopg prepares nothing on a connection whose ``prepare_threshold`` is None, not even a statement
# executed with ``prepare=True``; Django sets None (connection poolers in transaction mode cannot
# keep a session's prepared statements). This threshold is never reached (Django's cursors bind on
# the client and never prepare; only ``PreparingCursor`` asks), so only ``prepared_cursor()``'s
# statements are prepared. ``DB_PREPARED_STATEMENTS=false`` (``OPTIONS: {"prepare_threshold":
# None}``) keeps Django's None behind a pooler, and ``prepared_cursor()`` is then Django's own cursor.
PREPARE_ON_REQUEST_ONLY = 1 << 62


def _socket_readable(fd: int) -> bool:
    """Whether the socket has something to read (data, EOF or an error), without waiting."""
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class PreparingCursor(Cursor[Any]):
    """psycopg's server-side binding cursor, preparing each statement it executes (once per
    connection: psycopg keeps the names it prepared on the connection)."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Self:
        return super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)


class DatabaseOperations(operations.DatabaseOperations):
    def last_executed_query(self, cursor: Any, sql: str, params: Any) -> str:
        # Django reads a client-bound cursor's query text; a prepared statement's run has none
        # (Bind and Execute of a name). Its values quoted in, as Django shows a server-bound
        # cursor's (debug logging and CaptureQueriesContext only).
        if isinstance(cursor, PreparingCursor):
            return str(self.compose_sql(sql, params))
        return super().last_executed_query(cursor, sql, params)


class DatabaseWrapper(base.DatabaseWrapper):
    ops_class = DatabaseOperations
    # ``prepared_rows``' cursor, kept between statements on the connection it was made on.
    _rows_cursor: CursorWrapper | None = None

    def get_connection_params(self) -> dict[str, Any]:
        params: dict[str, Any] = super().get_connection_params()
        if "prepare_threshold" not in self.settings_dict["OPTIONS"]:
            params["prepare_threshold"] = PREPARE_ON_REQUEST_ONLY
        return params

    @async_unsafe
    def prepared_cursor(self) -> CursorWrapper:
        """``cursor()`` (the same health check, wrappers and debug logging), whose statements are
        bound and prepared on the server: for statements run again and again with new values."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        with self.wrap_database_errors:
            connection = self.connection
            if connection.prepare_threshold is None:
                return self._prepare_cursor(self.create_cursor())  # type: ignore[attr-defined]
            cursor = PreparingCursor(connection)
            # The C loader answers the session's time zone, timezone.utc on a UTC session, as
            # Django's Python loader (its connection's) does for self.timezone; anything else
            # keeps Django's.
            if self.timezone is dt.UTC and connection.pgconn.parameter_status(b"TimeZone") == b"UTC":
                cursor.adapters.register_loader("timestamptz", TimestamptzLoader)
            return self._prepare_cursor(cursor)  # type: ignore[attr-defined]

    def prepared_rows(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        """``prepared_cursor()``'s ``execute(sql, params)`` and ``fetchall()``, on a cursor this
        connection keeps between statements (``_rows_cursor``) instead of a new one per statement.

        A cursor made per statement, with its C loader registered and Django's wrapper around it,
        cost a polled read ~40-60 us of worker CPU beyond the statement itself: creating and closing
        it, and psycopg looking each column's loader up again for a new cursor's first result. The
        steps stay Django's: the health check and connection first, then the kept ``CursorWrapper``'s
        own ``execute`` (``execute_wrappers``, the broken-transaction check, ``wrap_database_errors``).
        While queries are logged (DEBUG, ``CaptureQueriesContext``) or with preparing off, a cursor
        per statement as before (the debug wrapper logs each). A new psycopg connection (a
        reconnect) gets a new cursor: the kept one is used only on the connection it was made on."""
        self.close_if_health_check_failed()
        self.ensure_connection()
        connection = self.connection
        if self.queries_logged or connection.prepare_threshold is None:
            with self.prepared_cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
        kept = self._rows_cursor
        if kept is None or kept.cursor.connection is not connection or kept.cursor.closed:
            kept = self._rows_cursor = self.prepared_cursor()
        else:
            self.validate_thread_sharing()  # as _prepare_cursor, for a cursor made on another thread
        kept.execute(sql, params)
        with self.wrap_database_errors:
            return kept.cursor.fetchall()

    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None:
            return False
        try:
            if connection.closed or connection.broken or connection.pgconn.status != pq.ConnStatus.OK:
                return False
            status = connection.pgconn.transaction_status
            if status == pq.TransactionStatus.INTRANS:
                return bool(super().is_usable())
            if status != pq.TransactionStatus.IDLE:
                return False
            return not _socket_readable(connection.pgconn.socket)
        except Exception:
            # Django asks that is_usable never raise: any doubt is an unusable connection.
            return False
