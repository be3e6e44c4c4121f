"""Querysets compiled once: the polled reads' ORM queries without compiling them per request.

Django compiles a queryset to SQL every time it runs. For the reads a bot polls that cost more
than the database's answer: listing three open orders spent most of its time in the compiler
(``_order_by_pairs`` hashing each of ~90 selected columns; cProfile in docs/architecture.md, The
polled reads), and every request loading its account paid the same for a one-row read.

A ``PreparedQuery`` builds its queryset with sentinel parameter values, compiles it once per
thread and shape, and finds where each sentinel's database value sits in the compiled
parameters. A run executes that SQL with its own values in those places and builds the instances
as Django's ``ModelIterable`` does (the model, its ``select_related`` objects, annotations), from
the compiler's own select list, converters and related populators. A framework bypass
(docs/architecture.md, Framework bypasses): it relies on ``SQLCompiler.as_sql``, ``select``,
``klass_info``, ``annotation_col_map``, ``get_converters``/``apply_converters`` and
``get_related_populators``; a shape it cannot prepare (a sentinel not found, prefetches,
another iterable class) raises at its first run, and ``tests/trading/test_prepared.py`` compares
every prepared read with the ORM's own.

On PostgreSQL the reads run through ``read_rows``: the project backend's ``prepared_rows``
(config/postgresql/base.py, also a framework bypass), which binds the parameters on the server,
prepares each statement once per connection and keeps its cursor between statements. Django's own cursor quotes the values into a new text
each run, and the server parsed and planned the polled read's statement (a dozen joins and
subqueries) every time: planning alone cost it three times the execution (EXPLAIN: 0.64 vs 0.21
ms for ``GET /v2/account``'s). ``tests/trading/test_server_prepared.py`` checks that each prepared
read answers what Django's cursor answers and survives a reconnect, a rollback and atomic blocks.

Writes the same way: a ``PreparedStatement`` is an UPDATE (or a locking read) Django's compiler
wrote once with sentinel values, a ``PreparedInsert`` a model's INSERT of n rows Django's insert
compiler wrote once, each run with its values in their places, adapted by the fields as the ORM
adapts them (``get_db_prep_value`` / ``get_db_prep_save``). Order placement writes its fill with
them (``trading.services._execute_fill``): building and compiling its five writes through the
ORM cost more CPU than everything else the order does. They rely on ``UpdateQuery``
(``add_update_values``, ``related_updates``), ``InsertQuery.insert_values`` and
``SQLInsertCompiler.as_sql``/``returning_fields``; ``tests/trading/test_prepared.py`` compares
what each writes with what the ORM's own write leaves.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import secrets
import threading
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import (
    CharField,
    DateTimeField,
    Field,
    IntegerField,
    Model,
    QuerySet,
    UUIDField,
)
from django.db.models.query import ModelIterable, ValuesListIterable, get_related_populators
from django.db.models.sql import InsertQuery, UpdateQuery

M = TypeVar("M", bound=Model)


class NotPreparable(Exception):
    """The queryset's shape is one this module does not reproduce."""


@dataclass(frozen=True)
class _Statement:
    """A statement compiled once: its SQL, the sentinels' parameters and where each value goes."""

    db: str
    sql: str
    params: tuple[Any, ...]
    slots: dict[str, list[int]]
    # The parameters' names when ``sql`` is in pyformat style (SQLite: ``named_placeholders``).
    names: tuple[str, ...] | None


@dataclass(frozen=True)
class _CompiledRows(_Statement):
    """A read's statement, with its columns' converters."""

    compiler: Any
    converters: dict[int, Any]


@dataclass(frozen=True)
class _Compiled(_CompiledRows):
    """A model read's statement, with what turns its rows into model instances."""

    model: type[Model]
    fields_start: int
    fields_end: int
    init_list: list[str]
    populators: list[Any]
    annotations: dict[str, int]


