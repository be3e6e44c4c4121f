"""Model fields of the market-data tables.

``EpochMicrosecondsField``: an instant stored as whole microseconds since the Unix epoch (UTC) in
a 64-bit integer, read and written as an aware datetime. The tick and minute-bar tables hold tens
of millions of rows and each timestamp appears in the row and in an index: SQLite stores a
``DateTimeField`` as 19 to 26 characters of text against 8 bytes here (docs/architecture.md,
Storage). Lookups take datetimes as every ``DateTimeField`` does (``recorded_at__lt=moment``);
database functions that expect a date type (``Trunc``, ``Extract``) do not apply: compute on the
integer instead.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.expressions import Combinable
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)


def micros_from_datetime(value: dt.datetime) -> int:
    """Whole microseconds since the epoch; a naive datetime is read in the default time zone."""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, timezone.get_default_timezone())
    return (value - EPOCH) // MICROSECOND


def datetime_from_micros(value: int) -> dt.datetime:
    """The aware UTC datetime of whole microseconds since the epoch (exact, no float on the way)."""
    return EPOCH + dt.timedelta(microseconds=value)


class EpochMicrosecondsField(models.BigIntegerField):
    description = "Instant (microseconds since the Unix epoch)"
    # What django-stubs' plugin types model attributes by: a datetime, as a DateTimeField's.
    _pyi_private_set_type: str | dt.datetime | Combinable  # type: ignore[assignment]
    _pyi_private_get_type: dt.datetime  # type: ignore[assignment]
    _pyi_lookup_exact_type: str | dt.datetime  # type: ignore[assignment]

    @cached_property
    def validators(self) -> list[Any]:
        # The integer range validators of BigIntegerField would compare a datetime with an int.
        return [*self.default_validators, *self._validators]  # type: ignore[attr-defined]

    def get_prep_value(self, value: Any) -> int | None:
        value = models.Field.get_prep_value(self, value)
        if value is None:
            return None
        if isinstance(value, dt.datetime):
            return micros_from_datetime(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError(f"{self.name} takes a datetime, not {type(value).__name__}")

    def from_db_value(
        self, value: int | None, expression: Any, connection: BaseDatabaseWrapper
    ) -> dt.datetime | None:
        return None if value is None else datetime_from_micros(int(value))

    def to_python(self, value: Any) -> dt.datetime | None:
        if value is None or isinstance(value, dt.datetime):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime_from_micros(value)
        if isinstance(value, str):
            parsed = parse_datetime(value.strip())
            if parsed is not None:
                return parsed
        raise ValidationError(f"“{value}” is not a date and time.", code="invalid")

    def value_to_string(self, obj: models.Model) -> str:
        value: Any = self.value_from_object(obj)
        return "" if value is None else value.isoformat()

    def formfield(self, **kwargs: Any) -> Any:
        return models.Field.formfield(self, **{"form_class": forms.DateTimeField, **kwargs})
