"""The one place analytics announces a changed leaderboard, always after the transaction commits.

Web processes relay the board to their dashboard sockets (realtime/fanout.py); analytics knows
only the Redis channel, never the consumers. The message names the stored snapshot, so every
process sends the board that changed, read once per process, not once per socket. A Redis outage
must not undo a stored leaderboard, so publishing failures are logged, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction

from config.redis_pools import redis_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaderboardChanged:
    period: str
    snapshot_id: int
    as_of: dt.datetime

    def as_json(self) -> str:
        return json.dumps(
            {"period": self.period, "snapshot_id": self.snapshot_id, "as_of": self.as_of.isoformat()}
        )


def leaderboard_changed_publish_on_commit(event: LeaderboardChanged) -> None:
    transaction.on_commit(lambda: _publish(event))


def _publish(event: LeaderboardChanged) -> None:
    try:
        redis_client().publish(settings.LEADERBOARD_EVENTS_CHANNEL, event.as_json())
    except redis.RedisError:
        logger.warning(
            "leaderboard change of snapshot %d not published: Redis unavailable", event.snapshot_id
        )