def _sentinel(field: Field[Any, Any]) -> Any:
    if isinstance(field, UUIDField):
        return uuid.uuid4()
    if isinstance(field, IntegerField):
        return secrets.randbits(60) | (1 << 59)
    if isinstance(field, CharField):
        # No value a caller passes looks like it: a symbol or a name never holds a NUL.
        return f"\x00{secrets.token_hex(8)}"
    if isinstance(field, DateTimeField):
        return dt.datetime(2999, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=secrets.randbits(40))
    raise NotPreparable(f"no sentinel for a {type(field).__name__}")


# Django's own pattern for a "format" placeholder (django.db.backends.sqlite3.base).
_FORMAT_PLACEHOLDER = re.compile(r"(?<!%)%s")
# What `%` formatting reads in a named statement: an escaped percent, a name, or a lone `%`.
_PERCENT_TOKEN = re.compile(r"%%|%\(p[0-9]+\)s|%")


def named_placeholders(sql: str, *, vendor: str, count: int | None) -> tuple[str, tuple[str, ...] | None]:
    """On SQLite, ``sql`` with its ``count`` (if given) ``%s`` placeholders named (``%(p0)s``...), and
    their names: a statement run again and again then takes its parameters as a mapping.

    Django's SQLite cursor rewrites every statement given a sequence of parameters into qmark
    style with a regular expression, ~18 us for a 1.5 KB SELECT (the account's row with its game)
    on every run; given a mapping it rewrites a pyformat statement with ``%`` formatting instead
    (``SQLiteCursorWrapper.convert_query``), ~1 us, to the same statement. Other backends take
    the statement as it is (None)."""
    if vendor != "sqlite":
        return sql, None
    names: list[str] = []

    def name(_: re.Match[str]) -> str:
        names.append(f"p{len(names)}")
        return f"%({names[-1]})s"

    named = _FORMAT_PLACEHOLDER.sub(name, sql)
    if count is not None and len(names) != count:
        raise NotPreparable(f"{len(names)} placeholders for {count} parameters")
    # A lone `%` (hand-written `LIKE 'a%'`), which Django's sequence path leaves alone, would
    # fail `%` formatting, on SQLite only: refused here, where the statement is built, instead.
    if any(token.group() == "%" for token in _PERCENT_TOKEN.finditer(named)):
        raise NotPreparable(f"a lone % in {sql!r}: write it %%")
    return named, tuple(names)


def bound(names: tuple[str, ...] | None, params: Sequence[Any]) -> Sequence[Any] | dict[str, Any]:
    """``params`` as a statement from ``named_placeholders`` takes them."""
    return params if names is None else dict(zip(names, params, strict=True))


def _slots(
    fields: Mapping[str, Field[Any, Any]],
    sentinels: Mapping[str, Any],
    params: Sequence[Any],
    connection: Any,
) -> dict[str, list[int]]:
    """Where each sentinel's database value sits in the compiled ``params``."""
    slots: dict[str, list[int]] = {}
    for name, field in fields.items():
        value = field.get_db_prep_value(sentinels[name], connection, prepared=False)
        slots[name] = [index for index, param in enumerate(params) if param == value]
        if not slots[name]:
            raise NotPreparable(f"parameter {name!r} is not among the compiled parameters")
    return slots


def _param_values(
    compiled: _Statement, fields: Mapping[str, Field[Any, Any]], values: Mapping[str, Any], connection: Any
) -> list[Any]:
    """The compiled parameters with ``values`` in their sentinels' places, adapted by their
    fields as the ORM adapts them."""
    params = list(compiled.params)
    for name, slots in compiled.slots.items():
        value = fields[name].get_db_prep_value(values[name], connection, prepared=False)
        for slot in slots:
            params[slot] = value
    return params


def _run_params(
    compiled: _Statement, fields: Mapping[str, Field[Any, Any]], values: Mapping[str, Any], connection: Any
) -> Sequence[Any] | dict[str, Any]:
    """``_param_values`` in the form the statement takes (``bound``)."""
    return bound(compiled.names, _param_values(compiled, fields, values, connection))


