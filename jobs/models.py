"""Job runs (exactly-once claims) and the outbox of messages the broker refused.

Exactly-once comes from the database, not the broker: a job run is unique per (name, slot), and
each effect has its own domain uniqueness (one statement per account and period, analytics'
Statement), so duplicate deliveries, two beat processes and redeliveries after a crash converge
on one row.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from trading.models import Account


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED)


class JobRun(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=64)
    # What makes two runs "the same job": a period for an account's statement, a time bucket
    # for a beat job. A second request for a slot finds the first run instead of a new one.
    slot = models.CharField(max_length=128)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    # Who may see the run through the API; beat jobs belong to nobody.
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.CASCADE, related_name="job_runs"
    )
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    # Set at each claim: only the holder of the current claim may mark the run finished.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "slot"], name="job_run_name_slot_unique")]
        indexes = [
            models.Index(fields=["account", "created_at"], name="job_run_account_idx"),
            # Retention deletes finished runs by age.
            models.Index(fields=["created_at"], name="job_run_created_idx"),
            models.Index(fields=["status", "lease_expires_at"], name="job_run_status_lease_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name}[{self.slot}] {self.status}"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


class OutboxEntry(models.Model):
    """A task message to publish once the broker answers again (written when it did not)."""

    task_name = models.CharField(max_length=128)
    args = models.JSONField(default=list, blank=True)
    kwargs = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "outbox entries"
        constraints = [models.CheckConstraint(condition=~Q(task_name=""), name="outbox_task_named")]

    def __str__(self) -> str:
        return f"{self.task_name} #{self.pk}"
