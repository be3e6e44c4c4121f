"""ensure_indexes against the live schema: missing indexes and unique constraints come back,
INVALID leftovers of a failed concurrent build are rebuilt (PostgreSQL), and a second run is all ok.

The schema is changed with raw DDL, so these tests run in transactional mode (DDL that has to run
outside a transaction cannot be inside the test's). Each restores what it broke even on failure.
Backend-specific expectations are asserted for the backend in use, never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.builders import flat_bar
from trading.indexes import declared, invalid_index_names
from trading.models import DailyBar, Fill, MinuteBar, StockPriceHistory

TICK_TABLE = StockPriceHistory._meta.db_table
BAR_TABLE = DailyBar._meta.db_table
FILL_TABLE = Fill._meta.db_table


def run(*args: str) -> str:
    out = StringIO()
    call_command("ensure_indexes", *args, stdout=out)
    return out.getvalue()


def live(table: str) -> dict[str, Any]:
    with connection.cursor() as cursor:
        return dict(connection.introspection.get_constraints(cursor, table))


def assert_all_ok(output: str) -> None:
    total = len(declared())
    assert f"{total} indexes and unique constraints checked: {total} ok." in output
    assert "created" not in output and "rebuilt" not in output


@pytest.fixture
def restore_schema() -> Iterator[None]:
    yield
    # Whatever a test broke, put back (idempotent: a no-op when everything is in place).
    run()


def test_every_declared_index_is_checked() -> None:
    names = {item.name for item in declared()}
    assert {
        "tick_symbol_time_idx",
        "fill_account_time_idx",
        "minute_bar_unique",
        "daily_bar_unique",
    } <= names
    # Ticks are keyed by (symbol, seq): no unique index beside the key.
    assert "tick_symbol_seq_unique" not in names
    # Retention deletes ticks and minute bars symbol by symbol: no index on their time alone.
    assert not {"tick_time_idx", "minute_bar_start_idx"} & names
    assert {item.kind for item in declared() if item.name.endswith("_unique")} == {"unique"}


@pytest.mark.django_db(transaction=True)
def test_recreates_a_dropped_index_and_then_reports_ok(restore_schema: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX tick_symbol_time_idx")
    assert "tick_symbol_time_idx" not in live(TICK_TABLE)

    dry = run("--dry-run")
    assert "missing tick_symbol_time_idx (would create)" in dry
    assert "tick_symbol_time_idx" not in live(TICK_TABLE)

    output = run()
    assert "created tick_symbol_time_idx (" in output
    assert "ok minute_bar_unique" in output
    restored = live(TICK_TABLE)["tick_symbol_time_idx"]
    assert restored["columns"] == ["symbol", "recorded_at"]
    assert restored["index"] is True and restored["unique"] is False

    assert_all_ok(run())


@pytest.mark.django_db(transaction=True)
def test_builds_without_blocking_writes_where_the_backend_can(restore_schema: None) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX fill_account_time_idx")

    with CaptureQueriesContext(connection) as captured:
        output = run()

    created = [q["sql"] for q in captured if "CREATE INDEX" in q["sql"].upper()]
    assert len(created) == 1 and "fill_account_time_idx" in created[0]
    if connection.vendor == "postgresql":
        assert "CREATE INDEX CONCURRENTLY" in created[0].upper()
        assert "concurrent" not in output.splitlines()[0].lower()  # no SQLite caveat
    else:
        assert connection.vendor == "sqlite"
        assert "CONCURRENTLY" not in created[0].upper()
        assert "SQLite has no concurrent index build" in output
    assert "fill_account_time_idx" in live(FILL_TABLE)


def _drop_daily_bar_unique() -> None:
    """Remove daily_bar_unique from the live schema."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {BAR_TABLE} DROP CONSTRAINT daily_bar_unique")
            return
        cursor.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = %s", [BAR_TABLE])
        (create_sql,) = cursor.fetchone()
        clause = ', CONSTRAINT "daily_bar_unique" UNIQUE ("symbol", "start")'
        if clause not in create_sql:
            # An earlier test already replaced it with the unique index ensure_indexes builds.
            cursor.execute("DROP INDEX daily_bar_unique")
            return
        # SQLite keeps the constraint inside CREATE TABLE and cannot drop it: rebuild the table
        # without it, the way Django's SQLite schema editor rebuilds tables.
        new_sql = create_sql.replace(clause, "").replace(f'"{BAR_TABLE}"', f'"{BAR_TABLE}__new"', 1)
        cursor.execute(new_sql)
        cursor.execute(f'INSERT INTO "{BAR_TABLE}__new" SELECT * FROM "{BAR_TABLE}"')
        cursor.execute(f'DROP TABLE "{BAR_TABLE}"')
        cursor.execute(f'ALTER TABLE "{BAR_TABLE}__new" RENAME TO "{BAR_TABLE}"')