# A name ``named_placeholders`` gave a placeholder.
_NAMED_PLACEHOLDER = re.compile(r"%\(p[0-9]+\)s")


def _format_sql(compiled: _Statement) -> str:
    """The statement with ``%s`` placeholders again (as Django's compiler wrote it), to be
    embedded in another statement that names its own."""
    return compiled.sql if compiled.names is None else _unnamed(compiled.sql)


@functools.lru_cache(maxsize=128)
def _unnamed(sql: str) -> str:
    # Cached: a poll asks for its text on every request, and the substitution is a regular
    # expression over it (~2 KB).
    return _NAMED_PLACEHOLDER.sub("%s", sql)


@dataclass(frozen=True)
class JoinedPart:
    """A read to run in the same statement as a ``PreparedQuery``'s one row
    (``PreparedQuery.run_joined``): its SQL (``%s`` placeholders) and database parameter values,
    its columns' count and converters (Django's, by column), the ordering of its rows (column
    index, descending), and ``key``, which names its SQL text, its width and its ordering (equal
    keys, equal joined texts) so the joined statement is written once per thread and key. Its first column is never NULL: a row
    whose first column is NULL is the account's alone (the read found no row)."""

    key: Hashable
    sql: str
    params: Sequence[Any]
    width: int
    order: tuple[tuple[int, bool], ...]
    converters: Mapping[int, Any]


@dataclass(frozen=True)
class _Joined:
    sql: str
    names: tuple[str, ...] | None


def read_cursor(connection: Any) -> Any:
    """A cursor for a read whose SQL text is written once and run again and again: on PostgreSQL
    (``config.postgresql``) one that binds and prepares its statements on the server
    (``prepared_cursor``: planning a polled read's one statement cost the server three times its
    execution, every run), elsewhere ``cursor()``. Duck-typed: SQLite's connection has no
    ``prepared_cursor``."""
    prepared_cursor = getattr(connection, "prepared_cursor", None)
    return connection.cursor() if prepared_cursor is None else prepared_cursor()


def read_rows(connection: Any, sql: str, params: Any) -> list[Any]:
    """The rows of a read whose SQL text is written once and run again and again (``read_cursor``'s
    statement and ``fetchall``): on PostgreSQL the project backend's ``prepared_rows``, which also
    keeps its cursor between statements (config/postgresql/base.py), elsewhere a cursor of its own."""
    prepared_rows = getattr(connection, "prepared_rows", None)
    if prepared_rows is not None:
        return cast(list[Any], prepared_rows(sql, params))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cast(list[Any], cursor.fetchall())


# Shapes kept per thread and query. A shape is chosen by the caller from a few known values,
# but a bound keeps a caller that lets a request pick one (a limit, say) from growing each
# thread's compilers without end: past it the oldest shape is compiled again when next asked.
SHAPES_KEPT = 32

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _kept(kept: dict[K, V], key: K, build: Callable[[], V]) -> V:
    """``kept[key]``, built on this thread's first ask; past SHAPES_KEPT entries the oldest
    (first inserted) is dropped first (``SHAPES_KEPT``)."""
    found = kept.get(key)
    if found is None:
        if len(kept) >= SHAPES_KEPT:
            del kept[next(iter(kept))]
        found = kept[key] = build()
    return found


C = TypeVar("C", bound=_CompiledRows)


