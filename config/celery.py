"""The Celery app; tasks live in jobs/ and the beat schedule in jobs/schedule.py.

The app reads the Django settings (``CELERY_*``) and then takes jobs' beat schedule, so the
settings import no app code. config/__init__.py loads this module with the package.
"""

import os
from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init, worker_process_shutdown

from config.metrics import metrics_process_dead, process_identity_set

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
app = Celery("simulator")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["jobs"])


@app.on_after_configure.connect
def _beat_schedule(sender: Celery, source: Any, **kwargs: Any) -> None:
    # Once the settings are read: importing jobs while config is loaded would load app code with
    # the settings.
    from jobs.schedule import BEAT_SCHEDULE

    source.beat_schedule = BEAT_SCHEDULE


# Metrics (config/metrics.py): each pool child is a worker slot; a child that exits has its live
# gauges dropped, as gunicorn's child_exit does for a web worker (config/gunicorn_conf.py).
@worker_init.connect
def _worker_main_identity(**kwargs: Any) -> None:
    process_identity_set(role="worker", slot="main")


@worker_process_init.connect
def _worker_child_identity(**kwargs: Any) -> None:
    from billiard.process import current_process  # type: ignore[import-untyped]

    process_identity_set(role="worker", slot=getattr(current_process(), "index", 0))


@worker_process_shutdown.connect
def _worker_child_dead(pid: int | None = None, **kwargs: Any) -> None:
    metrics_process_dead(pid or os.getpid())


@beat_init.connect
def _beat_identity(**kwargs: Any) -> None:
    process_identity_set(role="beat")
