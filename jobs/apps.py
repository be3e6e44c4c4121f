from django.apps import AppConfig
from django.db.models import Q

from config.retention import retention_days, retention_register


class JobsConfig(AppConfig):
    name = "jobs"

    def ready(self) -> None:
        from jobs.metrics import jobs_metrics_install

        jobs_metrics_install()
        # Finished runs only: a queued or running one is still someone's exactly-once claim.
        retention_register(
            label="job runs",
            model="jobs.JobRun",
            time_field="created_at",
            retention=retention_days("JOB_RUN_RETENTION_DAYS"),
            keep=Q(status__in=("queued", "running")),
        )
