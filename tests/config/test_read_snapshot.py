"""config/read_snapshot.py: a read of several statements sees one snapshot, on SQLite (WAL) and on
PostgreSQL (REPEATABLE READ), with a real write committed by another connection between them."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, connections, transaction
from django.test.utils import CaptureQueriesContext

from config.read_snapshot import read_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def _committed_elsewhere(username: str) -> None:
    """A user created and committed by another connection (its own thread), then that closed."""

    def create() -> None:
        try:
            get_user_model().objects.create_user(username=username)
        finally:
            connections.close_all()

    writer = threading.Thread(target=create)
    writer.start()
    writer.join(timeout=30)
    assert not writer.is_alive()


def test_statements_inside_read_the_snapshot_of_the_first() -> None:
    users = get_user_model().objects
    with read_snapshot():
        before = users.count()
        _committed_elsewhere("between")
        assert users.count() == before  # the second statement reads the first one's snapshot
        assert not users.filter(username="between").exists()
    assert users.count() == before + 1  # and after it, what was committed since


def test_without_it_the_second_statement_sees_the_write() -> None:
    """The control: the same two reads, each in its own snapshot."""
    users = get_user_model().objects
    before = users.count()
    _committed_elsewhere("between")
    assert users.count() == before + 1


@pytest.mark.db_backend("sqlite")
def test_on_sqlite_it_begins_deferred_and_restores_the_configured_mode() -> None:
    """The project's transactions BEGIN IMMEDIATE (config/settings.py); a read's takes no write
    lock (the writer in the test above goes on while it is open)."""
    with CaptureQueriesContext(connection) as captured, read_snapshot():
        get_user_model().objects.count()
    assert captured[0]["sql"] == "BEGIN DEFERRED"
    assert getattr(connection, "transaction_mode", None) == "IMMEDIATE"
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        get_user_model().objects.count()
    assert captured[0]["sql"] == "BEGIN IMMEDIATE"


@pytest.mark.db_backend("postgresql")
def test_a_write_inside_is_refused_on_postgresql() -> None:
    with pytest.raises(DatabaseError, match="read-only transaction"), read_snapshot():
        get_user_model().objects.create_user(username="inside")
    assert not get_user_model().objects.filter(username="inside").exists()


def test_inside_an_open_transaction_it_reads_that_transactions_snapshot() -> None:
    """PostgreSQL takes an isolation level only before a transaction's first statement: inside one
    already open nothing is set, and its writes stay allowed."""
    with transaction.atomic():
        get_user_model().objects.create_user(username="outer")
        with CaptureQueriesContext(connection) as captured, read_snapshot():
            assert get_user_model().objects.filter(username="outer").exists()
        assert not any("ISOLATION" in query["sql"] for query in captured)
        get_user_model().objects.create_user(username="after")
    assert get_user_model().objects.filter(username__in=["outer", "after"]).count() == 2
