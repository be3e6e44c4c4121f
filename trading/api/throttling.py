"""Rate limits: per account and endpoint class for the API, per name and address for logins.

The limiter is a sliding-window log run as one Lua script in Redis: the script trims entries older
than the window, counts the rest and admits the request only if the count is below the limit, all
atomically and on Redis' clock. Any window of the configured length therefore holds at most
``limit`` admitted requests, however requests from many web processes interleave; a fixed-window
counter would admit twice the limit across a window edge, a token bucket up to twice in one
window. The cost is memory: at most ``limit`` entries per (account, endpoint class), expiring with
the window.

When Redis is unavailable each process falls back to the same algorithm in memory (a bounded
map of accounts), so limits still apply, per process rather than across them, until Redis answers.

Endpoint classes (``settings.RATE_LIMITS``): ``orders`` (writes under /v2/orders and /v2/positions),
``write`` (other writes), ``market_data`` (/v2/stocks), ``read`` (other reads) and ``anon``
(requests without a user, by the client address config/client_address.py decides). A view may
name its class with ``throttle_scope``.

A request's verdict costs one round trip to Redis, which on a loaded web process is the largest
share of a cached read's time. Views whose handler only serves precomputed, cached data set
``rate_verdict_after_handler``: for their reads the script is sent before the handler runs and
its answer read after, before anything is answered, so the handler's work overlaps the round trip
(``benchmark api``). A refused request then costs what serving it would have (a cached lookup)
and still gets its 429; writes and other reads wait for the verdict first.

Login throttling is an authentication backend, so it guards every login form (the admin's and
the dashboard's) without wrapping views: an attempt takes a slot per (username, address) and per
address; a successful login gives both back.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from redis.connection import Connection
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from config.client_address import request_client_address
from config.redis_pools import fork_reset_register, redis_client, resp_pack

try:
    from redis._parsers.socket import SocketBuffer
except ImportError:
    # A private module: should redis-py rename it, every verdict takes its parser
    # (verdict_reply_read) and its guard test fails, rather than the API failing to import.
    SocketBuffer = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    # rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES) while it loads.
    from rest_framework.views import APIView

logger = logging.getLogger(__name__)

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


@dataclass(frozen=True)
class Rate:
    limit: int
    window: float  # seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``"200/min"``, ``"5/15min"``, ``"10/s"``: a count per (optionally multiplied) unit."""
        match = _RATE.match(text.lower())
        unit = _UNITS.get(match.group(3).rstrip("s") or "s") if match else None
        if match is None or unit is None:
            raise ValueError(f"invalid rate {text!r}; expected e.g. '200/min' or '5/15min'")
        return cls(limit=int(match.group(1)), window=float(int(match.group(2) or 1) * unit))


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Seconds until a request would be admitted (0 when allowed).
    wait: float
    # The entry this request added, so a successful login can give its slot back.
    member: str = ""
    # Requests the window still admits after this one, and the Unix time (seconds) at which
    # its oldest entry leaves it, i.e. when one more is admitted: the X-RateLimit headers. Both
    # are read in the same atomic step as the verdict, so concurrent requests each see their own.
    remaining: int = 0
    reset_at: float = 0.0


# KEYS[1]: the log. ARGV: limit, window in microseconds, member.
# Returns {allowed, wait µs, remaining, reset as Unix µs}.
_SLIDING_WINDOW = """
if redis.replicate_commands then redis.replicate_commands() end
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local allowed = 0
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  count = count + 1
  allowed = 1
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = tonumber(oldest[2]) + window
local wait = 0
if allowed == 0 then wait = reset - now end
return {allowed, wait, limit - count, reset}
"""


