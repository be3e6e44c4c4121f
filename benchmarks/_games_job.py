"""The leaderboard job as ``benchmark games`` runs it: ``jobs.leaderboard_refresh`` on the beat's
schedule (jobs/schedule.py), in a process of its own, as the Celery worker would run it, without the
broker between (a run that takes longer than the period delays the next, as ``expires`` would drop
it). Each run prints one line, ``JOB_RUN {"seconds": ...}``, which the benchmark reads back.

Run as ``python -m benchmarks._games_job`` with the benchmark's environment (its database, Redis
prefix); stopped by SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from types import FrameType


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from jobs.schedule import BEAT_SCHEDULE
    from jobs.tasks import leaderboard_refresh_task

    period = float(BEAT_SCHEDULE["leaderboard-refresh"]["schedule"])
    stopping = [False]

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop)
    next_run = time.monotonic()
    while not stopping[0]:
        started = time.perf_counter()
        leaderboard_refresh_task()
        print("JOB_RUN " + json.dumps({"seconds": time.perf_counter() - started}), flush=True)
        next_run = max(next_run + period, time.monotonic())
        while not stopping[0] and time.monotonic() < next_run:
            time.sleep(min(0.2, next_run - time.monotonic()))
    sys.exit(0)


if __name__ == "__main__":
    main()
