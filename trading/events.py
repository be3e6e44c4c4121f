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
from typing import TYPE_CHECKING, Any

import redis
from django.conf import settings
from django.db import transaction

from config.redis_pools import redis_client

if TYPE_CHECKING:
    from trading.models import Order

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderState:
    """What of an order changes over its life, as it was at one event.

    ``trade_updates`` shows the order as it was when the event happened (a ``new`` event shows a
    new order even when the fill committed in the same transaction and the row is filled by the
    time the event is sent), and POST /v2/orders answers the order as accepted: both are the
    order's row with these fields laid over it (trading.api.serializers.OrderSerializer.shape).
    """

    status: str
    filled_qty: int
    filled_avg_price_units: int | None
    updated_at: dt.datetime
    filled_at: dt.datetime | None = None
    canceled_at: dt.datetime | None = None
    expired_at: dt.datetime | None = None
    replaced_at: dt.datetime | None = None
    replaced_by: str | None = None
    high_water_mark_units: int | None = None

    _TIMES = ("updated_at", "filled_at", "canceled_at", "expired_at", "replaced_at")

    @classmethod
    def of(cls, order: Order, *, replaced_by: str | None = None) -> OrderState:
        """The state of ``order`` as the caller's transaction has it now."""
        return cls(
            status=str(order.status),
            filled_qty=order.filled_qty,
            filled_avg_price_units=order.filled_avg_price_units,
            updated_at=order.updated_at,
            filled_at=order.filled_at,
            canceled_at=order.canceled_at,
            expired_at=order.expired_at,
            replaced_at=order.replaced_at,
            replaced_by=replaced_by,
            high_water_mark_units=order.high_water_mark_units,
        )

    def as_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = dict(self.__dict__)
        for name in self._TIMES:
            if payload[name] is not None:
                payload[name] = payload[name].isoformat()
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OrderState:
        values = dict(payload)
        for name in cls._TIMES:
            if values.get(name) is not None:
                values[name] = dt.datetime.fromisoformat(values[name])
        return cls(**values)


@dataclass(frozen=True)
class OrderEvent:
    event: str  # new, fill, canceled, expired, rejected, replaced
    account_id: str
    order_id: str
    symbol: str
    at: dt.datetime
    price_units: int | None = None
    # Quantity units (1/10^9 share, trading/units.py), as everywhere in storage.
    qty: int | None = None
    position_qty: int | None = None
    order_state: OrderState | None = None
    execution_id: str | None = None  # the Fill's id, on fill events

    def as_json(self) -> str:
        payload: dict[str, Any] = dict(self.__dict__)
        payload["at"] = self.at.isoformat()
        payload["order_state"] = self.order_state.as_payload() if self.order_state else None
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


def stream_session_account_credential(session_key: str) -> str:
    """The sockets of one session that carry its selected account's data (trade updates, the
    dashboard channel): switching the session's account closes them, and they reconnect on the
    new one. Market data is the same for every account, so it stays open."""
    return "session-account:" + hashlib.sha256(session_key.encode()).hexdigest()[:32]


def stream_credentials_revoke_on_commit(*credentials: str) -> None:
    """Close the open stream sockets holding any of ``credentials`` once the transaction commits,
    on every web process."""
    transaction.on_commit(lambda: _publish_revocation(credentials))


def _publish_revocation(credentials: tuple[str, ...]) -> None:
    try:
        redis_client().publish(settings.STREAM_REVOCATIONS_CHANNEL, json.dumps({"revoke": list(credentials)}))
    except redis.RedisError:
        logger.warning("stream revocation of %s not published: Redis unavailable", ", ".join(credentials))