class _PreparedRead(Generic[C]):
    """``build(**shape, **params)`` compiled once per thread and ``shape`` (the newest
    SHAPES_KEPT kept); ``params`` name the field each parameter is a value of (its database form
    is that field's). A subclass compiles (``_compile``) and shapes the rows (``run``)."""

    def __init__(self, build: Callable[..., QuerySet[Any]], **params: Field[Any, Any]) -> None:
        self._build = build
        self._params = params
        self._local = threading.local()

    def _compile(self, shape: Mapping[str, Hashable]) -> C:
        raise NotImplementedError

    def _queryset(self, shape: Mapping[str, Hashable]) -> tuple[QuerySet[Any], dict[str, Any]]:
        """``build`` of ``shape`` with a sentinel for each parameter, and the sentinels."""
        sentinels = {name: _sentinel(field) for name, field in self._params.items()}
        return self._build(**shape, **sentinels), sentinels

    def _statement(self, queryset: QuerySet[Any], sentinels: Mapping[str, Any]) -> _CompiledRows:
        """``queryset``'s statement as a subclass checked it may be prepared: its SQL, where each
        parameter goes, and its select's converters."""
        db = queryset.db
        connection = connections[db]
        compiler = queryset.query.get_compiler(using=db)
        sql, params = compiler.as_sql()
        named_sql, names = named_placeholders(sql, vendor=connection.vendor, count=len(params))
        return _CompiledRows(
            db=db,
            sql=named_sql,
            params=tuple(params),
            slots=_slots(self._params, sentinels, params, connection),
            names=names,
            compiler=compiler,
            converters=compiler.get_converters(
                [column[0] for column in compiler.select[0 : compiler.col_count]]
            ),
        )

    def _compiled(self, shape: Mapping[str, Hashable]) -> C:
        """The statement of ``shape``, compiled on this thread's first ask."""
        compiled_by_shape: dict[Any, C] = self._local.__dict__.setdefault("compiled", {})
        return _kept(compiled_by_shape, tuple(sorted(shape.items())), lambda: self._compile(shape))

    def _rows(self, shape: Mapping[str, Hashable], values: Mapping[str, Any]) -> tuple[C, list[Any]]:
        """The statement of ``shape``, and its rows for ``values``, each column converted."""
        compiled = self._compiled(shape)
        # The connection this thread holds now, not the one the query was compiled on: the same
        # object under Django's per-thread connections, and never another context's if not.
        connection = connections[compiled.db]
        rows = read_rows(connection, compiled.sql, _run_params(compiled, self._params, values, connection))
        if compiled.converters:
            rows = list(compiled.compiler.apply_converters(rows, compiled.converters))
        return compiled, rows


