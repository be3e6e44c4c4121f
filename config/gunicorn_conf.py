"""gunicorn's configuration (the Procfile's web line: ``-c python:config.gunicorn_conf``).

Importing the ``config`` package names the metrics directory before gunicorn loads the app
(config/metrics.py). Each worker takes a slot, the lowest index no live sibling holds, so its
per-process series keep their labels across restarts; when a worker exits its live gauges are
dropped (``child_exit``), or they would count a dead process.
"""

from __future__ import annotations

from typing import Any

from config.metrics import metrics_process_dead, process_identity_set


def pre_fork(server: Any, worker: Any) -> None:
    # In the arbiter: WORKERS holds the live workers, each with the slot it was given.
    taken = {getattr(sibling, "metrics_slot", None) for sibling in server.WORKERS.values()}
    worker.metrics_slot = next(slot for slot in range(len(taken) + 1) if slot not in taken)


def post_fork(server: Any, worker: Any) -> None:
    process_identity_set(role="web", slot=worker.metrics_slot)


def child_exit(server: Any, worker: Any) -> None:
    metrics_process_dead(worker.pid)
