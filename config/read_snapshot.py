"""One snapshot of the database for a read made of several statements.

Under PostgreSQL's default isolation (READ COMMITTED) each statement sees what was committed when
it began, so a batch read of many statements (the book: accounts, then positions, then fills and
cash) can see an account reset, or a fill, between two of them: cash from before it with
positions from after it. A torn book is then stored (a leaderboard entry, an account's analytics,
a game's final standings) until the next refresh, or for good. Here such a read runs in one
REPEATABLE READ, READ ONLY transaction: every statement sees the database as of the first one,
and a write inside is refused rather than made from a snapshot that may be stale.

SQLite in WAL mode (config/settings.py) gives a transaction the same: its first read fixes the
snapshot it reads until it ends. The project's transactions begin IMMEDIATE there (they take the
write lock at BEGIN, so writers queue instead of failing on a lock upgrade); a read is to hold no
write lock, a whole book read long at 10,000 players, so this one begins DEFERRED: the backend's
``transaction_mode``, which its BEGIN reads (Django 5.2's sqlite3 backend, set from OPTIONS on
connecting), is DEFERRED while the transaction begins. tests/config/test_read_snapshot.py checks
the BEGIN it sends and that a writer goes on meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper


@contextmanager
def read_snapshot(*, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Statements inside read one snapshot. Inside a transaction already open, they read that
    transaction's (its isolation is whoever opened it's to choose: PostgreSQL takes an isolation
    level only before a transaction's first statement)."""
    connection = connections[using]
    if connection.in_atomic_block:
        yield
        return
    with ExitStack() as stack:
        if isinstance(connection, SQLiteDatabaseWrapper):
            # django-stubs lacks the attribute (Django 5.1 added it with the OPTIONS entry).
            connection.ensure_connection()  # connecting sets transaction_mode from OPTIONS
            configured = connection.transaction_mode  # type: ignore[attr-defined]
            connection.transaction_mode = "DEFERRED"  # type: ignore[attr-defined]
            try:
                stack.enter_context(transaction.atomic(using=using))
            finally:
                connection.transaction_mode = configured  # type: ignore[attr-defined]
        else:
            stack.enter_context(transaction.atomic(using=using))
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield
