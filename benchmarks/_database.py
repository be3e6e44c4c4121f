"""A throwaway database for benchmarks, so seeding a million rows never touches real data.

The default connection is pointed at a separate database for the duration (the way Django's test
runner switches to the test database), so the real selectors and services run unchanged against
it: a file beside the real one on SQLite, ``<name>_benchmark`` on PostgreSQL. It is migrated
first and deleted afterwards unless ``keep``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections


def default_name() -> str:
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "sqlite":
        return str(Path(settings.VAR_DIR) / "benchmark.sqlite3")
    return f"{connection.settings_dict['NAME']}_benchmark"


def _remove_sqlite(name: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


def _drop_postgresql(name: str) -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")


@contextlib.contextmanager
def throwaway_database(
    *, name: str | None = None, keep: bool = False, log: Callable[[str], None] = print
) -> Iterator[str]:
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block:
        raise CommandError("benchmarks switch databases, so they cannot run inside a transaction")
    vendor = connection.vendor
    original = connection.settings_dict["NAME"]
    target = name or default_name()
    if vendor == "sqlite":
        if Path(target).resolve() == Path(str(original)).resolve():
            raise CommandError(f"refusing to use the real database {original} for a benchmark")
        _remove_sqlite(target)
    elif vendor == "postgresql":
        if target == original:
            raise CommandError(f"refusing to use the real database {original} for a benchmark")
        _drop_postgresql(target)
        with connection._nodb_cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {connection.ops.quote_name(target)}")
    else:
        raise CommandError(f"benchmarks support SQLite and PostgreSQL, not {vendor}")

    connection.close()
    connection.settings_dict["NAME"] = target
    try:
        log(f"throwaway {vendor} database {target}: migrating")
        call_command("migrate", verbosity=0, interactive=False)
        yield target
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original
        if keep:
            log(f"kept the benchmark database {target}")
        elif vendor == "sqlite":
            _remove_sqlite(target)
        else:
            _drop_postgresql(target)


def database_url() -> str:
    """A DATABASE_URL naming the database this process uses now, for the servers a benchmark starts."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(params['NAME']).resolve()}"
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    return (
        f"postgres://{params.get('USER') or 'postgres'}{password}@{params.get('HOST') or '127.0.0.1'}:"
        f"{params.get('PORT') or 5432}/{params['NAME']}"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
