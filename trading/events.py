"""The one place the trading core announces changes, always after the transaction commits.

Order events go to a Redis pub/sub channel: the market process keeps its trigger levels current
from them and the stream consumers turn them into ``trade_updates``. A Redis outage must not
undo a committed trade, so publishing failures are logged, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from config.redis_pools import redis_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderEvent:
    event: str  # new, fill, canceled, expired, rejected, replaced
    account_id: str
    order_id: str
    symbol: str
    at: dt.datetime
    price_units: int | None = None
    qty: int | None = None
    position_qty: int | None = None

    def as_json(self) -> str:
        payload: dict[str, Any] = dict(self.__dict__)
        payload["at"] = self.at.isoformat()
        return json.dumps(payload)


def order_event_publish_on_commit(event: OrderEvent) -> None:
    transaction.on_commit(lambda: _publish(event))


def _publish(event: OrderEvent) -> None:
    try:
        redis_client().publish(settings.ORDER_EVENTS_CHANNEL, event.as_json())
    except redis.RedisError:
        logger.warning("order event %s for %s not published: Redis unavailable", event.event, event.order_id)