class PreparedQuery(_PreparedRead[_Compiled], Generic[M]):
    """A model queryset (``build(**shape, **params)``) compiled once per thread and ``shape``,
    answering model instances as ``ModelIterable`` builds them."""

    def __init__(self, build: Callable[..., QuerySet[M]], **params: Field[Any, Any]) -> None:
        super().__init__(build, **params)  # typed here, so that ``M`` is the built model

    def run(self, *, shape: Mapping[str, Hashable] | None = None, **values: Any) -> list[M]:
        shape = shape or {}
        if not settings.PREPARED_QUERIES:
            # The ORM's own path, compiled per call: `benchmark api --cpu`'s baseline.
            return list(self._build(**shape, **values))
        compiled, rows = self._rows(shape, values)
        return [self._instance(compiled, row) for row in rows]

    @staticmethod
    def _instance(compiled: _Compiled, row: Sequence[Any]) -> M:
        """A row's model instance (its ``select_related`` objects, annotations) as ModelIterable
        builds it."""
        instance = compiled.model.from_db(
            compiled.db, compiled.init_list, row[compiled.fields_start : compiled.fields_end]
        )
        for populator in compiled.populators:
            populator.populate(row, instance)
        for name, position in compiled.annotations.items():
            setattr(instance, name, row[position])
        return instance  # type: ignore[return-value]

    def run_joined(
        self, *, part: JoinedPart, shape: Mapping[str, Hashable] | None = None, **values: Any
    ) -> tuple[M, list[tuple[Any, ...]]] | None:
        """The query's first row as ``run`` builds it, and ``part``'s rows (each a tuple of its
        columns, converted), in one statement: ``SELECT * FROM (<this>) h LEFT JOIN (<part>) r
        ON TRUE`` ordered by the part's ordering. None when the query finds no row (the part is
        then not read). For a query of one row (a pk's): the part's rows repeat its columns.

        One statement instead of two: a bot's polled read is its account's row and the read,
        and on PostgreSQL each statement's round trip and parse cost as much as either read
        (docs/architecture.md, The polled reads)."""
        shape = shape or {}
        head = self._compiled(shape)
        joined_by_key: dict[Any, _Joined] = self._local.__dict__.setdefault("joined", {})
        joined = _kept(
            joined_by_key, (tuple(sorted(shape.items())), part.key), lambda: self._join(head, part)
        )
        connection = connections[head.db]
        params = [*_param_values(head, self._params, values, connection), *part.params]
        rows = read_rows(connection, joined.sql, bound(joined.names, params))
        if not rows:
            return None
        width = head.compiler.col_count
        if len(rows[0]) != width + part.width:
            raise NotPreparable(f"{len(rows[0])} columns joined, not {width} + {part.width}")
        # The head's columns converted once (every row repeats them), the part's on each row.
        first = (
            next(iter(head.compiler.apply_converters(rows[:1], head.converters)))
            if head.converters
            else rows[0]
        )
        instance = self._instance(head, first)
        found = [row[width:] for row in rows if row[width] is not None]
        if part.converters and found:
            found = list(head.compiler.apply_converters(found, part.converters))
        return instance, [tuple(row) for row in found]

    def _join(self, head: _Compiled, part: JoinedPart) -> _Joined:
        width = head.compiler.col_count
        order = ", ".join(
            f"{width + index + 1}{' DESC' if descending else ''}" for index, descending in part.order
        )
        sql = f"SELECT * FROM ({_format_sql(head)}) h LEFT JOIN ({part.sql}) r ON 1 = 1" + (
            f" ORDER BY {order}" if order else ""
        )
        vendor = connections[head.db].vendor
        named_sql, names = named_placeholders(sql, vendor=vendor, count=len(head.params) + len(part.params))
        return _Joined(sql=named_sql, names=names)

    def _compile(self, shape: Mapping[str, Hashable]) -> _Compiled:
        queryset, sentinels = self._queryset(shape)
        if (
            queryset._iterable_class is not ModelIterable
            or bool(getattr(queryset, "_prefetch_related_lookups", None))
            or bool(getattr(queryset, "_known_related_objects", None))
        ):
            raise NotPreparable("only plain model querysets (select_related allowed) are prepared")
        statement = self._statement(queryset, sentinels)
        compiler = statement.compiler
        select, klass_info = compiler.select, compiler.klass_info
        fields_start, fields_end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Compiled(
            **vars(statement),
            model=klass_info["model"],
            fields_start=fields_start,
            fields_end=fields_end,
            init_list=[column[0].target.attname for column in select[fields_start:fields_end]],
            # Django 5.2's signature; the stubs describe a later one.
            populators=get_related_populators(klass_info, select, statement.db),  # type: ignore[call-arg]
            annotations=dict(compiler.annotation_col_map or {}),
        )


