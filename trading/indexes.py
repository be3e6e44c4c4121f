"""Make the live database carry every index and unique constraint the models declare.

Migrations create indexes with a plain ``CREATE INDEX``, which on PostgreSQL blocks writes to the
table for the whole build: on a tick table with millions of rows that stops the market. This
module finds what is missing and builds it without blocking writes (PostgreSQL-specific SQL, kept
here on purpose):

- indexes: ``CREATE INDEX CONCURRENTLY``;
- unique constraints: ``CREATE UNIQUE INDEX CONCURRENTLY``, then ``ALTER TABLE ... ADD CONSTRAINT
  ... UNIQUE USING INDEX`` (a catalogue change, no table scan);
- a failed or interrupted concurrent build leaves an INVALID index behind (``pg_index.indisvalid``
  false) that the planner ignores but every write still maintains: it is dropped concurrently and
  built again.

SQLite has no concurrent build: the index is built with a plain ``CREATE INDEX`` while writers
wait, and a unique constraint becomes a unique index (SQLite cannot add a constraint to an existing
table without rebuilding it). Other backends get Django's ordinary DDL.

Only what ``Meta.indexes`` and ``Meta.constraints`` (UniqueConstraint) name is checked; indexes
implied by ``db_index=True`` or ``unique=True`` are left to migrations.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

Kind = Literal["index", "unique"]
Live = Mapping[str, Mapping[str, object]]  # introspection's get_constraints()
Status = Literal["ok", "created", "rebuilt invalid", "attached", "missing", "invalid", "skipped", "failed"]


@dataclass(frozen=True)
class Declared:
    model: type[models.Model]
    name: str
    kind: Kind
    definition: models.Index | models.UniqueConstraint

    @property
    def table(self) -> str:
        return self.model._meta.db_table


@dataclass(frozen=True)
class Outcome:
    name: str
    table: str
    status: Status
    seconds: float = 0.0
    note: str = ""

    def line(self) -> str:
        if self.status == "created":
            return f"created {self.name} ({self.seconds:.2f}s)"
        if self.status == "rebuilt invalid":
            return f"rebuilt invalid {self.name} ({self.seconds:.2f}s)"
        if self.status == "attached":
            return f"attached {self.name} (unique index became the constraint)"
        if self.status == "missing":
            return f"missing {self.name} ({self.note or 'would create'})"
        if self.status == "invalid":
            return f"invalid {self.name} (would rebuild)"
        if self.status == "failed":
            return f"failed {self.name}: {self.note}"
        if self.status == "skipped":
            return f"skipped {self.name}: {self.note}"
        return f"ok {self.name}"


def declared(app_labels: Iterable[str] = ("trading",)) -> list[Declared]:
    """Every named index and unique constraint the apps' concrete, managed models declare."""
    result = []
    for label in app_labels:
        for model in apps.get_app_config(label).get_models():
            meta = model._meta
            if meta.abstract or meta.proxy or not meta.managed:
                continue
            for index in meta.indexes:
                if index.name:
                    result.append(Declared(model=model, name=index.name, kind="index", definition=index))
            for constraint in meta.constraints:
                if isinstance(constraint, models.UniqueConstraint):
                    result.append(
                        Declared(model=model, name=constraint.name, kind="unique", definition=constraint)
                    )
    return result


