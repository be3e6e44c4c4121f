"""Celery entry points: thin wrappers that call one service each."""

from __future__ import annotations

from celery import shared_task

from trading import services


@shared_task(name="jobs.orders_expire", acks_late=True, ignore_result=True)
def orders_expire_task() -> int:
    """Expire day orders whose trading day has ended (idempotent: a status-conditional update)."""
    return services.orders_expire()