@pytest.mark.django_db(transaction=True)
def test_recreates_a_missing_unique_constraint(restore_schema: None) -> None:
    _drop_daily_bar_unique()
    assert "daily_bar_unique" not in live(BAR_TABLE)

    output = run()

    assert "created daily_bar_unique (" in output
    restored = live(BAR_TABLE)["daily_bar_unique"]
    assert restored["columns"] == ["symbol", "start"] and restored["unique"] is True
    if connection.vendor == "postgresql":
        # A real table constraint (introspection reports constraints with index=False), built from
        # a concurrently created unique index.
        assert restored["index"] is False
    else:
        # SQLite cannot add a constraint to an existing table: a unique index enforces the rule.
        assert connection.vendor == "sqlite"
        assert restored["index"] is True
    start = timezone.now()
    DailyBar.objects.bulk_create([flat_bar(DailyBar, "AAPL", start)])
    with pytest.raises(IntegrityError), transaction.atomic():
        DailyBar.objects.bulk_create([flat_bar(DailyBar, "AAPL", start)])

    assert_all_ok(run())


@pytest.mark.django_db(transaction=True)
def test_a_unique_build_blocked_by_duplicates_fails_clearly_and_recovers(restore_schema: None) -> None:
    _drop_daily_bar_unique()
    start = timezone.now()
    DailyBar.objects.bulk_create([flat_bar(DailyBar, "AAPL", start), flat_bar(DailyBar, "AAPL", start)])

    out = StringIO()
    with pytest.raises(CommandError, match="could not be built"):
        call_command("ensure_indexes", stdout=out)
    assert "failed daily_bar_unique: " in out.getvalue()
    assert "ok minute_bar_unique" in out.getvalue()  # the other items were still checked
    if connection.vendor == "postgresql":
        # The failed concurrent build leaves an INVALID index with the declared name behind.
        assert invalid_index_names(connection, BAR_TABLE) == {"daily_bar_unique"}
    else:
        assert connection.vendor == "sqlite"
        assert "daily_bar_unique" not in live(BAR_TABLE)

    DailyBar.objects.filter(pk=DailyBar.objects.order_by("pk").values("pk")[:1]).delete()
    output = run()

    if connection.vendor == "postgresql":
        assert "rebuilt invalid daily_bar_unique (" in output
        assert invalid_index_names(connection, BAR_TABLE) == set()
    else:
        assert "created daily_bar_unique (" in output
    assert live(BAR_TABLE)["daily_bar_unique"]["unique"] is True
    assert_all_ok(run())


@pytest.mark.django_db(transaction=True)
def test_invalid_indexes_are_rebuilt_where_the_backend_has_them(restore_schema: None) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            # What a failed CREATE INDEX CONCURRENTLY leaves behind.
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'tick_symbol_time_idx'::regclass"
            )
        assert invalid_index_names(connection, TICK_TABLE) == {"tick_symbol_time_idx"}
        assert "invalid tick_symbol_time_idx (would rebuild)" in run("--dry-run")

        output = run()

        assert "rebuilt invalid tick_symbol_time_idx (" in output
        assert invalid_index_names(connection, TICK_TABLE) == set()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'tick_symbol_time_idx'::regclass"
            )
            assert cursor.fetchone() == (True,)
    else:
        # SQLite builds indexes in one statement inside a transaction: there is no INVALID state
        # to detect, so nothing is ever rebuilt.
        assert connection.vendor == "sqlite"
        assert invalid_index_names(connection, TICK_TABLE) == set()
        output = run()
        assert "rebuilt" not in output and "invalid" not in output
    assert_all_ok(run())


@pytest.mark.django_db(transaction=True)
def test_an_invalid_unique_constraint_is_rebuilt_on_postgresql(restore_schema: None) -> None:
    if connection.vendor != "postgresql":
        # Nothing can be invalid on SQLite; the constraint is simply reported as present.
        assert connection.vendor == "sqlite"
        assert "ok minute_bar_unique" in run()
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'minute_bar_unique'::regclass"
        )

    output = run()

    assert "rebuilt invalid minute_bar_unique (" in output
    restored = live(MinuteBar._meta.db_table)["minute_bar_unique"]
    assert restored["unique"] is True and restored["index"] is False  # a constraint again
    assert_all_ok(run())


@pytest.mark.django_db
def test_refuses_to_build_inside_a_transaction() -> None:
    # The test runs inside a transaction; the DROP is rolled back with it.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX tick_symbol_time_idx")
    with pytest.raises(CommandError, match="inside a transaction"):
        run()
    # Checking alone is fine anywhere.
    assert "missing tick_symbol_time_idx" in run("--dry-run")
