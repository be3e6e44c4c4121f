"""Retention cleanup: delete rows older than their retention, keep the rest, in bounded batches.

The rules come from the registry in config/retention.py, where each app registers its own tables.
Each batch is one short transaction deleting at most RETENTION_BATCH_SIZE rows up to a
primary-key bound, so the tick writer and the API never wait long behind cleanup, and SQLite's
single write lock is released between batches.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from config.retention import RETENTION_RULES, RetentionRule
from trading import calendar


def retention_cleanup_rule(
    *,
    rule: RetentionRule,
    now: dt.datetime,
    batch_size: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> int:
    """Delete one rule's expired rows; returns how many. Rows exactly at the cutoff stay."""
    retention = rule.retention()
    if retention is None:
        return 0
    model = rule.model_class()
    cutoff: dt.datetime | dt.date = now - retention
    field = model._meta.get_field(rule.time_field)
    if isinstance(field, models.DateField) and not isinstance(field, models.DateTimeField):
        # A date column holds trading days: age counts from today's trading day, not from the
        # UTC date, which is already tomorrow's on a New York evening.
        cutoff = calendar.trading_day_of(now) - retention
    batch_size = batch_size or settings.RETENTION_BATCH_SIZE
    expired = model._default_manager.filter(**{f"{rule.time_field}__lt": cutoff})
    if rule.keep is not None:
        expired = expired.exclude(rule.keep)
    if rule.partition_field is not None:
        return _cleanup_by_partition(rule=rule, expired=expired, batch_size=batch_size, progress=progress)
    deleted = 0
    while True:
        # The batch's highest key bounds the DELETE: a range the database walks by index, not a
        # list of thousands of literals, and never more than batch_size rows per transaction.
        bound = expired.order_by("pk").values_list("pk", flat=True)[batch_size - 1 : batch_size].first()
        with transaction.atomic():
            batch = expired if bound is None else expired.filter(pk__lte=bound)
            count, _ = batch.delete()
        deleted += count
        if progress is not None and count:
            progress(rule.label, deleted)
        if bound is None:
            return deleted


def _cleanup_by_partition(
    *,
    rule: RetentionRule,
    expired: models.QuerySet[Any],
    batch_size: int,
    progress: Callable[[str, int], None] | None,
) -> int:
    """Each partition's expired rows, oldest first, along the (partition, time) index.

    The partitions are walked by one index seek each (the next value above the last), never a
    scan of the table. Within one, each batch is bounded by its last row's (time, pk): a range of
    the index to delete, with a plain upper bound on time for the seek, never more than
    ``batch_size`` rows.
    """
    assert rule.partition_field is not None
    model = expired.model
    partition, time_field = rule.partition_field, rule.time_field
    values = model._default_manager.order_by(partition).values_list(partition, flat=True)
    deleted = 0
    current = values.first()
    while current is not None:
        oldest = expired.filter(**{partition: current})
        if rule.keep_newest:
            # One seek down the (partition, time) index; rows sharing the newest time all stay.
            newest = (
                model._default_manager.filter(**{partition: current})
                .order_by(f"-{time_field}")
                .values_list(time_field, flat=True)
                .first()
            )
            oldest = oldest.filter(**{f"{time_field}__lt": newest})
        while True:
            bound = (
                oldest.order_by(time_field, "pk")
                .values_list(time_field, "pk")[batch_size - 1 : batch_size]
                .first()
            )
            batch = oldest
            if bound is not None:
                at, pk = bound
                batch = oldest.filter(
                    Q(**{f"{time_field}__lte": at})
                    & (Q(**{f"{time_field}__lt": at}) | Q(**{time_field: at, "pk__lte": pk}))
                )
            with transaction.atomic():
                count, _ = batch.delete()
            deleted += count
            if progress is not None and count:
                progress(rule.label, deleted)
            if bound is None:
                break
        current = values.filter(**{f"{partition}__gt": current}).first()
    return deleted


def retention_cleanup(
    *,
    now: dt.datetime,
    batch_size: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> dict[str, int]:
    """Every registered rule, in registration order: {label: rows deleted}."""
    return {
        label: retention_cleanup_rule(rule=rule, now=now, batch_size=batch_size, progress=progress)
        for label, rule in RETENTION_RULES.items()
    }
