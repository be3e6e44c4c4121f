"""A throwaway database for benchmarks, so seeding a million rows never touches real data.

The default connection is pointed at a separate database for the duration (the way Django's test
runner switches to the test database), so the real selectors and services run unchanged against
it: a file beside the real one on SQLite, ``<name>_benchmark`` on PostgreSQL. It is migrated
first (or copied from the one ``template_database`` migrated, for ``benchmark all``; or from one
``template_migrate`` migrated while ``template_used`` names it: the test suite migrates one per
test process for all its benchmark tests) and deleted afterwards unless ``keep``.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connection, connections


def database_arguments_add(parser: argparse.ArgumentParser) -> None:
    """The throwaway-database options of a benchmark that seeds one (``throwaway_database``)."""
    parser.add_argument(
        "--db-name", default=None, help="throwaway database (file on SQLite, name on PostgreSQL)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the throwaway database afterwards")


def default_name() -> str:
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor == "sqlite":
        return str(Path(settings.VAR_DIR) / "benchmark.sqlite3")
    return f"{connection.settings_dict['NAME']}_benchmark"


# vendor -> the migrated database every throwaway one copies while ``template_database`` is open.
_templates: dict[str, str] = {}


def _remove_sqlite(name: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{name}{suffix}").unlink(missing_ok=True)


def _drop_postgresql(name: str) -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {connection.ops.quote_name(name)}")


def _delete(vendor: str, name: str) -> None:
    if vendor == "sqlite":
        _remove_sqlite(name)
    else:
        _drop_postgresql(name)


def _create(vendor: str, name: str, *, template: str | None) -> None:
    """``name`` anew (what an earlier run left of it deleted): empty, or a copy of ``template``."""
    _delete(vendor, name)
    if vendor == "sqlite":
        if template is not None:
            # The backup API copies a consistent database whatever its journal (WAL) holds.
            with (
                contextlib.closing(sqlite3.connect(template)) as source,
                contextlib.closing(sqlite3.connect(name)) as copy,
            ):
                source.backup(copy)
        return  # an empty SQLite database is created by its first connection
    connection = connections[DEFAULT_DB_ALIAS]
    quote = connection.ops.quote_name
    copied = f" TEMPLATE {quote(template)}" if template is not None else ""
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {quote(name)}{copied}")


def _refuse(vendor: str, target: str, original: str) -> None:
    """The real database and the template are never a benchmark's throwaway database."""
    if vendor not in ("sqlite", "postgresql"):
        raise CommandError(f"benchmarks support SQLite and PostgreSQL, not {vendor}")
    for name, what in ((original, "the real database"), (_templates.get(vendor), "the template database")):
        if name is None:
            continue
        same = Path(target).resolve() == Path(name).resolve() if vendor == "sqlite" else target == name
        if same:
            raise CommandError(f"refusing to use {what} {name} for a benchmark")


@contextlib.contextmanager
def _switched(target: str) -> Iterator[None]:
    """The default connection on ``target`` meanwhile (closed on the way in and out)."""
    connection = connections[DEFAULT_DB_ALIAS]
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = target
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


@contextlib.contextmanager
def throwaway_database(
    *, name: str | None = None, keep: bool = False, log: Callable[[str], None] = print
) -> Iterator[str]:
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block:
        raise CommandError("benchmarks switch databases, so they cannot run inside a transaction")
    vendor = connection.vendor
    target = name or default_name()
    _refuse(vendor, target, str(connection.settings_dict["NAME"]))
    template = _templates.get(vendor)
    _create(vendor, target, template=template)
    try:
        with _switched(target):
            if template is None:
                log(f"throwaway {vendor} database {target}: migrating")
                call_command("migrate", verbosity=0, interactive=False)
            else:
                log(f"throwaway {vendor} database {target}: a copy of the migrated {template}")
            yield target
    finally:
        if keep:
            log(f"kept the benchmark database {target}")
        else:
            _delete(vendor, target)


@contextlib.contextmanager
def template_database(*, name: str | None = None, log: Callable[[str], None] = print) -> Iterator[None]:
    """One database migrated here, once, that every ``throwaway_database`` opened meanwhile copies
    instead of migrating its own: ``benchmark all`` runs each benchmark on a fresh database but
    migrates only once (a file copy on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL,
    instead of every migration again). It is named after ``name`` (the throwaway database's) and
    deleted afterwards; inside another one, the outer one serves."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block:
        raise CommandError("benchmarks switch databases, so they cannot run inside a transaction")
    if connection.vendor in _templates:
        yield
        return
    template = template_migrate(name=name, log=log)
    try:
        with template_used(template):
            yield
    finally:
        template_delete(template)


def template_migrate(*, name: str | None = None, log: Callable[[str], None] = print) -> str:
    """A migrated database named after ``name`` (the throwaway databases'), for ``template_used``;
    its name. The caller deletes it (``template_delete``); ``template_database`` does both."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.in_atomic_block:
        raise CommandError("benchmarks switch databases, so they cannot run inside a transaction")
    vendor = connection.vendor
    base = name or default_name()
    template = f"{base}-template" if vendor == "sqlite" else f"{base}_template"
    _refuse(vendor, template, str(connection.settings_dict["NAME"]))
    _create(vendor, template, template=None)
    try:
        with _switched(template):
            log(f"template {vendor} database {template}: migrating (each benchmark's database is a copy)")
            call_command("migrate", verbosity=0, interactive=False)
    except BaseException:
        _delete(vendor, template)
        raise
    return template


def template_delete(template: str) -> None:
    _delete(connections[DEFAULT_DB_ALIAS].vendor, template)


@contextlib.contextmanager
def template_used(template: str) -> Iterator[None]:
    """Every ``throwaway_database`` opened meanwhile is a copy of ``template`` (``template_migrate``'s),
    unless an outer template is in use already."""
    vendor = connections[DEFAULT_DB_ALIAS].vendor
    if vendor in _templates:
        yield
        return
    _templates[vendor] = template
    try:
        yield
    finally:
        _templates.pop(vendor, None)


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
