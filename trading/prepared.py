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
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import connections
from django.db.models import CharField, Field, IntegerField, Model, QuerySet, UUIDField
from django.db.models.query import ModelIterable, get_related_populators

M = TypeVar("M", bound=Model)


class NotPreparable(Exception):
    """The queryset's shape is one this module does not reproduce."""


@dataclass(frozen=True)
class _Compiled:
    db: str
    sql: str
    params: tuple[Any, ...]
    slots: dict[str, list[int]]
    compiler: Any
    converters: dict[int, Any]
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
    raise NotPreparable(f"no sentinel for a {type(field).__name__}")


# Shapes kept per thread and query. A shape is chosen by the caller from a few known values,
# but a bound keeps a caller that lets a request pick one (a limit, say) from growing each
# thread's compilers without end: past it the oldest shape is compiled again when next asked.
SHAPES_KEPT = 32


class PreparedQuery(Generic[M]):
    """``build(**shape, **params)`` compiled once per thread and ``shape`` (the newest
    SHAPES_KEPT kept); ``params`` name the field each parameter is a value of (its database form
    is that field's)."""

    def __init__(self, build: Callable[..., QuerySet[M]], **params: Field[Any, Any]) -> None:
        self._build = build
        self._params = params
        self._local = threading.local()

    def run(self, *, shape: Mapping[str, Hashable] | None = None, **values: Any) -> list[M]:
        shape = shape or {}
        if not settings.PREPARED_QUERIES:
            # The ORM's own path, compiled per call: `benchmark api --cpu`'s baseline.
            return list(self._build(**shape, **values))
        key = tuple(sorted(shape.items()))
        compiled_by_shape: dict[Any, _Compiled] = self._local.__dict__.setdefault("compiled", {})
        compiled = compiled_by_shape.get(key)
        if compiled is None:
            if len(compiled_by_shape) >= SHAPES_KEPT:
                del compiled_by_shape[next(iter(compiled_by_shape))]
            compiled = compiled_by_shape[key] = self._compile(shape)
        # The connection this thread holds now, not the one the query was compiled on: the same
        # object under Django's per-thread connections, and never another context's if not.
        connection = connections[compiled.db]
        params = list(compiled.params)
        for name, slots in compiled.slots.items():
            value = self._params[name].get_db_prep_value(values[name], connection, prepared=False)
            for slot in slots:
                params[slot] = value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        if compiled.converters:
            rows = list(compiled.compiler.apply_converters(rows, compiled.converters))
        db = compiled.db
        model, start, end, init_list = (
            compiled.model,
            compiled.fields_start,
            compiled.fields_end,
            compiled.init_list,
        )
        found: list[M] = []
        for row in rows:
            instance = model.from_db(db, init_list, row[start:end])
            for populator in compiled.populators:
                populator.populate(row, instance)
            for name, position in compiled.annotations.items():
                setattr(instance, name, row[position])
            found.append(instance)  # type: ignore[arg-type]
        return found

    def _compile(self, shape: Mapping[str, Hashable]) -> _Compiled:
        sentinels = {name: _sentinel(field) for name, field in self._params.items()}
        queryset = self._build(**shape, **sentinels)
        if (
            queryset._iterable_class is not ModelIterable
            or bool(getattr(queryset, "_prefetch_related_lookups", None))
            or bool(getattr(queryset, "_known_related_objects", None))
        ):
            raise NotPreparable("only plain model querysets (select_related allowed) are prepared")
        db = queryset.db
        connection = connections[db]
        compiler = queryset.query.get_compiler(using=db)
        sql, params = compiler.as_sql()
        slots: dict[str, list[int]] = {}
        for name, field in self._params.items():
            value = field.get_db_prep_value(sentinels[name], connection, prepared=False)
            slots[name] = [index for index, param in enumerate(params) if param == value]
            if not slots[name]:
                raise NotPreparable(f"parameter {name!r} is not among the compiled parameters")
        select, klass_info = compiler.select, compiler.klass_info
        fields_start, fields_end = klass_info["select_fields"][0], klass_info["select_fields"][-1] + 1
        return _Compiled(
            db=db,
            sql=sql,
            params=tuple(params),
            slots=slots,
            compiler=compiler,
            converters=compiler.get_converters([column[0] for column in select[0 : compiler.col_count]]),
            model=klass_info["model"],
            fields_start=fields_start,
            fields_end=fields_end,
            init_list=[column[0].target.attname for column in select[fields_start:fields_end]],
            # Django 5.2's signature; the stubs describe a later one.
            populators=get_related_populators(klass_info, select, db),  # type: ignore[call-arg]
            annotations=dict(compiler.annotation_col_map or {}),
        )
