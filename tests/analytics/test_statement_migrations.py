"""Statements moved from jobs to analytics without touching their table (jobs_statement): migrating
a database at jobs' previous migration that holds statements, and an empty one, on each backend.
The content type follows the model, so permissions granted on statements still apply."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from django.apps.registry import Apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from analytics.models import Statement
from tests.trading.migration_steps import MIGRATION_TEST_MARKS
from trading.models import Account

pytestmark = MIGRATION_TEST_MARKS

# The last migrations of both apps before the move, and the model as jobs had it then.
BEFORE_THE_MOVE: list[tuple[str, str]] = [("jobs", "0001_initial"), ("analytics", "0002_frontend_sample")]
JOBS_STATEMENT: tuple[str, str] = ("jobs", "Statement")


def _migrate(targets: Sequence[tuple[str, str | None]]) -> None:
    MigrationExecutor(connection).migrate(list(targets))


def _models_at(targets: list[tuple[str, str]]) -> Apps:
    """The models as they were after ``targets``."""
    return MigrationExecutor(connection).loader.project_state(targets).apps


def _latest() -> list[tuple[str, str]]:
    return list(MigrationExecutor(connection).loader.graph.leaf_nodes())


def _statement_fields(account: Account) -> dict[str, object]:
    start = dt.datetime(2026, 1, 1, 5, tzinfo=dt.UTC)
    return {
        "account_id": account.pk,
        "period": "2026-01",
        "period_start": start,
        "period_end": start + dt.timedelta(days=31),
        "opening_cash_cents": 0,
        "closing_cash_cents": 1_000_000,
        "opening_equity_cents": 0,
        "closing_equity_cents": 1_050_000,
        "commissions_cents": 200,
        "realized_pl_cents": 4_000,
        "trade_count": 2,
        "pdf": f"statements/{account.pk}/2026-01-abc.pdf",
    }


def test_a_database_from_before_the_move_keeps_its_statements_and_permissions(
    make_account: Callable[..., Account],
) -> None:
    account = make_account()
    _migrate(BEFORE_THE_MOVE)
    old = _models_at(BEFORE_THE_MOVE)
    assert "jobs_statement" in connection.introspection.table_names()
    row = old.get_model(*JOBS_STATEMENT).objects.create(**_statement_fields(account))
    # Going back moved the content type back too: jobs' statement, as the database had it then.
    ContentType.objects.clear_cache()
    old_type = ContentType.objects.get(app_label="jobs", model="statement")
    auditors = Group.objects.create(name="auditors")
    auditors.permissions.add(Permission.objects.get(content_type=old_type, codename="view_statement"))
    auditor = get_user_model().objects.create_user(username="auditor", password="pw-123456!", is_staff=True)
    auditor.groups.add(auditors)

    _migrate(_latest())

    statement = Statement.objects.get()
    assert (statement.pk, statement.account_id, statement.period, statement.pdf.name) == (
        row.pk,
        account.pk,
        "2026-01",
        f"statements/{account.pk}/2026-01-abc.pdf",
    )
    assert (statement.closing_equity_cents, statement.trade_count) == (1_050_000, 2)
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(Statement).pk == old_type.pk
    assert not ContentType.objects.filter(app_label="jobs", model="statement").exists()
    assert get_user_model().objects.get(pk=auditor.pk).has_perm("analytics.view_statement")


def test_an_empty_database_gets_the_same_table(make_account: Callable[..., Account]) -> None:
    _migrate([("analytics", None), ("jobs", None)])
    tables = connection.introspection.table_names()
    assert "jobs_statement" not in tables and "jobs_jobrun" not in tables

    _migrate(_latest())

    tables = connection.introspection.table_names()
    assert "jobs_statement" in tables and "analytics_statement" not in tables
    account = make_account()
    made = Statement.objects.create(**_statement_fields(account))
    with connection.cursor() as cursor:
        cursor.execute("SELECT period, trade_count FROM jobs_statement")
        stored = cursor.fetchall()
    assert stored == [("2026-01", 2)] and Statement.objects.get().pk == made.pk


def test_the_models_match_their_migrations() -> None:
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
