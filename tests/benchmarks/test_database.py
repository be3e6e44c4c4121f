"""The benchmarks' throwaway databases (benchmarks/_database.py): inside ``template_database``
(``benchmark all``) each is a fresh copy of one database migrated once, never the template itself,
and the template is deleted afterwards; a template migrated on its own (``template_migrate``, the
test suite's one per process) serves only while ``template_used`` names it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

from benchmarks._database import (
    template_database,
    template_delete,
    template_migrate,
    template_used,
    throwaway_database,
)
from trading.models import Asset


def _exists(name: str) -> bool:
    if connection.vendor == "sqlite":
        return Path(name).exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@pytest.mark.django_db(transaction=True)
@pytest.mark.db_backend
def test_inside_a_template_each_throwaway_database_is_a_fresh_copy_of_one_migrated_once(
    tmp_path: Path,
) -> None:
    sqlite = connection.vendor == "sqlite"
    name = str(tmp_path / "bench.sqlite3") if sqlite else f"{connection.settings_dict['NAME']}_benchmark"
    template = f"{name}-template" if sqlite else f"{name}_template"
    # The test database is migrated (pytest-django runs the migrations): what a copy must hold.
    migrated = set(MigrationRecorder.Migration.objects.values_list("app", "name"))
    assert migrated
    lines: list[str] = []
    with template_database(name=name, log=lines.append):
        assert _exists(template)
        for _ in range(2):
            with throwaway_database(name=name, log=lines.append):
                # Every migration applied, as migrating would; the previous copy's row is gone.
                assert set(MigrationRecorder.Migration.objects.values_list("app", "name")) == migrated
                assert not Asset.objects.filter(symbol="TMPL").exists()
                Asset.objects.create(symbol="TMPL", name="Template check", sector="Test")
            assert not _exists(name)
        with (
            pytest.raises(CommandError, match="refusing to use the template database"),
            throwaway_database(name=template, log=lines.append),
        ):
            pass
    assert not _exists(template)
    assert lines[0].startswith(f"template {connection.vendor} database {template}: migrating")
    copied = f"throwaway {connection.vendor} database {name}: a copy of the migrated {template}"
    assert lines[1:] == [copied, copied], lines
    assert not Asset.objects.filter(symbol="TMPL").exists()  # the real (test) database untouched


@pytest.mark.django_db(transaction=True)
@pytest.mark.db_backend
def test_a_template_migrated_on_its_own_serves_while_used_and_until_deleted(tmp_path: Path) -> None:
    sqlite = connection.vendor == "sqlite"
    name = str(tmp_path / "bench.sqlite3") if sqlite else f"{connection.settings_dict['NAME']}_benchmark"
    lines: list[str] = []
    template = template_migrate(name=name, log=lines.append)
    try:
        assert template == (f"{name}-template" if sqlite else f"{name}_template") and _exists(template)
        # benchmark all's own template inside it: the one in use serves, nothing migrates.
        with (
            template_used(template),
            template_database(name=f"{name}x", log=lines.append),
            throwaway_database(name=name, log=lines.append),
        ):
            assert MigrationRecorder.Migration.objects.exists()  # a migrated copy
        assert _exists(template)  # used, not owned: still there for the next test
        with throwaway_database(name=name, log=lines.append):
            pass  # no template in use any more: migrated
    finally:
        template_delete(template)
    assert not _exists(template) and not _exists(name)
    assert lines == [
        f"template {connection.vendor} database {template}: migrating (each benchmark's database is a copy)",
        f"throwaway {connection.vendor} database {name}: a copy of the migrated {template}",
        f"throwaway {connection.vendor} database {name}: migrating",
    ], lines
