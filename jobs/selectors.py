"""Reads for jobs: job runs as their owner sees them."""

from __future__ import annotations

import uuid

from jobs.models import JobRun
from trading.errors import NotFound


def _as_uuid(value: uuid.UUID | str, *, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found") from None


def job_run_get(*, job_id: uuid.UUID | str, account_id: uuid.UUID | None, staff: bool = False) -> JobRun:
    """A run its account (or staff) may see; anyone else's is as unknown as a missing one."""
    runs = JobRun.objects.filter(pk=_as_uuid(job_id, what="job"))
    if not staff:
        runs = runs.filter(account_id=account_id) if account_id is not None else runs.none()
    job = runs.first()
    if job is None:
        raise NotFound("job not found")
    return job
