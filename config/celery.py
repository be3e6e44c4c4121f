"""The Celery app; tasks live in jobs/ and the beat schedule in jobs/schedule.py.

The app reads the Django settings (``CELERY_*``) and then takes jobs' beat schedule, so the
settings import no app code. config/__init__.py loads this module with the package.
"""

import os
from typing import Any

from celery import Celery

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