class _LocalWindows:
    """The same sliding-window log in memory, for when Redis is unavailable; bounded in keys."""

    def __init__(self, *, max_keys: int, clock: Callable[[], float]) -> None:
        self.max_keys = max_keys
        self.clock = clock
        self._logs: OrderedDict[str, deque[tuple[float, str]]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, rate: Rate, member: str) -> Decision:
        now = self.clock()
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = deque()
                while len(self._logs) > self.max_keys:
                    self._logs.popitem(last=False)
            self._logs.move_to_end(key)
            while log and log[0][0] <= now - rate.window:
                log.popleft()
            allowed = len(log) < rate.limit
            if allowed:
                log.append((now, member))
            # The clock is monotonic; the reset is told in Unix time.
            reset_in = log[0][0] + rate.window - now
            return Decision(
                allowed,
                0.0 if allowed else reset_in,
                member if allowed else "",
                remaining=rate.limit - len(log),
                reset_at=time.time() + reset_in,
            )

    def remove(self, key: str, member: str | None) -> None:
        with self._lock:
            log = self._logs.get(key)
            if log is None:
                return
            if member is None:
                del self._logs[key]
            else:
                self._logs[key] = deque(entry for entry in log if entry[1] != member)


def _member_new() -> str:
    """A fresh entry for a window's log: 128 random bits in hex, unique among every process's
    entries. ``os.urandom`` rather than ``uuid.uuid4().hex``, which draws the same bytes and
    then spends ~3 us building a UUID on every API request."""
    return os.urandom(16).hex()


def _script_args(rate: Rate, member: str) -> tuple[int, int, str]:
    return rate.limit, int(rate.window * 1_000_000), member


def _decided(reply: Any, member: str) -> Decision:
    allowed, wait_us, remaining, reset_us = reply
    return Decision(
        bool(allowed),
        max(0, int(wait_us)) / 1_000_000,
        member if allowed else "",
        remaining=max(0, int(remaining)),
        reset_at=int(reset_us) / 1_000_000,
    )


# The script's every successful reply: four integers (RESP2 and RESP3 write them alike).
_VERDICT_REPLY = re.compile(rb"\*4\r\n:(-?\d+)\r\n:(-?\d+)\r\n:(-?\d+)\r\n:(-?\d+)\r\n")
# Longer than any such reply (four 64-bit integers and the framing: at most 96 bytes).
_VERDICT_PEEK = 128


def verdict_reply_read(connection: Connection) -> Any:
    """The reply to one ``EVALSHA`` of the limiter's script, read off the socket when it is the
    four integers the script answers, and by redis-py's parser otherwise.

    redis-py's pure-Python RESP3 parser spends ~30 us of CPU per reply on five generic reads
    (``benchmark api --cpu``); this one looks at the waiting bytes without taking them
    (``MSG_PEEK``) and takes them only when they are exactly one whole verdict. Anything else (an
    error such as NOSCRIPT, a reply still arriving, a closed socket, bytes already in redis-py's
    buffer, a TLS socket, a health check to keep) is left where it is for ``connection.read_response``, which
    raises and disconnects as it always does. A framework bypass (docs/architecture.md): it relies
    on ``connection._sock``, ``connection._parser._buffer`` (a ``SocketBuffer`` with
    ``unread_bytes()``) and ``health_check_interval``.
    """
    # Read with getattr (and SocketBuffer imported under a guard): should redis-py rename them,
    # every reply takes its parser (and the guard test fails) rather than any request failing.
    sock = getattr(connection, "_sock", None)
    buffered = getattr(getattr(connection, "_parser", None), "_buffer", None)
    # Only redis-py's own Python parsers read through a SocketBuffer (hiredis keeps its own).
    # A TLS socket refuses MSG_PEEK (and its bytes on the wire are not the reply).
    if (
        type(sock) is not socket.socket
        or connection.health_check_interval
        or SocketBuffer is None
        or not isinstance(buffered, SocketBuffer)
        or buffered.unread_bytes()
    ):
        return connection.read_response()
    try:
        waiting = sock.recv(_VERDICT_PEEK, socket.MSG_PEEK)
        match = _VERDICT_REPLY.fullmatch(waiting)
        taken = sock.recv(len(waiting)) if match is not None else b""
    except OSError as error:
        # As redis-py's read_response: disconnected, and told as its own errors.
        connection.disconnect()
        if isinstance(error, socket.timeout):
            raise redis.TimeoutError(f"reading the rate verdict: {error}") from error
        raise redis.ConnectionError(f"reading the rate verdict: {error}") from error
    if match is None:
        return connection.read_response()
    if taken != waiting:
        # Not the bytes just seen: the connection is out of step and must not be used again.
        connection.disconnect()
        raise redis.ConnectionError("reading the rate verdict: the reply changed under MSG_PEEK")
    return [int(number) for number in match.groups()]


