"""Job runs (failures with their error and attempts) and the outbox, for operators."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from jobs import services
from jobs.models import JobRun, JobStatus, OutboxEntry


@admin.register(JobRun)
class JobRunAdmin(admin.ModelAdmin):
    list_display = ["name", "slot", "status", "attempts", "short_error", "created_at", "finished_at"]
    list_filter = ["status", "name"]
    search_fields = ["slot", "=id"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in JobRun._meta.fields]
    actions = ["retry_runs"]

    @admin.display(description="error")
    def short_error(self, run: JobRun) -> str:
        return run.error[:120]

    @admin.action(description="Retry the selected failed runs")
    def retry_runs(self, request: HttpRequest, queryset: QuerySet[JobRun]) -> None:
        retried = 0
        for run in queryset.filter(status=JobStatus.FAILED):
            if services.job_run_requeue(job_id=run.pk):
                services.job_enqueue(task_name=services.JOB_EXECUTE_TASK, args=[str(run.pk)])
                retried += 1
        self.message_user(request, f"{retried} run(s) queued again.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin):
    list_display = ["id", "task_name", "attempts", "last_error", "created_at"]
    readonly_fields = ["task_name", "args", "kwargs", "attempts", "last_error", "created_at"]
    actions = ["drain"]

    @admin.action(description="Publish the outbox now")
    def drain(self, request: HttpRequest, queryset: QuerySet[OutboxEntry]) -> None:
        sent = services.outbox_drain()
        self.message_user(request, f"{sent} message(s) published.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