class PreparedRows(_PreparedRead[_CompiledRows]):
    """A ``values_list`` queryset (``build(**shape, **params)``) compiled once per thread and
    ``shape`` as ``PreparedQuery`` compiles a model queryset, answering plain tuples of its
    columns as ``ValuesListIterable`` does (each column through its field's converters), with no
    model instance built: the polled reads shape their answers from these rows."""

    def run(self, *, shape: Mapping[str, Hashable] | None = None, **values: Any) -> list[tuple[Any, ...]]:
        shape = shape or {}
        if not settings.PREPARED_QUERIES:
            # The ORM's own path, compiled per call: `benchmark api --cpu`'s baseline.
            return list(self._build(**shape, **values))
        return [tuple(row) for row in self._rows(shape, values)[1]]

    def part(
        self,
        *,
        order: tuple[tuple[int, bool], ...],
        shape: Mapping[str, Hashable] | None = None,
        **values: Any,
    ) -> JoinedPart:
        """The read of ``shape`` with ``values``, to run joined onto a ``PreparedQuery``'s row
        (``run_joined``): the rows it answers are the ones ``run`` answers, if ``order`` (column
        index, descending) is its queryset's ordering."""
        shape = shape or {}
        compiled = self._compiled(shape)
        width = compiled.compiler.col_count
        return JoinedPart(
            # Everything the joined text is written from: two parts of one shape with different
            # orders (or widths) never share a statement.
            key=(id(self), tuple(sorted(shape.items())), order, width),
            sql=_format_sql(compiled),
            params=_param_values(compiled, self._params, values, connections[compiled.db]),
            width=width,
            order=order,
            converters=compiled.converters,
        )

    def _compile(self, shape: Mapping[str, Hashable]) -> _CompiledRows:
        queryset, sentinels = self._queryset(shape)
        query = queryset.query
        if (
            queryset._iterable_class is not ValuesListIterable
            or bool(getattr(queryset, "_prefetch_related_lookups", None))
            or query.annotation_select
            or query.extra_select
        ):
            # A flat or named list, or annotations (which ValuesListIterable reorders), are not
            # reproduced: the answer's columns must be the compiled select's, in its order.
            raise NotPreparable("only values_list querysets of plain fields are prepared as rows")
        statement = self._statement(queryset, sentinels)
        if statement.compiler.col_count != len(cast(Any, queryset)._fields):
            raise NotPreparable("the compiled select is not the listed fields")
        return statement


def update_sql(queryset: QuerySet[Any], values: Mapping[str, Any]) -> tuple[str, Sequence[Any]]:
    """``queryset.update(**values)``'s SQL and parameters, as ``QuerySet.update`` compiles them."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(dict(values))
    query.annotations = {}
    if query.related_updates:  # type: ignore[attr-defined]  # set in UpdateQuery._setup_query
        raise NotPreparable("an update of a parent model's fields is not prepared")
    sql, params = query.get_compiler(using=queryset.db).as_sql()
    return sql, params


def select_sql(queryset: QuerySet[Any]) -> tuple[str, Sequence[Any]]:
    """The queryset's SELECT and parameters."""
    sql, params = queryset.query.get_compiler(using=queryset.db).as_sql()
    return sql, params


class PreparedStatement:
    """An UPDATE, or a read whose rows the caller ignores (a lock), compiled once per database:
    ``build(**params)`` returns the queryset and, for an UPDATE, its values (``queryset.update``'s
    keywords; None for a read). Each run puts its values in the sentinels' places; ``params``
    name the field each value is a value of (its database form is that field's). The SQL holds no
    state of a connection or a thread, so one copy serves every thread."""

    def __init__(
        self,
        build: Callable[..., tuple[QuerySet[Any], Mapping[str, Any] | None]],
        **params: Field[Any, Any],
    ) -> None:
        self._build = build
        self._params = params
        self._compiled: dict[str, _Statement] = {}

    def _statement(self, db: str) -> _Statement:
        compiled = self._compiled.get(db)
        if compiled is None:
            connection = connections[db]
            sentinels = {name: _sentinel(field) for name, field in self._params.items()}
            queryset, values = self._build(**sentinels)
            if queryset.db != db:
                raise NotPreparable(f"the statement runs on {queryset.db}, not {db}")
            sql, params = select_sql(queryset) if values is None else update_sql(queryset, values)
            slots = _slots(self._params, sentinels, params, connection)
            named_sql, names = named_placeholders(sql, vendor=connection.vendor, count=len(params))
            compiled = self._compiled[db] = _Statement(db, named_sql, tuple(params), slots, names)
        return compiled

    def run(self, *, using: str = DEFAULT_DB_ALIAS, **values: Any) -> int:
        """Executes the statement; the rows it changed or read (as ``QuerySet.update`` counts)."""
        if not settings.PREPARED_QUERIES:
            # The ORM's own path, compiled per call: the benchmarks' baseline.
            queryset, update = self._build(**values)
            return queryset.update(**update) if update is not None else len(list(queryset))
        compiled = self._statement(using)
        connection = connections[using]
        params = _run_params(compiled, self._params, values, connection)
        # As the ORM's writes: a failure inside an atomic block marks it for rollback.
        with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            return int(cursor.rowcount)


