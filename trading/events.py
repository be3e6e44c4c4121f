"""The one place the trading core announces changes, always after the transaction commits.

Order events go to a Redis pub/sub channel: the market process keeps its trigger levels current
from them and the stream consumers turn them into ``trade_updates``. Revoked stream credentials
(a key revoked, a user deactivated, a password changed, a logout) go to another, on which every
web process closes the sockets that hold them. A Redis outage must not undo a committed change,
so publishing failures are logged, never raised.
"""

from __future__ import annotations

import datetime as dt
import hashlib
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


# --- Stream credentials ------------------------------------------------------------------------
# An open WebSocket stays authenticated by what it showed at its start (an API key, or a session
# cookie), so revoking that credential must reach the process holding the socket. Every web
# process listens on STREAM_REVOCATIONS_CHANNEL (realtime/fanout.py) and closes the sockets that
# hold any name in a message. A socket holds the names below for its credentials: a key's, or a
# session's (its own, and its user's sessions as a whole), and its user's either way.


def stream_key_credential(key_id: str) -> str:
    return f"key:{key_id}"


def stream_user_credential(user_id: int) -> str:
    """Every socket of the user, whatever it authenticated with (deactivation, deletion)."""
    return f"user:{user_id}"


def stream_sessions_credential(user_id: int) -> str:
    """Every socket the user authenticated with a session (a password change or reset)."""
    return f"sessions:{user_id}"


def stream_session_credential(session_key: str) -> str:
    """The sockets of one session (its logout); a digest, so the session key never travels."""
    return "session:" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def stream_credentials_revoke_on_commit(*credentials: str) -> None:
    """Close the open stream sockets holding any of ``credentials`` once the transaction commits,
    on every web process."""
    transaction.on_commit(lambda: _publish_revocation(credentials))


def _publish_revocation(credentials: tuple[str, ...]) -> None:
    try:
        redis_client().publish(settings.STREAM_REVOCATIONS_CHANNEL, json.dumps({"revoke": list(credentials)}))
    except redis.RedisError:
        logger.warning("stream revocation of %s not published: Redis unavailable", ", ".join(credentials))
