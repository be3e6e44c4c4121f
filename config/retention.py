"""The registry of retention rules: which rows are deleted once older than what.

Each app registers its own tables from its ``AppConfig.ready`` (``retention_register``); the hourly
cleanup job (jobs/retention.py) runs every registered rule. The registry sits here, with the
infrastructure every app may use, so registering needs no import of the app that runs it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Q


@dataclass(frozen=True)
class RetentionRule:
    label: str
    model: str  # "app_label.ModelName", resolved late so apps can register before loading
    time_field: str
    # None keeps rows for ever (daily bars); read at run time so settings overrides apply.
    retention: Callable[[], dt.timedelta | None]
    # Rows never deleted whatever their age (a job run still queued or running).
    keep: Q | None = None
    # Delete partition by partition (each value of this field in turn) along an index that
    # starts with (partition_field, time_field), so the table needs no index on time alone.
    partition_field: str | None = None
    # Each partition's newest row (by time_field) stays whatever its age: a symbol's last tick is
    # its price while the market is closed or stopped, and the published quotes copy it.
    keep_newest: bool = False

    def model_class(self) -> type[models.Model]:
        return apps.get_model(self.model)


RETENTION_RULES: dict[str, RetentionRule] = {}


def retention_register(
    *,
    label: str,
    model: str,
    time_field: str,
    retention: Callable[[], dt.timedelta | None],
    keep: Q | None = None,
    partition_field: str | None = None,
    keep_newest: bool = False,
) -> None:
    if keep_newest and partition_field is None:
        raise ValueError(f"retention rule {label!r}: keep_newest needs a partition_field")
    RETENTION_RULES[label] = RetentionRule(
        label=label,
        model=model,
        time_field=time_field,
        retention=retention,
        keep=keep,
        partition_field=partition_field,
        keep_newest=keep_newest,
    )


def retention_hours(setting: str) -> Callable[[], dt.timedelta]:
    """A retention of ``settings.<setting>`` hours, read when the cleanup runs."""
    return lambda: dt.timedelta(hours=getattr(settings, setting))


def retention_days(setting: str) -> Callable[[], dt.timedelta]:
    """A retention of ``settings.<setting>`` days, read when the cleanup runs."""
    return lambda: dt.timedelta(days=getattr(settings, setting))