class PreparedInsert(Generic[M]):
    """``model``'s INSERT of n rows as its insert compiler writes it (every local concrete column
    but an auto-incremented key, no RETURNING), compiled once per database and n. A row is its
    values in ``fields`` order; ``instance_values`` gives a model instance's, as ``save()`` takes
    them (each field's ``pre_save``)."""

    def __init__(self, model: type[M], *, using: str = DEFAULT_DB_ALIAS) -> None:
        self.model = model
        self._using = using
        self.fields: list[Field[Any, Any]] = [
            field
            for field in model._meta.local_concrete_fields
            if not field.generated and field is not model._meta.auto_field
        ]
        self._sql: dict[int, tuple[str, bool]] = {}

    def instance_values(self, instance: M) -> list[Any]:
        return [field.pre_save(instance, True) for field in self.fields]

    def row(self, **values: Any) -> list[Any]:
        """A row from every field's value by attribute name (``account_id``, not ``account``)."""
        if len(values) != len(self.fields):
            raise TypeError(f"{self.model.__name__}'s row needs exactly {[f.attname for f in self.fields]}")
        return [values[field.attname] for field in self.fields]

    def _compile(self, rows: int) -> tuple[str, bool]:
        """The SQL for ``rows`` rows, and whether its parameters are one array per column
        (PostgreSQL's ``UNNEST`` form of a multi-row INSERT) rather than one value per cell."""
        connection = connections[self._using]
        query = InsertQuery(self.model)
        query.insert_values(self.fields, [self.model() for _ in range(rows)])
        statements = query.get_compiler(using=self._using).as_sql()
        if len(statements) == 1:
            sql, params = statements[0]
            if len(params) == rows * len(self.fields):
                return sql, False
            if rows > 1 and len(params) == len(self.fields) and all(len(column) == rows for column in params):
                return sql, True
        raise NotPreparable(f"{rows} rows of {self.model.__name__} are not one INSERT on {connection.vendor}")

    def run(self, rows: Sequence[Sequence[Any]]) -> None:
        if not settings.PREPARED_QUERIES:
            # The ORM's own path, compiled per call: the benchmarks' baseline.
            instances = [
                self.model(**{field.attname: value for field, value in zip(self.fields, row, strict=True)})
                for row in rows
            ]
            if len(instances) == 1:
                instances[0].save(force_insert=True, using=self._using)
            else:
                self.model._base_manager.using(self._using).bulk_create(instances)
            return
        compiled = self._sql.get(len(rows))
        if compiled is None:
            compiled = self._sql[len(rows)] = self._compile(len(rows))
        sql, by_column = compiled
        connection = connections[self._using]
        params: list[Any] = [
            field.get_db_prep_save(value, connection)
            for row in rows
            for field, value in zip(self.fields, row, strict=True)
        ]
        if by_column:
            width = len(self.fields)
            params = [params[column::width] for column in range(width)]
        with transaction.mark_for_rollback_on_error(using=self._using), connection.cursor() as cursor:
            cursor.execute(sql, params)

    def save(self, instance: M) -> None:
        """``instance.save(force_insert=True)`` for a model no signal receiver listens to."""
        if not settings.PREPARED_QUERIES:
            instance.save(force_insert=True, using=self._using)
            return
        self.run([self.instance_values(instance)])
        instance._state.adding = False
        instance._state.db = self._using