class PendingDecision:
    """A verdict asked of Redis and not read yet (``SlidingWindowLimiter.hit_begin``)."""

    def __init__(
        self, *, read: Callable[[], Decision] | None = None, decided: Decision | None = None
    ) -> None:
        self._read = read
        self._decision = decided

    def result(self) -> Decision:
        """The verdict, read once (later calls answer the same)."""
        if self._decision is None:
            assert self._read is not None
            read, self._read = self._read, None
            self._decision = read()
        return self._decision


class SlidingWindowLimiter:
    """Exact sliding-window limits in Redis, with the in-memory fallback described above."""

    def __init__(
        self,
        *,
        redis_factory: Callable[[], redis.Redis] = redis_client,
        clock: Callable[[], float] = time.monotonic,
        local_max_keys: int = 10_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self._redis_factory = redis_factory
        self._clock = clock
        self._retry_seconds = retry_seconds
        self._down_until = 0.0
        self.local = _LocalWindows(max_keys=local_max_keys, clock=clock)
        # One client and one registered script for the limiter's life: building a redis.Redis
        # costs ~65 us (its response-callback table) and EVAL resends the script; the client
        # shares the process's pool, which redis-py makes safe across fork.
        self._redis: redis.Redis | None = None
        self._script: Any = None
        self._init_lock = threading.Lock()
        # Every API request takes one limiter round trip. Through redis-py's client that costs
        # ~100 us of CPU (pool checkout and return, retry and metrics wrappers) around a ~20 us
        # exchange, so the limiter keeps one connection checked out of the same bounded pool
        # (it still counts against REDIS_POOL_MAX_CONNECTIONS) and talks on it directly. A
        # thread that finds it busy takes the ordinary pooled path.
        self._pinned: Connection | None = None
        self._pinned_pid = 0
        self._pinned_lock = threading.Lock()
        fork_reset_register(self)

    def after_fork_in_child(self) -> None:
        """Fresh locks in a forked child: one a parent thread held at the fork stays held there
        (config/redis_pools.py, ``fork_reset_register``)."""
        self._init_lock = threading.Lock()
        self._pinned_lock = threading.Lock()
        self.local._lock = threading.Lock()

    def _client(self) -> redis.Redis | None:
        if self._clock() < self._down_until:
            return None
        client = self._redis
        if client is None:
            # A new process's first requests arrive together on several threads: one builds the
            # client, and the client is published only with its script, so no thread finds the
            # one without the other.
            with self._init_lock:
                if self._redis is None:
                    built = self._redis_factory()
                    self._script = built.register_script(_SLIDING_WINDOW)
                    self._redis = built
                client = self._redis
        return client

    def _failed(self, error: Exception) -> None:
        self._down_until = self._clock() + self._retry_seconds
        logger.warning("rate limits: Redis unavailable (%s); limiting per process", error)

    def hit(self, key: str, rate: Rate) -> Decision:
        pending = self.hit_begin(key, rate)
        if pending is not None:
            return pending.result()
        member = _member_new()
        client = self._client()
        if client is not None:
            try:
                # EVALSHA, falling back to EVAL (and caching the script) after a Redis restart.
                return _decided(self._script(keys=[key], args=list(_script_args(rate, member))), member)
            except redis.RedisError as error:
                self._failed(error)
        return self.local.hit(key, rate, member)

    def hit_begin(self, key: str, rate: Rate) -> PendingDecision | None:
        """Send this request's hit on the limiter's own connection and return without waiting
        for the verdict, so the caller can work while Redis decides; ``result()`` reads it (and
        must be called: until then the connection is reserved for this verdict).

        None when that connection is busy with another thread's request or Redis is marked
        down; ``hit`` then takes the pooled or the local path.
        """
        client = self._client()
        if client is None or not self._pinned_lock.acquire(blocking=False):
            return None
        member = _member_new()
        args = _script_args(rate, member)
        try:
            self._send_pinned(client, key, args)
        except redis.RedisError as error:
            self._pinned_lock.release()
            self._failed(error)
            return PendingDecision(decided=self.local.hit(key, rate, member))
        except BaseException:
            self._pinned_lock.release()
            raise
        return PendingDecision(read=lambda: self._read_pinned(client, key, rate, args))

    def _send_pinned(self, client: redis.Redis, key: str, args: tuple[int, int, str]) -> None:
        """The script, sent on the limiter's own connection (the caller holds ``_pinned_lock``)."""
        if self._pinned is None or self._pinned_pid != os.getpid():
            # After a fork the parent's connection is not ours to use; the pool starts afresh too.
            self._pinned = client.connection_pool.get_connection()
            self._pinned_pid = os.getpid()
        # Packed here rather than by redis-py's generic packer: the request is always the same
        # seven strings, and packing them generically costs more than the rest of the send.
        packed = resp_pack("EVALSHA", self._script.sha, "1", key, *map(str, args))
        try:
            self._pinned.send_packed_command([packed])
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis restarted or closed the idle connection: nothing was sent, so one fresh
            # attempt cannot count this request twice.
            self._pinned.disconnect()
            try:
                self._pinned.send_packed_command([packed])
            except (redis.ConnectionError, redis.TimeoutError):
                self._drop_pinned(client)
                raise

    def _read_pinned(self, client: redis.Redis, key: str, rate: Rate, args: tuple[int, int, str]) -> Decision:
        """The verdict ``_send_pinned`` asked for; releases ``_pinned_lock``."""
        member = args[2]
        connection = self._pinned
        assert connection is not None  # set by _send_pinned under the same lock
        try:
            try:
                reply = verdict_reply_read(connection)
            except redis.exceptions.NoScriptError:
                # Redis restarted or flushed its scripts; EVAL runs it and caches it again.
                connection.send_command("EVAL", _SLIDING_WINDOW, 1, key, *args)
                reply = connection.read_response()
            return _decided(reply, member)
        except redis.ResponseError as error:
            # A whole error reply was read, so the connection is still in step.
            self._failed(error)
        except BaseException as error:
            # Anything else may leave part of a reply unread: that connection is not used again.
            self._drop_pinned(client)
            if not isinstance(error, redis.RedisError):
                raise
            self._failed(error)
        finally:
            self._pinned_lock.release()
        return self.local.hit(key, rate, member)

    def _drop_pinned(self, client: redis.Redis) -> None:
        """A broken connection goes back to the pool closed; the next request checks out anew."""
        connection, self._pinned = self._pinned, None
        if connection is not None:
            connection.disconnect()
            client.connection_pool.release(connection)

    def release(self, key: str, member: str | None = None) -> None:
        """Give back one admitted slot (``member``) or forget the key entirely (None)."""
        self.local.remove(key, member)
        client = self._client()
        if client is None:
            return
        try:
            if member is None:
                client.delete(key)
            else:
                client.zrem(key, member)
        except redis.RedisError as error:
            self._failed(error)


_limiter: SlidingWindowLimiter | None = None
_limiter_lock = threading.Lock()


def limiter() -> SlidingWindowLimiter:
    global _limiter
    with _limiter_lock:
        if _limiter is None:
            _limiter = SlidingWindowLimiter()
        return _limiter


@functools.lru_cache(maxsize=64)
def _parsed_rate(text: str) -> Rate:
    return Rate.parse(text)


def rate_for(scope: str) -> Rate | None:
    """The configured rate of an endpoint class; None (unlimited) when it has none."""
    text = settings.RATE_LIMITS.get(scope)
    return _parsed_rate(text) if text else None


# --- API ----------------------------------------------------------------------------------------

_ORDER_PATHS = ("/v2/orders", "/v2/positions")
_MARKET_DATA_PATHS = ("/v2/stocks",)
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def endpoint_scope(request: Request, view: APIView | None = None) -> str:
    """The endpoint class a request is limited under."""
    if not getattr(request.user, "is_authenticated", False):
        return "anon"
    declared = getattr(view, "throttle_scope", None)
    if isinstance(declared, str) and declared:
        return declared
    path = request.path
    if request.method not in _SAFE_METHODS:
        return "orders" if path.startswith(_ORDER_PATHS) else "write"
    return "market_data" if path.startswith(_MARKET_DATA_PATHS) else "read"


class DefersRateVerdict(Protocol):
    """A view that reads its request's verdict after its handler ran (TradingAPIView)."""

    rate_verdict_after_handler: bool
    pending_rate_verdict: PendingDecision | None


def retry_after(decision: Decision) -> float:
    """Whole seconds, rounded up: a client that waits the Retry-After it was told is admitted."""
    return float(max(1, math.ceil(decision.wait)))


# Where a request's limit and verdict wait for its response (``rate_limit_headers_set``).
_VERDICT_ATTR = "rate_limit_verdict"


def rate_limit_headers_set(request: HttpRequest, response: HttpResponseBase) -> None:
    """Alpaca's ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (Unix seconds, rounded up:
    when the window admits one more request) from the verdict this request was given, on every
    answer of a limited endpoint, the 429 included."""
    noted: tuple[Rate, Decision | PendingDecision] | None = getattr(request, _VERDICT_ATTR, None)
    if noted is None:
        return
    rate, verdict = noted
    for name, value in rate_limit_headers(rate, verdict_read(verdict)):
        response[name] = value


def rate_limit_headers(rate: Rate, decision: Decision) -> list[tuple[str, str]]:
    """The ``X-RateLimit-*`` headers of ``decision`` under ``rate``: the views' (above) and the
    fast reads' (trading/api/fast_reads.py)."""
    return [
        ("X-RateLimit-Limit", str(rate.limit)),
        ("X-RateLimit-Remaining", str(decision.remaining)),
        ("X-RateLimit-Reset", str(math.ceil(decision.reset_at))),
    ]


def verdict_read(verdict: Decision | PendingDecision) -> Decision:
    """A verdict's decision, read off the limiter's connection if still pending (which frees it)."""
    return verdict.result() if isinstance(verdict, PendingDecision) else verdict


@dataclass(frozen=True)
class HandedVerdict:
    """A verdict the cached reads' fast path (analytics/fast_reads.py) asked for a request it then
    handed on to the DRF view (its cached value was gone by then, or the verdict refused it):
    ``EndpointRateThrottle`` takes it instead of asking again, so the request counts once and a
    refusal is the view's own 429."""

    key: str
    rate: Rate
    verdict: Decision | PendingDecision


# Where a HandedVerdict travels: the request's WSGI environ, where no client can put an object.
HANDED_VERDICT_ENVIRON = "trading.rate_verdict"


def api_rate_key(scope: str, identity: str) -> str:
    """The limiter's key for one endpoint class and caller (``EndpointRateThrottle.identity``)."""
    return f"{settings.RATE_LIMIT_KEY_PREFIX}:{scope}:{identity}"


class EndpointRateThrottle(BaseThrottle):
    """DRF throttle for every API view (``DEFAULT_THROTTLE_CLASSES``): one budget per account and
    endpoint class, whether the request came with one of its API keys or a dashboard session."""

    def __init__(self) -> None:
        self._wait: float | None = None

    def identity(self, request: Request) -> str:
        user = request.user
        if not getattr(user, "is_authenticated", False):
            # Not DRF's get_ident: without NUM_PROXIES it believes any X-Forwarded-For, so a
            # client could name a fresh address per request and never run out of budget.
            return f"ip:{request_client_address(request._request)}"
        # Per account: each of a user's accounts has its own budget, shared by its keys and the
        # sessions acting on it. Imported here: rest_framework.views loads this module.
        from trading.api.authentication import request_account_id

        account_id = request_account_id(request)
        if account_id is not None:
            return f"account:{account_id}"
        # An operator's own login, without a trading account. date_joined is part of the identity
        # so a user recreated under a reused id (SQLite reuses the highest id after a delete) does
        # not inherit its predecessor's budget.
        joined = getattr(user, "date_joined", None)
        stamp = int(joined.timestamp() * 1_000_000) if joined is not None else 0
        return f"user:{user.pk}.{stamp}"

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not settings.RATE_LIMITS_ENABLED:
            return True
        scope = endpoint_scope(request, view)
        rate = rate_for(scope)
        if rate is None:
            return True
        key = api_rate_key(scope, self.identity(request))
        deferred = request.method in _SAFE_METHODS and getattr(view, "rate_verdict_after_handler", False)
        handed = request._request.META.pop(HANDED_VERDICT_ENVIRON, None)
        verdict: Decision | PendingDecision | None = None
        if isinstance(handed, HandedVerdict) and handed.key == key and handed.rate == rate:
            # Asked already, by the fast path that handed this request on: not asked twice.
            verdict = handed.verdict
        elif deferred:
            verdict = limiter().hit_begin(key, rate)
        if isinstance(verdict, PendingDecision) and deferred:
            # The view reads the verdict once its handler has run (TradingAPIView).
            cast(DefersRateVerdict, view).pending_rate_verdict = verdict
            setattr(request._request, _VERDICT_ATTR, (rate, verdict))
            return True
        if isinstance(verdict, PendingDecision):
            decision = verdict.result()
        elif isinstance(verdict, Decision):
            decision = verdict
        else:
            decision = limiter().hit(key, rate)
        setattr(request._request, _VERDICT_ATTR, (rate, decision))
        if not decision.allowed:
            self._wait = retry_after(decision)
        return decision.allowed

    def wait(self) -> float | None:
        return self._wait


# --- Login --------------------------------------------------------------------------------------


# The backend marks a refused request so a login page can say why (Django's ``authenticate``
# swallows the PermissionDenied and reports an ordinary failure).
_LOGIN_THROTTLED_ATTR = "login_throttled_for_seconds"


def login_throttled_for(request: HttpRequest) -> float | None:
    """Seconds until a login from this request would be tried again, if it was throttled."""
    wait = getattr(request, _LOGIN_THROTTLED_ATTR, None)
    return float(wait) if wait is not None else None


def login_keys(*, username: str, address: str) -> tuple[str, str]:
    prefix = settings.RATE_LIMIT_KEY_PREFIX
    return f"{prefix}:login:{username.lower()}|{address}", f"{prefix}:login-ip:{address}"


class LoginThrottleBackend(ModelBackend):
    """Django's ModelBackend behind login limits: past them every attempt fails, right password or
    not, until the window moves on. Refusing by PermissionDenied stops ``authenticate`` from trying
    other backends and still sends ``user_login_failed``."""

    def authenticate(  # type: ignore[override]  # the stubs' _User is the settings' user model
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> AbstractBaseUser | None:
        if username is None:
            username = kwargs.get("username")
        if request is None or username is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        address = request_client_address(request)
        pair_key, address_key = login_keys(username=str(username), address=address)
        rates = (
            (pair_key, Rate.parse(settings.LOGIN_RATE_LIMIT)),
            (address_key, Rate.parse(settings.LOGIN_IP_RATE_LIMIT)),
        )
        taken: list[tuple[str, str]] = []
        for key, rate in rates:
            decision = limiter().hit(key, rate)
            if not decision.allowed:
                for taken_key, member in taken:
                    limiter().release(taken_key, member)
                logger.warning("login throttled for %r from %s", username, address)
                setattr(request, _LOGIN_THROTTLED_ATTR, decision.wait)
                raise PermissionDenied("too many login attempts; try again later")
            taken.append((key, decision.member))
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            # Only failures count against the limits: an office behind one address logs in freely.
            limiter().release(pair_key)
            limiter().release(address_key, taken[1][1])
        return user


def signup_throttled_for(request: HttpRequest) -> float | None:
    """Seconds until this address may open another account, or None when it may now.

    Every sign-up attempt that reaches the service counts, so one address cannot mint accounts
    (each with fresh virtual cash) to flood a class's leaderboard.
    """
    key = f"{settings.RATE_LIMIT_KEY_PREFIX}:signup-ip:{request_client_address(request)}"
    decision = limiter().hit(key, Rate.parse(settings.SIGNUP_IP_RATE_LIMIT))
    return None if decision.allowed else decision.wait
