"""The beat schedule, in one place. Each entry says when it runs and why."""

from __future__ import annotations

from typing import Any

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # Every 30 s: day orders must end at the trading-day boundary; running often keeps an order
    # from outliving its day by more than half a minute, and a run with nothing due is one query.
    "orders-expire": {"task": "jobs.orders_expire", "schedule": 30.0},
}
