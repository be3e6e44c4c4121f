"""Benchmark fixtures: a clean cache (both layers) around every test, since a benchmark's reads
run in the test process against a throwaway database; and one migrated template database per
test process that the benchmark tests' throwaway databases copy."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection
from pytest_django import DjangoDbBlocker

from benchmarks import _database


@pytest.fixture(autouse=True)
def _clean_cache(clean_cache: None) -> None:
    """The process's cache manager must not carry the throwaway database's rows into other tests."""


@pytest.fixture(scope="session")
def _benchmark_template_name(django_db_setup: None, django_db_blocker: DjangoDbBlocker) -> Iterator[str]:
    # Named after this process's test database (each xdist worker has its own), so parallel
    # workers and test runs never share one, and unlike the templates the tests of
    # benchmarks/_database.py make and delete (<test database>_benchmark_template). Set up before
    # any test's transaction opens (a session fixture comes before a test's function-scoped ones).
    with django_db_blocker.unblock():
        template = _database.template_migrate(
            name=f"{connection.settings_dict['NAME']}_suite", log=lambda _: None
        )
    try:
        yield template
    finally:
        with django_db_blocker.unblock():
            _database.template_delete(template)


@pytest.fixture
def benchmark_template(_benchmark_template_name: str) -> Iterator[None]:
    """The test's benchmark runs on a copy of one database this test process migrated once, as
    ``benchmark all`` does (benchmarks/_database.py), instead of migrating a throwaway database
    of its own: seconds per benchmark test on PostgreSQL, where a pass runs several on one worker
    (the "load" group). Not for the tests of ``benchmark all`` and of the template itself, which
    check the migrating."""
    with _database.template_used(_benchmark_template_name):
        yield
