"""Configuration: the shared infrastructure at the bottom (settings, Redis pools, the embedded Redis,
the cache layers, the retention registry, client addresses) and the wiring at the top (urls,
asgi, wsgi, the Celery app).

The Celery app is loaded with this package, as Celery's Django integration expects: every process
that loads the settings then has it as ``celery.current_app`` (in every thread), which is how jobs
send tasks without importing the wiring.
"""

# First: it names the metrics directory before prometheus_client is imported (config/metrics.py).
import config.metrics  # noqa: F401, I001

from config.celery import app as celery_app

__all__ = ("celery_app",)