def invalid_index_names(connection: BaseDatabaseWrapper, table: str) -> set[str]:
    """Indexes PostgreSQL marks INVALID (a failed concurrent build); other backends have none."""
    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT index_class.relname
            FROM pg_index
            JOIN pg_class AS index_class ON index_class.oid = pg_index.indexrelid
            JOIN pg_class AS table_class ON table_class.oid = pg_index.indrelid
            WHERE NOT pg_index.indisvalid
              AND table_class.relname = %s
              AND pg_catalog.pg_table_is_visible(table_class.oid)
            """,
            [table],
        )
        return {row[0] for row in cursor.fetchall()}


class IndexEnsurer:
    """Compare declared indexes with the live schema and build what is missing or invalid."""

    def __init__(
        self,
        *,
        using: str = DEFAULT_DB_ALIAS,
        app_labels: Iterable[str] = ("trading",),
        dry_run: bool = False,
        report: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.connection = connections[using]
        self.app_labels = tuple(app_labels)
        self.dry_run = dry_run
        self.report = report or (lambda outcome: None)

    @property
    def concurrent(self) -> bool:
        return self.connection.vendor == "postgresql"

    def run(self) -> list[Outcome]:
        outcomes = []
        tables = set(self.connection.introspection.table_names())
        by_table: dict[str, list[Declared]] = {}
        for item in declared(self.app_labels):
            by_table.setdefault(item.table, []).append(item)
        for table, items in by_table.items():
            if table not in tables:
                for item in items:
                    outcomes.append(
                        self._emit(Outcome(item.name, table, "skipped", note="table missing (migrate)"))
                    )
                continue
            live = self._constraints(table)
            invalid = invalid_index_names(self.connection, table)
            for item in items:
                try:
                    outcome = self._ensure(item, live, invalid)
                except DatabaseError as error:
                    # E.g. duplicates stop a unique build. PostgreSQL leaves an INVALID index behind,
                    # which the next run drops and builds again once the data allows it.
                    outcome = Outcome(item.name, table, "failed", note=str(error).strip().splitlines()[0])
                outcomes.append(self._emit(outcome))
        return outcomes

    def _emit(self, outcome: Outcome) -> Outcome:
        self.report(outcome)
        return outcome

    def _constraints(self, table: str) -> Live:
        with self.connection.cursor() as cursor:
            return self.connection.introspection.get_constraints(cursor, table)

    def _ensure(self, item: Declared, live: Live, invalid: set[str]) -> Outcome:
        if (
            not self.dry_run
            and self.connection.in_atomic_block
            and (item.name in invalid or item.name not in live)
        ):
            # PostgreSQL refuses CREATE INDEX CONCURRENTLY in a transaction block, and SQLite's schema
            # editor must switch foreign-key checks off, which it cannot do inside a transaction.
            raise RuntimeError(f"{item.name} needs building, which cannot be done inside a transaction")
        if item.name in invalid:
            if self.dry_run:
                return Outcome(item.name, item.table, "invalid")
            started = time.monotonic()
            self._drop_invalid(item, live)
            self._create(item)
            return Outcome(item.name, item.table, "rebuilt invalid", time.monotonic() - started)
        found = live.get(item.name)
        if found is None:
            if self.dry_run:
                return Outcome(item.name, item.table, "missing")
            started = time.monotonic()
            self._create(item)
            return Outcome(item.name, item.table, "created", time.monotonic() - started)
        if self._needs_attach(item, found):
            # A unique index built concurrently whose ADD CONSTRAINT step did not run.
            if self.dry_run:
                return Outcome(item.name, item.table, "missing", note="unique index present, would attach")
            self._attach_constraint(item)
            return Outcome(item.name, item.table, "attached")
        return Outcome(item.name, item.table, "ok")

    # --- DDL -------------------------------------------------------------------------------------

    def _quote(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    def _columns(self, item: Declared) -> str:
        columns = []
        for name in getattr(item.definition, "fields", ()):
            field = item.model._meta.get_field(name)
            assert isinstance(field, models.Field) and field.column
            columns.append(self._quote(field.column))
        return ", ".join(columns)

    def _simple_unique(self, item: Declared) -> bool:
        """Unique over plain columns: one that PostgreSQL can turn into a table constraint."""
        constraint = item.definition
        return (
            isinstance(constraint, models.UniqueConstraint)
            and bool(constraint.fields)
            and constraint.condition is None
            and not constraint.contains_expressions
            and not getattr(constraint, "include", None)
            and not getattr(constraint, "opclasses", None)
            and constraint.deferrable is None
            and getattr(constraint, "nulls_distinct", None) is None
        )

    def _needs_attach(self, item: Declared, found: Mapping[str, object]) -> bool:
        # PostgreSQL introspection reports constraints with index=False and bare indexes with True.
        return (
            self.concurrent
            and item.kind == "unique"
            and self._simple_unique(item)
            and bool(found.get("index"))
        )

    def _create(self, item: Declared) -> None:
        model = item.model
        with self.connection.schema_editor(atomic=False) as editor:
            if item.kind == "index":
                assert isinstance(item.definition, models.Index)
                if self.concurrent:
                    # PostgreSQL's schema editor takes ``concurrently``; the base class does not.
                    editor_any: Any = editor
                    editor_any.add_index(model, item.definition, concurrently=True)
                else:
                    editor.add_index(model, item.definition)
                return
            assert isinstance(item.definition, models.UniqueConstraint)
            if self.concurrent and self._simple_unique(item):
                table, name = self._quote(item.table), self._quote(item.name)
                editor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {name} ON {table} ({self._columns(item)})")
                editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")
            elif self.connection.vendor == "sqlite" and self._simple_unique(item):
                # Django would rebuild the whole table to add a constraint; a unique index enforces
                # the same rule and is built in place.
                editor.execute(
                    f"CREATE UNIQUE INDEX {self._quote(item.name)} ON {self._quote(item.table)} ({self._columns(item)})"
                )
            else:
                editor.add_constraint(model, item.definition)

    def _attach_constraint(self, item: Declared) -> None:
        table, name = self._quote(item.table), self._quote(item.name)
        with self.connection.schema_editor(atomic=False) as editor:
            editor.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}")

    def _drop_invalid(self, item: Declared, live: Live) -> None:
        name = self._quote(item.name)
        with self.connection.schema_editor(atomic=False) as editor:
            found = live.get(item.name)
            if found is not None and not found.get("index"):
                # The invalid index backs a constraint: dropping the constraint drops the index.
                editor.execute(f"ALTER TABLE {self._quote(item.table)} DROP CONSTRAINT {name}")
            else:
                editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def ensure_indexes(
    *,
    using: str = DEFAULT_DB_ALIAS,
    app_labels: Iterable[str] = ("trading",),
    dry_run: bool = False,
    report: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    return IndexEnsurer(using=using, app_labels=app_labels, dry_run=dry_run, report=report).run()
