"""WebSocket consumers: Alpaca's market-data stream, its trade_updates stream and the dashboard's.

The consumers speak the protocols (realtime/streams.py) and register with the process's fan-out
(realtime/fanout.py); they never subscribe to Redis themselves, so a connection costs no Redis
connection and no channel-layer channel (``channel_layer_alias`` names no layer on purpose).

Authentication: bots send their API key and secret, checked exactly as the REST API checks them
(trading/api/authentication.py); the dashboard's browser authenticates with its Django session,
by sending ``{"action":"auth"}`` (market data) or ``{"action":"authenticate"}`` (trade_updates)
without credentials. Failed key auths are counted in Redis per existing key (STREAM_AUTH_FAILURES_MAX
within STREAM_AUTH_FAILURES_WINDOW_S) and per client address (AUTH_FAILURES_PER_ADDRESS_MAX,
realtime/limits.py; the address as config/client_address.py sees it); past either the answer is
402 without a lookup and the socket is closed.

Memory per idle connection is kept small (docs/architecture.md, Fan-out): the consumers run without
Channels' middleware stack (realtime/routing.py says why). A connection keeps only its session key
from the handshake, and the session is read when the client authenticates with it, through Channels'
own session store and ``get_user``, the lookup AuthMiddlewareStack would have made at connect and
kept for the socket's life. Once accepted, a consumer drops the scope's headers and lets
realtime/transport.py free what daphne, autobahn and Twisted keep of the handshake.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, ClassVar, TypeVar

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http.cookie import parse_cookie

from config.client_address import scope_client_address
from realtime import fanout, transport
from realtime.metrics import (
    stream_auth_failed,
    stream_connection_closed,
    stream_connection_opened,
    stream_message_received,
)
from realtime.outbox import StreamConnection
from realtime.selectors import account_snapshot_get
from realtime.streams import (
    AUTHENTICATED,
    CONNECTED,
    WILDCARD,
    Encoding,
    StreamError,
    Subscriptions,
    authorization_message,
    decode_inbound,
    encode_control,
    error_message,
    listening_message,
    parse_subscription,
    trading_error_message,
)
from trading.events import (
    stream_key_credential,
    stream_session_account_credential,
    stream_session_credential,
    stream_sessions_credential,
    stream_user_credential,
)

logger = logging.getLogger(__name__)

# daphne (autobahn) lets an application close only with 1000 or 3000-4999, so a refusal closes
# with 4000 + the Alpaca error code it just sent (4407 slow client, 4404 auth timeout, ...).
CLOSE_BASE = 4000
NO_CHANNEL_LAYER = "__streams_use_the_fanout__"
# What an accepted connection keeps of its scope: the handshake's headers, routing and server
# details are read at connect only.
KEPT_SCOPE_KEYS = ("type", "path")


@dataclass(frozen=True, slots=True)
class StreamIdentity:
    account_id: str
    # What the connection limit counts: the API key, or the account for session logins.
    limit_key: str
    user_id: int
    # What it authenticated with, as trading.events names credentials: revoking any of them
    # closes the socket (SubscriptionManager.revoke).
    credentials: tuple[str, ...]
    # What chose its account when that can change under it (a session's selection): revoking one
    # closes the sockets that carry account data, not market data (``carries_account``).
    account_credentials: tuple[str, ...] = ()

    @property
    def all_credentials(self) -> tuple[str, ...]:
        return self.credentials + self.account_credentials


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """A key pair's check: the identity it proves, or None and whether the key id exists at all
    (only an existing key's failures are counted against it)."""

    identity: StreamIdentity | None
    key_exists: bool


def key_pair_check(key_id: str, secret: str) -> KeyCheck:
    """The REST API's key check (HMAC compare, cache, revocation) for a stream's auth message."""
    from rest_framework.exceptions import AuthenticationFailed

    from trading.api.authentication import verified_key
    from trading.models import Account, ApiKey

    key_id, secret = key_id.strip(), secret.strip()
    try:
        known = verified_key(key_id, secret)
    except AuthenticationFailed:
        # An id longer than the column names no key: not worth a query.
        longest = ApiKey._meta.get_field("key_id").max_length or 0
        exists = len(key_id) <= longest and ApiKey.objects.filter(key_id=key_id).exists()
        return KeyCheck(identity=None, key_exists=exists)
    if not Account.objects.filter(pk=known.account_id, user__is_active=True).exists():
        return KeyCheck(identity=None, key_exists=True)
    identity = StreamIdentity(
        account_id=known.account_id,
        limit_key=f"key:{key_id}",
        user_id=known.user_id,
        credentials=(stream_key_credential(key_id), stream_user_credential(known.user_id)),
    )
    return KeyCheck(identity=identity, key_exists=True)


def verify_key_pair(key_id: str, secret: str) -> StreamIdentity | None:
    return key_pair_check(key_id, secret).identity


def session_identity(user_id: int, session_key: str) -> StreamIdentity | None:
    """A session's identity: the account it selected (its user's default one until it selects
    another), limited per account as the REST API is."""
    from trading.selectors import account_for_session_get

    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    account = account_for_session_get(user_id=user_id, session=session)
    if account is None:
        return None
    return StreamIdentity(
        account_id=str(account.pk),
        limit_key=f"account:{account.pk}",
        user_id=user_id,
        credentials=(
            stream_session_credential(session_key),
            stream_sessions_credential(user_id),
            stream_user_credential(user_id),
        ),
        account_credentials=(stream_session_account_credential(session_key),),
    )


def session_key_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The Django session key in a handshake's Cookie header, read as Channels' CookieMiddleware
    and SessionMiddleware read it (the first Cookie header, SESSION_COOKIE_NAME)."""
    for name, value in headers:
        if name == b"cookie":
            return parse_cookie(value.decode("latin1")).get(settings.SESSION_COOKIE_NAME) or None
    return None


async def session_user_id(session_key: str | None) -> int | None:
    """The user logged in with this session, or None: Channels' AuthMiddlewareStack lookup.

    The session store of SESSION_ENGINE and ``channels.auth.get_user`` (authentication backend,
    active user, session hash checked against the password), run in a context of its own as
    ``lookup_in_own_context`` explains.
    """
    if not session_key:
        return None
    from channels.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = await in_own_context(get_user({"session": store}))
    return int(user.pk) if user.is_authenticated else None


class TokenBucket:
    """Inbound message rate per connection: a flood closes only the flooding socket."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


_Result = TypeVar("_Result")


async def lookup_in_own_context(function: Callable[..., _Result], *args: Any) -> _Result:
    """``database_sync_to_async(function)(*args)`` without leaving state on the connection.

    Django's cache handler is context-local (asgiref Local), and sync_to_async copies the
    thread's context changes back into the caller's: a key check that touches the cache would
    leave a cache object with its own Redis client (~15 KB) in the connection's context for as
    long as the socket stays open. Run in a task with a copy of the context, the changes land
    in the copy, dropped when the lookup ends.
    """
    call: Awaitable[_Result] = database_sync_to_async(function)(*args)
    return await in_own_context(call)


async def in_own_context(call: Awaitable[_Result]) -> _Result:
    """Await ``call`` in a task with a copy of the current context (see lookup_in_own_context)."""

    async def run() -> _Result:
        return await call

    return await asyncio.get_running_loop().create_task(run(), context=contextvars.copy_context())


class _StreamConsumer(AsyncWebsocketConsumer):
    """Shared limits: inbound size and rate, the auth timeout, session identity."""

    channel_layer_alias = NO_CHANNEL_LAYER
    # The ``endpoint`` label of this stream's series (realtime/metrics.py).
    metrics_endpoint: ClassVar[str] = "other"
    # Never joined (no channel layer): one shared empty list rather than one per connection.
    groups: ClassVar[list[str]] = []
    # Whether it sends its account's data, so switching a session's account must close it.
    carries_account: ClassVar[bool] = True

    identity: StreamIdentity | None = None
    _auth_timer: asyncio.TimerHandle | None = None
    _auth_task: asyncio.Task[None] | None = None
    _closing = False
    # All a connection keeps of its handshake's headers: the Django session's key, if any, and
    # the client's address (TRUSTED_PROXIES decides whether X-Forwarded-For names it).
    _session_key: str | None = None
    _address: str = ""
    # When the credentials being presented started to be checked (the fan-out's clock): a
    # revocation that arrived after it may have been missed by the check (SubscriptionManager.hold).
    _checked_at = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__ for consumers without a channel layer.

        Channels waits on its message sources through a task per source and an asyncio.wait per
        message (await_many_dispatch), which an idle connection holds for its whole life; with
        the client as the only source, awaiting it directly dispatches the same messages in the
        same order and holds nothing more than the pending receive.
        """
        self.scope = scope
        # What the connection needs of the handshake's headers, read before _accept drops them.
        self._session_key = session_key_from_headers(scope.get("headers", ()))
        self._address = scope_client_address(scope)
        # The consumer's reference is then the only one (the routers keep no frame): _accept can
        # replace the scope with the little an open connection needs.
        del scope
        self.channel_layer = None
        self.base_send = send
        stream_connection_opened(self.metrics_endpoint)
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            stream_connection_closed(self.metrics_endpoint)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without its ``aclose_old_connections`` before every message.

        That is a hop to the sync thread and back per client message (about half of what a
        re-subscribe cost, and what a client sending messages in a loop makes this process do);
        these consumers touch the database only through database_sync_to_async, which closes old
        connections around each call itself.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def _accept(self) -> None:
        """Accept, then let the handshake go: the scope's headers and the server's leftovers."""
        await self.accept()
        self.scope = {key: self.scope[key] for key in KEPT_SCOPE_KEYS if key in self.scope}
        transport.release_handshake(self.base_send)

    def _start_auth_timer(self) -> None:
        self._bucket = TokenBucket(settings.STREAM_INBOUND_RATE, settings.STREAM_INBOUND_BURST)
        loop = asyncio.get_running_loop()
        self._auth_timer = loop.call_later(settings.STREAM_AUTH_TIMEOUT_S, self._auth_deadline)

    def _auth_deadline(self) -> None:
        if self.identity is None and not self._closing:
            self._auth_task = asyncio.create_task(self.auth_timed_out())

    async def auth_timed_out(self) -> None:
        raise NotImplementedError

    def _stop_auth_timer(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    async def close_with(self, code: int) -> None:
        self._closing = True
        self._stop_auth_timer()
        await self.close(code=code)

    async def _admit(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any] | None:
        """The decoded message, or None after answering an oversized, flooding or garbled one."""
        if self._closing:
            # Messages already queued behind the one that closed the socket: answering them
            # would write to a closing protocol, which autobahn refuses with an exception.
            return None
        stream_message_received(self.metrics_endpoint)
        size = len(bytes_data) if bytes_data is not None else len((text_data or "").encode())
        if size > settings.STREAM_MAX_INBOUND_BYTES:
            await self.refuse(400)
            await self.close_with(CLOSE_BASE + 400)
            return None
        if not self._bucket.take():
            await self.close_with(CLOSE_BASE + 429)  # no Alpaca code for a flood
            return None
        try:
            return decode_inbound(text_data, bytes_data)
        except StreamError as error:
            await self.refuse(error.code)
            return None

    async def refuse(self, code: int) -> None:
        raise NotImplementedError

    async def _session_identity(self) -> StreamIdentity | None:
        user_id = await session_user_id(self._session_key)
        if user_id is None or self._session_key is None:
            return None
        return await lookup_in_own_context(session_identity, user_id, self._session_key)

    def _hold(self, fanout_manager: fanout.SubscriptionManager, identity: StreamIdentity) -> bool:
        """Register the socket under its credentials, so revoking one closes it; False when one
        was revoked while it was being checked."""
        held = identity.all_credentials if self.carries_account else identity.credentials
        return fanout_manager.revocations.hold(held, self, checked_at=self._checked_at)

    async def credentials_revoked(self) -> None:
        """One of this socket's credentials was revoked: say so (as the protocol can) and close."""
        raise NotImplementedError

    async def _identify(self, key: object, secret: object) -> tuple[StreamIdentity | None, bool]:
        """(identity or None, whether the client is rate-limited and must be closed)."""
        self._checked_at = fanout.manager().clock()
        if key is None and secret is None:
            identity = await self._session_identity()
            if identity is None:
                stream_auth_failed(self.metrics_endpoint, "session")
            return identity, False
        limiter = fanout.manager().auth_failures
        key_id = key.strip() if isinstance(key, str) else ""
        if await limiter.blocked(address=self._address, key_id=key_id or None):
            stream_auth_failed(self.metrics_endpoint, "blocked")
            return None, True
        check = KeyCheck(identity=None, key_exists=False)
        if key_id and isinstance(secret, str) and secret.strip():
            check = await lookup_in_own_context(key_pair_check, key_id, secret)
        if check.identity is None:
            stream_auth_failed(self.metrics_endpoint, "credentials")
            await limiter.failed(address=self._address, key_id=key_id if check.key_exists else None)
        return check.identity, False


class MarketDataConsumer(_StreamConsumer):
    """Alpaca's market-data stream: ``/v2/iex``, ``/v2/sip`` and ``/v2/test``."""

    metrics_endpoint: ClassVar[str] = "market_data"
    carries_account: ClassVar[bool] = False

    connection: StreamConnection | None = None
    _registry_token: str | None = None
    # Symbols this connection holds in its account's budget (realtime.limits.SymbolBudget).
    _symbols_claimed = 0

    async def connect(self) -> None:
        self.feed = str(self.scope.get("url_route", {}).get("kwargs", {}).get("feed", "iex"))
        self.encoding = Encoding.from_headers(self.scope.get("headers", ()))
        self.fanout = fanout.manager()
        await self.fanout.ensure_started()
        await self._accept()
        await self.send_control([CONNECTED])
        self._start_auth_timer()

    async def send_control(self, messages: list[dict[str, Any]]) -> None:
        payload = encode_control(messages, self.encoding)
        if isinstance(payload, bytes):
            await self.send(bytes_data=payload)
        else:
            await self.send(text_data=payload)

    async def refuse(self, code: int) -> None:
        await self.send_control([error_message(code)])

    async def auth_timed_out(self) -> None:
        await self.refuse(404)
        await self.close_with(CLOSE_BASE + 404)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = await self._admit(text_data, bytes_data)
        if message is None:
            return
        action = message.get("action")
        try:
            if action == "auth":
                await self._auth(message)
            elif action in ("subscribe", "unsubscribe"):
                await self._subscribe(str(action), message)
            else:
                raise StreamError(400)
        except StreamError as error:
            await self.refuse(error.code)
        except Exception:
            logger.exception("market data stream: internal error")
            await self.refuse(500)

    async def _auth(self, message: dict[str, Any]) -> None:
        if self.identity is not None:
            raise StreamError(403)
        if self.feed not in settings.STREAM_FEEDS:
            await self.refuse(409)
            await self.close_with(CLOSE_BASE + 409)
            return
        identity, blocked = await self._identify(message.get("key"), message.get("secret"))
        if self._closing:
            # The auth timeout closed the socket during the lookup: nothing may be sent, and a
            # connection registered now would never be released.
            return
        if blocked:
            await self.refuse(402)
            await self.close_with(CLOSE_BASE + 402)
            return
        if identity is None:
            raise StreamError(402)
        token = f"{self.fanout.token}:{id(self)}"
        if not await self.fanout.registry.acquire(
            identity.limit_key, token, settings.STREAM_MAX_CONNECTIONS_PER_KEY
        ):
            await self.refuse(406)
            await self.close_with(CLOSE_BASE + 406)
            return
        if not self._hold(self.fanout, identity):
            await self.fanout.registry.release(identity.limit_key, token)
            raise StreamError(402)
        self._registry_token = token
        self.identity = identity
        self._stop_auth_timer()
        self.connection = StreamConnection(
            send=self.base_send,
            socket=transport.daphne_socket(self.base_send),
            encoding=self.encoding,
            on_slow=self._slow_client,
        )
        await self.send_control([AUTHENTICATED])

    async def _subscribe(self, action: str, message: dict[str, Any]) -> None:
        """Validate everything first (the listing, the symbol limits, the reply's size), then
        change the subscription: a refused request leaves it as it was."""
        identity, connection = self.identity, self.connection
        if identity is None or connection is None:
            raise StreamError(401)
        request = parse_subscription(message)
        if action == "subscribe":
            # Only listed symbols: unknown ones are left out of the subscription and its reply.
            # (An unsubscribe is not filtered: a symbol delisted since must still be removable.)
            listed = await self.fanout.listed.get()
            request = {
                channel: [symbol for symbol in symbols if symbol == WILDCARD or symbol in listed]
                for channel, symbols in request.items()
            }
        # The routing masks are the subscription state: an idle connection keeps no second copy.
        current = Subscriptions.from_masks(connection.masks, connection.wildcard_mask)
        updated = current.apply(action, request)
        count = updated.symbol_count()
        if count > settings.STREAM_MAX_SYMBOLS:
            raise StreamError(405)
        reply = encode_control([updated.message()], self.encoding)
        if len(reply) > settings.STREAM_MAX_FRAME_BYTES:
            raise StreamError(405)  # its reply would not fit in a frame, and frames are never truncated
        token = self._registry_token
        if count != self._symbols_claimed and token is not None:
            owner = self._budget_owner(identity)
            if not await self.fanout.symbol_budget.claim(owner, token, count):
                raise StreamError(405)
            self._symbols_claimed = count
            if self._closing:
                # Closed during the claim, perhaps after its disconnect released the old count.
                await self.fanout.symbol_budget.release(owner, token)
                return
        masks, wildcard = updated.masks()
        self.fanout.update(connection, masks, wildcard)
        # The reply counts against the connection's byte budget: a client re-subscribing in a
        # loop has its data conflated rather than making this process send more.
        connection.spend(len(reply), self.fanout.clock())
        if isinstance(reply, bytes):
            await self.send(bytes_data=reply)
        else:
            await self.send(text_data=reply)

    @staticmethod
    def _budget_owner(identity: StreamIdentity) -> str:
        # Per account, as every other limit: a user's accounts each have their own budget.
        return f"account:{identity.account_id}"

    async def _slow_client(self) -> None:
        await self.refuse(407)
        await self.close_with(CLOSE_BASE + 407)

    async def credentials_revoked(self) -> None:
        if self._closing:
            return
        if self.connection is not None:
            self.fanout.remove(self.connection)  # no data frame after the error
        await self.refuse(402)
        await self.close_with(CLOSE_BASE + 402)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        self._stop_auth_timer()
        if self.connection is not None:
            self.fanout.remove(self.connection)
        if self.identity is not None:
            self.fanout.revocations.release(self.identity.all_credentials, self)
            if self._registry_token is not None:
                if self._symbols_claimed:
                    owner = self._budget_owner(self.identity)
                    await self.fanout.symbol_budget.release(owner, self._registry_token)
                await self.fanout.registry.release(self.identity.limit_key, self._registry_token)


class TradeUpdatesConsumer(_StreamConsumer):
    """Alpaca's trading stream at ``/stream``: ``trade_updates`` for the authenticated account.

    Open sockets per API key (or session account) are limited to STREAM_MAX_CONNECTIONS_PER_KEY, as
    on the market-data stream but counted apart from it, so a bot may hold both streams. Alpaca
    documents no error code for this stream: past the limit the authentication is answered with
    the trading stream's error message ("connection limit exceeded") and the socket is closed
    with 4406, which alpaca-py reports as a failed authentication.
    """

    metrics_endpoint: ClassVar[str] = "trade_updates"
    wants_snapshot = False
    listening = False
    _registry_token: str | None = None

    async def connect(self) -> None:
        self.fanout = fanout.manager()
        await self.fanout.ensure_started()
        await self._accept()
        self._start_auth_timer()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(text_data=encode_control_json(message))

    async def refuse(self, code: int) -> None:
        await self.send_json(trading_error_message(error_message(code)["msg"]))

    async def auth_timed_out(self) -> None:
        await self.send_json(authorization_message(authorized=False))
        await self.close_with(CLOSE_BASE + 404)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = await self._admit(text_data, bytes_data)
        if message is None:
            return
        action = message.get("action")
        data = message.get("data")
        data = data if isinstance(data, dict) else {}
        try:
            if action in ("authenticate", "auth"):
                await self._authenticate(data)
            elif action == "listen":
                await self._listen(data)
            else:
                await self.refuse(400)
        except Exception:
            logger.exception("trade_updates stream: internal error")
            await self.refuse(500)

    async def _authenticate(self, data: dict[str, Any]) -> None:
        if self.identity is not None:
            # Checked once per socket: another key's credentials are neither checked nor
            # adopted, and the socket keeps the identity it has.
            await self.refuse(403)
            return
        identity, blocked = await self._identify(data.get("key_id"), data.get("secret_key"))
        if self._closing:
            return  # closed by the auth timeout during the lookup, as on the market-data stream
        if identity is not None:
            token = f"{self.fanout.token}:{id(self)}"
            if not await self.fanout.registry.acquire(
                self._limit_key(identity), token, settings.STREAM_MAX_CONNECTIONS_PER_KEY
            ):
                await self.send_json(trading_error_message(error_message(406)["msg"]))
                await self.close_with(CLOSE_BASE + 406)
                return
            if not self._hold(self.fanout, identity):
                await self.fanout.registry.release(self._limit_key(identity), token)
                identity = None
            else:
                self._registry_token = token
        await self.send_json(authorization_message(authorized=identity is not None))
        if blocked:
            await self.close_with(CLOSE_BASE + 402)
        elif identity is not None:
            self.identity = identity
            self._stop_auth_timer()

    @staticmethod
    def _limit_key(identity: StreamIdentity) -> str:
        return f"trade_updates:{identity.limit_key}"

    async def _listen(self, data: dict[str, Any]) -> None:
        if self.identity is None:
            await self.send_json(authorization_message(authorized=False, action="listen"))
            return
        streams = data.get("streams")
        if not isinstance(streams, list):
            await self.refuse(400)
            return
        wanted = "trade_updates" in streams
        if wanted and not self.listening:
            self.fanout.listen_account(self.identity.account_id, self)
        elif not wanted and self.listening:
            self.fanout.unlisten_account(self.identity.account_id, self)
        self.listening = wanted
        await self.send_json(listening_message(["trade_updates"] if wanted else []))

    async def account_event(self, trade_update: dict[str, Any], snapshot: dict[str, Any] | None) -> None:
        if not self._closing:
            await self.send_json(trade_update)

    async def credentials_revoked(self) -> None:
        if self._closing or self.identity is None:
            return
        if self.listening:
            self.fanout.unlisten_account(self.identity.account_id, self)
            self.listening = False
        await self.send_json(authorization_message(authorized=False))
        await self.close_with(CLOSE_BASE + 401)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        self._stop_auth_timer()
        if self.identity is not None:
            if self.listening:
                self.fanout.unlisten_account(self.identity.account_id, self)
            self.fanout.revocations.release(self.identity.all_credentials, self)
            if self._registry_token is not None:
                await self.fanout.registry.release(self._limit_key(self.identity), self._registry_token)


class DashboardConsumer(_StreamConsumer):
    """The dashboard's own channel: account snapshots, trade updates and leaderboard changes.

    Session only (browsers cannot send API keys safely); refused at the handshake otherwise.
    On connect: ``{"stream":"account_update","data":{"account":..,"positions":[..]}}``, the
    state a reconnecting page resumes from. Each order event of the account produces one frame:
    ``{"stream":"account_update","data":{"trade_update":..,"account":..,"positions":[..]}}``.
    Each changed leaderboard: ``{"stream":"leaderboard","data":<GET /v2/leaderboard?limit=20>}``.
    """

    metrics_endpoint: ClassVar[str] = "dashboard"
    wants_snapshot = True
    _registry_token: str | None = None
    # Frames that arrive while the connect snapshot is being read wait here, so the snapshot is
    # always first; None once it has been sent.
    _held: list[str] | None = None

    async def connect(self) -> None:
        self._checked_at = fanout.manager().clock()
        identity = await self._session_identity()
        if identity is None:
            stream_auth_failed(self.metrics_endpoint, "session")
            await self.close()
            return
        self.fanout = fanout.manager()
        await self.fanout.ensure_started()
        # Each socket costs a snapshot read and a place in every leaderboard broadcast, so a
        # session gets the same number of them as a key gets streams; over it the handshake is
        # refused (403) and the page's reconnect backs off.
        token = f"{self.fanout.token}:{id(self)}"
        if not await self.fanout.registry.acquire(
            self._limit_key(identity), token, settings.STREAM_MAX_CONNECTIONS_PER_KEY
        ):
            await self.close()
            return
        if not self._hold(self.fanout, identity):
            await self.fanout.registry.release(self._limit_key(identity), token)
            await self.close()
            return
        self._registry_token = token
        self.identity = identity
        self._bucket = TokenBucket(settings.STREAM_INBOUND_RATE, settings.STREAM_INBOUND_BURST)
        await self._accept()
        # Listen before reading the snapshot: an event committed after the read is then held and
        # sent after it, never lost between the two.
        self._held = []
        self.fanout.listen_account(identity.account_id, self)
        self.fanout.listen_leaderboard(self)
        snapshot = await database_sync_to_async(account_snapshot_get)(account_id=identity.account_id)
        if self._closing:
            return  # revoked while the snapshot was read: already closed
        if snapshot is None:
            await self.close()
            return
        await self.send(text_data=encode_control_json({"stream": "account_update", "data": snapshot}))
        held, self._held = self._held, None
        for frame in held:
            await self.send(text_data=frame)

    async def _send_or_hold(self, frame: str) -> None:
        if self._held is not None:
            self._held.append(frame)
        else:
            await self.send(text_data=frame)

    async def refuse(self, code: int) -> None:
        await self.send(text_data=encode_control_json({"stream": "error", "data": error_message(code)}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # Nothing to ask for yet; reading keeps the size and rate limits in force.
        await self._admit(text_data, bytes_data)

    async def account_event(self, trade_update: dict[str, Any], snapshot: dict[str, Any] | None) -> None:
        if self._closing:
            return
        data: dict[str, Any] = {"trade_update": trade_update["data"]}
        if snapshot is not None:
            data.update(snapshot)
        await self._send_or_hold(encode_control_json({"stream": "account_update", "data": data}))

    async def leaderboard_changed(self, frame: str) -> None:
        if not self._closing:
            await self._send_or_hold(frame)

    async def credentials_revoked(self) -> None:
        if self._closing or self.identity is None:
            return
        self._closing = True
        self.fanout.unlisten_account(self.identity.account_id, self)
        self.fanout.unlisten_leaderboard(self)
        await self.close(code=CLOSE_BASE + 401)

    async def disconnect(self, code: int) -> None:
        self._closing = True
        if self.identity is not None:
            self.fanout.unlisten_account(self.identity.account_id, self)
            self.fanout.unlisten_leaderboard(self)
            self.fanout.revocations.release(self.identity.all_credentials, self)
            if self._registry_token is not None:
                await self.fanout.registry.release(self._limit_key(self.identity), self._registry_token)

    @staticmethod
    def _limit_key(identity: StreamIdentity) -> str:
        return f"dashboard:{identity.limit_key}"


def encode_control_json(message: dict[str, Any]) -> str:
    # The trading stream sends bare objects, not arrays.
    return json.dumps(message, separators=(",", ":"))
