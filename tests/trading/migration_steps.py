"""Moving the test database along an app's migration graph (trading's unless named), for the
tests that check one migration from its predecessor's state: the migration is found by its
name's suffix, so a test keeps working when the migration is renumbered."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

Target = tuple[str, str]

# A migration test's marks: on each backend, in transactions it can migrate inside, and the
# database back at the latest migrations afterwards (the migrations_back_to_latest fixture in
# tests/conftest.py), whatever the test did, for the next test.
MIGRATION_TEST_MARKS = [
    pytest.mark.db_backend,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("migrations_back_to_latest"),
]


def _executor() -> MigrationExecutor:
    return MigrationExecutor(connection)


def migration_named(suffix: str, *, app: str = "trading") -> Target:
    """``app``'s one migration whose name ends with ``suffix``."""
    names = [key for key in _executor().loader.graph.nodes if key[0] == app and key[1].endswith(suffix)]
    assert len(names) == 1, names
    return names[0]


def migration_before(suffix: str, *, app: str = "trading") -> Target:
    """The ``app`` migration that the one named by ``suffix`` follows."""
    parents = [
        parent.key
        for parent in _executor().loader.graph.node_map[migration_named(suffix, app=app)].parents
        if parent.key[0] == app
    ]
    assert len(parents) == 1, parents
    return parents[0]


def migrate(targets: Sequence[Target]) -> None:
    _executor().migrate(list(targets))


def migrate_to_latest() -> None:
    executor = _executor()
    executor.migrate(list(executor.loader.graph.leaf_nodes()))


def models_at(target: Target) -> Apps:
    return _executor().loader.project_state([target]).apps
