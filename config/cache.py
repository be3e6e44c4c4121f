"""CacheManager: an in-process L1 (bounded LRU with TTL) over Redis L2, cache-through by data type.

- **TTLs** come from one table, ``settings.CACHE_TTLS`` (data type -> seconds). An L1 entry lives
  at most ``CACHE_L1_MAX_SECONDS`` (1 s): invalidation messages can be lost (Redis drops a lagging
  subscriber, a process can be mid-reconnect), and the cap is what then bounds a stale read
  across processes (Property 34, docs/properties.md).
- **Expiry is decided by the injectable clock** (waits and back-offs use the monotonic clock),
  not only by Redis: each L2 value carries the instant it expires (Redis' own EX is there to
  reclaim memory), so tests move a fake clock instead of sleeping.
- **Invalidation after commit** deletes the L2 value, bumps the key's version and publishes the
  key on ``CACHE_INVALIDATION_CHANNEL``; every process listens in a daemon thread and drops its L1
  entry. The version stops a loader that read the database before the write from storing its
  old answer after the delete (the classic cache-aside race).
- **Stampede protection**: on a miss one caller per key takes a short Redis lock (SET NX PX) and
  recomputes; the others poll L2 for its answer for up to ``CACHE_LOCK_WAIT_SECONDS`` and only
  then load themselves, so a lost lock holder delays readers but never blocks them.
- **Redis down**: every Redis call is guarded; reads go to the loader (the database) and writes
  succeed. After a failure Redis is left alone for ``CACHE_REDIS_RETRY_SECONDS`` so each request
  does not pay a connection attempt, and invalidations that could not be delivered are retried
  when Redis answers again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import redis
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from prometheus_client import Counter

from config.metrics import Deferred, metrics_enabled
from config.redis_pools import redis_client

logger = logging.getLogger(__name__)

# --- Metrics (config/metrics.py): the hit rate per layer and data type, counted in memory and
# written once a second, so a cached read stays a dictionary lookup.
CACHE_HITS = Counter(
    "cache_hits_total", "Cache reads answered, by layer and data type.", ["layer", "data_type"], registry=None
)
CACHE_MISSES = Counter(
    "cache_misses_total",
    "Cache reads a layer could not answer, by layer and data type.",
    ["layer", "data_type"],
    registry=None,
)
CACHE_STAMPEDE_WAITS = Counter(
    "cache_stampede_waits_total",
    "Misses that waited for another caller's load of the same key instead of loading.",
    ["data_type"],
    registry=None,
)
CACHE_REDIS_ERRORS = Counter(
    "cache_redis_errors_total",
    "Redis calls of the cache that failed, by what the cache was doing.",
    ["operation"],
    registry=None,
)
_hits = Deferred(CACHE_HITS)
_misses = Deferred(CACHE_MISSES)
_stampede_waits = Deferred(CACHE_STAMPEDE_WAITS)
_redis_errors = Deferred(CACHE_REDIS_ERRORS)
# cached_locally's entries have no data type of their own.
LOCAL_DATA_TYPE = "local"

T = TypeVar("T")
Clock = Callable[[], float]
_MISSING = object()

# --- L1 -----------------------------------------------------------------------------------------


class LRUCache:
    """A bounded, thread-safe LRU map whose entries also expire; a full map drops its least recently used.

    ``generation`` grows on every removal so a caller can tell that an invalidation happened
    while it was loading (see ``set_if_generation``).
    """

    def __init__(self, *, max_entries: int, clock: Clock = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.clock = clock
        self.generation = 0
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """Keys from least to most recently used."""
        with self._lock:
            return list(self._entries)

    def get(self, key: str, default: Any = None) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return default
            expires, value = found
            if self.clock() >= expires:
                del self._entries[key]
                return default
            self._entries.move_to_end(key)
            return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        with self._lock:
            self._store(key, value, ttl)

    def set_if_generation(self, key: str, value: Any, ttl: float, generation: int) -> bool:
        """Store only if nothing was removed since ``generation`` was read."""
        with self._lock:
            if self.generation != generation:
                return False
            self._store(key, value, ttl)
            return True

    def _store(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        self._entries[key] = (self.clock() + ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self.generation += 1
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self.generation += 1
            self._entries.clear()


# --- Redis scripts ------------------------------------------------------------------------------

# KEYS: value, version. ARGV: expected version ("" = none), payload, ttl ms.
# Stores only if no invalidation bumped the version since the loader started.
_SET_IF_VERSION = """
local current = redis.call('GET', KEYS[2]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
# KEYS: lock. ARGV: token. Releases only a lock this caller still holds.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: value, version. ARGV: version ttl s.
_INVALIDATE = """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return 1
"""


@dataclass(frozen=True)
class CacheConfig:
    ttls: dict[str, float]
    l1_max_seconds: float
    l1_max_entries: int
    lock_seconds: float
    lock_wait_seconds: float
    redis_retry_seconds: float
    channel: str
    prefix: str
    enabled: bool

    @classmethod
    def from_settings(cls) -> CacheConfig:
        return cls(
            ttls=dict(settings.CACHE_TTLS),
            l1_max_seconds=float(settings.CACHE_L1_MAX_SECONDS),
            l1_max_entries=int(settings.CACHE_L1_MAX_ENTRIES),
            lock_seconds=float(settings.CACHE_LOCK_SECONDS),
            lock_wait_seconds=float(settings.CACHE_LOCK_WAIT_SECONDS),
            redis_retry_seconds=float(settings.CACHE_REDIS_RETRY_SECONDS),
            channel=str(settings.CACHE_INVALIDATION_CHANNEL),
            prefix=f"{settings.CACHES['default'].get('KEY_PREFIX', 'sim')}:an",
            enabled=bool(settings.CACHE_ENABLED),
        )


class CacheManager:
    """Cache-through reads over L1 and L2; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        config: CacheConfig | None = None,
        redis_factory: Callable[[], redis.Redis] = redis_client,
        clock: Clock = time.time,
        listen: bool = True,
    ) -> None:
        self.config = config or CacheConfig.from_settings()
        self.clock = clock
        self.l1 = LRUCache(max_entries=self.config.l1_max_entries, clock=clock)
        self._redis_factory = redis_factory
        self._listen = listen
        self._down_until = 0.0
        self._pending: set[str] = set()
        self._state_lock = threading.Lock()
        self._local_locks: dict[str, threading.Lock] = {}
        self._listener: _InvalidationListener | None = None
        self._listener_pid = 0
        self._metrics = metrics_enabled()

    # --- public API -------------------------------------------------------------------------

    def ttl(self, data_type: str) -> float:
        try:
            return float(self.config.ttls[data_type])
        except KeyError:
            raise ValueError(f"no TTL configured for cache data type {data_type!r} (CACHE_TTLS)") from None

    def cached(self, key: str, data_type: str, loader: Callable[[], T]) -> T:
        """The value under ``key``: L1, then L2, else ``loader()`` once per key across processes.

        Values must be JSON-shaped (what the API serves); L2 stores them as JSON.
        """
        ttl = self.ttl(data_type)
        if not self.config.enabled:
            return loader()
        self._ensure_listener()
        value = self.l1.get(key, _MISSING)
        if value is not _MISSING:
            if self._metrics:
                _hits("L1", data_type).inc()
            return value
        generation = self.l1.generation
        value = self._l2_get(key)
        if self._metrics:
            _misses("L1", data_type).inc()
            (_misses if value is _MISSING else _hits)("L2", data_type).inc()
        if value is not _MISSING:
            self._l1_store(key, value, ttl, generation)
            return value
        return self._load(key, ttl, loader, generation, data_type)

    def cached_locally(self, key: str, loader: Callable[[], T]) -> T:
        """``key`` from this process's L1, else ``loader()`` kept there (no Redis copy: for values
        whose loader reads a shared copy of its own, and that may be any immutable object).

        Like every L1 entry it lives at most ``CACHE_L1_MAX_SECONDS`` and ``invalidate(key)``
        drops it in every process; with caching disabled the loader runs every time.
        """
        if not self.config.enabled:
            return loader()
        self._ensure_listener()
        value = self.l1.get(key, _MISSING)
        if value is not _MISSING:
            if self._metrics:
                _hits("L1", LOCAL_DATA_TYPE).inc()
            return value
        if self._metrics:
            _misses("L1", LOCAL_DATA_TYPE).inc()
        generation = self.l1.generation
        value = loader()
        self.l1.set_if_generation(key, value, self.config.l1_max_seconds, generation)
        return value

    def local_get(self, key: str) -> Any:
        """``key``'s value when this process's L1 holds it, else None (also with caching
        disabled), counting nothing: for the cached reads' fast path (analytics/fast_reads.py),
        which counts its hits with ``local_hits_count`` once it answers, and otherwise hands the
        request to the view, whose ``cached`` or ``cached_locally`` count as always."""
        if not self.config.enabled:
            return None
        self._ensure_listener()
        value = self.l1.get(key, _MISSING)
        return None if value is _MISSING else value

    def local_hits_count(self, *data_types: str) -> None:
        """One L1 hit of each of ``data_types`` (``LOCAL_DATA_TYPE`` for ``cached_locally``'s
        entries), as ``cached`` and ``cached_locally`` count theirs."""
        if self._metrics:
            for data_type in data_types:
                _hits("L1", data_type).inc()

    def invalidate(self, *keys: str) -> None:
        """Drop ``keys`` everywhere now: this L1, L2, and (by message) every other process's L1."""
        for key in keys:
            self.l1.delete(key)
        if not self.config.enabled:
            return
        with self._state_lock:
            self._pending.update(keys)
        self._flush_pending()

    def invalidate_on_commit(self, *keys: str) -> None:
        """Invalidate once the current transaction commits (at once outside one), so no reader can
        reload the old rows after the invalidation."""
        transaction.on_commit(lambda: self.invalidate(*keys))

    @contextlib.contextmanager
    def single_flight(self, name: str) -> Iterator[bool]:
        """Hold the cross-process lock ``name`` for the block; yields False if another holder had
        it and did not release it within the wait (the caller then decides what to do)."""
        token = uuid.uuid4().hex
        acquired = self._try_lock(name, token)
        if acquired is None:  # Redis down: at least one per process
            with self._local_lock(name):
                yield True
            return
        waited_until = time.monotonic() + self.config.lock_wait_seconds
        while not acquired and time.monotonic() < waited_until:
            time.sleep(0.01)
            acquired = self._try_lock(name, token)
        try:
            yield bool(acquired)
        finally:
            if acquired:
                self._release(name, token)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    # --- internals --------------------------------------------------------------------------

    def _key(self, kind: str, key: str) -> str:
        return f"{self.config.prefix}:{kind}:{key}"

    def _l1_store(self, key: str, value: Any, ttl: float, generation: int) -> None:
        self.l1.set_if_generation(key, value, min(ttl, self.config.l1_max_seconds), generation)

    def _redis(self) -> redis.Redis | None:
        if time.monotonic() < self._down_until:
            return None
        return self._redis_factory()

    def _redis_failed(self, error: Exception, doing: str) -> None:
        self._down_until = time.monotonic() + self.config.redis_retry_seconds
        if self._metrics:
            _redis_errors(doing).inc()
        logger.warning("cache: Redis unavailable while %s (%s); using the database", doing, error)

    def _l2_get(self, key: str) -> Any:
        client = self._redis()
        if client is None:
            return _MISSING
        try:
            raw = client.get(self._key("v", key))
        except redis.RedisError as error:
            self._redis_failed(error, "reading")
            return _MISSING
        if self._pending:
            self._flush_pending()
        if raw is None:
            return _MISSING
        envelope = json.loads(raw)
        if self.clock() >= envelope["exp"]:
            return _MISSING
        return envelope["v"]

    def _load(self, key: str, ttl: float, loader: Callable[[], T], generation: int, data_type: str) -> T:
        client = self._redis()
        if client is None:
            return self._load_locally(key, ttl, loader, generation)
        token = uuid.uuid4().hex
        try:
            version = client.get(self._key("ver", key))
            acquired = self._try_lock(f"fill:{key}", token)
        except redis.RedisError as error:
            self._redis_failed(error, "locking")
            return self._load_locally(key, ttl, loader, generation)
        if acquired is None:
            return self._load_locally(key, ttl, loader, generation)
        if not acquired:
            # Someone else is computing it: wait for their answer rather than add to the load.
            if self._metrics:
                _stampede_waits(data_type).inc()
            deadline = time.monotonic() + self.config.lock_wait_seconds
            while time.monotonic() < deadline:
                time.sleep(0.01)
                value = self._l2_get(key)
                if value is not _MISSING:
                    self._l1_store(key, value, ttl, generation)
                    return value
            return self._load_locally(key, ttl, loader, generation)
        try:
            value = loader()
            payload = json.dumps({"exp": self.clock() + ttl, "v": value}, cls=DjangoJSONEncoder)
            try:
                client.eval(
                    _SET_IF_VERSION,
                    2,
                    self._key("v", key),
                    self._key("ver", key),
                    version.decode() if isinstance(version, bytes) else (version or ""),
                    payload,
                    max(1, int(ttl * 1000)),
                )
            except redis.RedisError as error:
                self._redis_failed(error, "storing")
            # What L1 keeps must equal what L2 holds (dates as strings), whichever layer answers.
            stored = json.loads(payload)["v"]
            self._l1_store(key, stored, ttl, generation)
            return stored
        finally:
            self._release(f"fill:{key}", token)

    def _load_locally(self, key: str, ttl: float, loader: Callable[[], T], generation: int) -> T:
        # Without Redis only this process's callers can be serialised; L1 still spares the database.
        with self._local_lock(key):
            value = self.l1.get(key, _MISSING)
            if value is not _MISSING:
                return value
            loaded = loader()
            stored = json.loads(json.dumps(loaded, cls=DjangoJSONEncoder))
            self._l1_store(key, stored, ttl, generation)
            return stored

    def _local_lock(self, name: str) -> threading.Lock:
        with self._state_lock:
            lock = self._local_locks.get(name)
            if lock is None:
                if len(self._local_locks) > 4 * self.config.l1_max_entries:
                    self._local_locks.clear()  # bounded; a dropped lock only weakens deduplication
                lock = self._local_locks[name] = threading.Lock()
            return lock

    def _try_lock(self, name: str, token: str) -> bool | None:
        """True if taken, False if someone holds it, None if Redis is unavailable."""
        client = self._redis()
        if client is None:
            return None
        try:
            return bool(
                client.set(self._key("lock", name), token, nx=True, px=int(self.config.lock_seconds * 1000))
            )
        except redis.RedisError as error:
            self._redis_failed(error, "locking")
            return None

    def _release(self, name: str, token: str) -> None:
        client = self._redis()
        if client is None:
            return
        try:
            client.eval(_RELEASE, 1, self._key("lock", name), token)
        except redis.RedisError as error:
            self._redis_failed(error, "unlocking")  # the lock's own expiry frees it

    def _flush_pending(self) -> None:
        with self._state_lock:
            keys, self._pending = self._pending, set()
        if not keys:
            return
        client = self._redis()
        try:
            if client is None:
                raise redis.ConnectionError("Redis marked down")
            version_ttl = int(max(self.config.ttls.values(), default=60) * 2) + 60
            pipe = client.pipeline(transaction=False)
            for key in sorted(keys):
                pipe.eval(_INVALIDATE, 2, self._key("v", key), self._key("ver", key), version_ttl)
                pipe.publish(self.config.channel, key)
            pipe.execute()
        except redis.RedisError as error:
            with self._state_lock:
                self._pending.update(keys)
            if not isinstance(error, redis.ConnectionError) or client is not None:
                self._redis_failed(error, "invalidating")

    def _ensure_listener(self) -> None:
        # Started lazily and again after a fork: threads do not survive into gunicorn's workers.
        if not self._listen or (self._listener is not None and self._listener_pid == os.getpid()):
            return
        with self._state_lock:
            if self._listener is not None and self._listener_pid == os.getpid():
                return
            self._listener = _InvalidationListener(self)
            self._listener_pid = os.getpid()
            self._listener.start()


class _InvalidationListener(threading.Thread):
    """Drops L1 entries named on the invalidation channel; after any gap it clears L1 entirely,
    since messages published while disconnected are gone."""

    def __init__(self, manager: CacheManager) -> None:
        super().__init__(name="cache-invalidation", daemon=True)
        self.manager = manager
        self.subscribed = threading.Event()
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        backoff = 0.1
        while not self._stop_event.is_set():
            pubsub = None
            try:
                pubsub = self.manager._redis_factory().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.manager.config.channel)
                self.manager.l1.clear()
                self.subscribed.set()
                backoff = 0.1
                while not self._stop_event.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message and message.get("type") == "message":
                        data = message["data"]
                        self.manager.l1.delete(data.decode() if isinstance(data, bytes) else str(data))
            except (redis.RedisError, OSError, ValueError) as error:
                self.subscribed.clear()
                logger.info("cache invalidation listener reconnecting: %s", error)
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        pubsub.close()


_manager: CacheManager | None = None
_manager_lock = threading.Lock()


def cache_manager() -> CacheManager:
    """The process's CacheManager, built from settings on first use."""
    global _manager
    with _manager_lock:
        if _manager is None:
            _manager = CacheManager()
        return _manager


def cache_manager_reset() -> None:
    """Forget the process's manager (tests change settings between cases)."""
    global _manager
    with _manager_lock:
        if _manager is not None:
            _manager.close()
        _manager = None


# --- Django's per-request cache close -----------------------------------------------------------

_DJANGO_REDIS_CACHE = "django_redis.cache.RedisCache"
_DJANGO_REDIS_DEFAULT_CLIENT = "django_redis.client.DefaultClient"


def django_cache_close_is_noop(*, caches: dict[str, dict[str, Any]], close_connection_default: bool) -> bool:
    """Whether closing every configured Django cache does nothing: each is django-redis'
    ``RedisCache`` with its ``DefaultClient``, whose ``close()`` disconnects only when
    ``CLOSE_CONNECTION`` (or ``DJANGO_REDIS_CLOSE_CONNECTION``, ``close_connection_default``)
    says so. Any other backend or client, or that flag set, is not recognised."""
    for alias in caches.values():
        options = alias.get("OPTIONS", {})
        if alias.get("BACKEND") != _DJANGO_REDIS_CACHE:
            return False
        if options.get("CLIENT_CLASS", _DJANGO_REDIS_DEFAULT_CLIENT) != _DJANGO_REDIS_DEFAULT_CLIENT:
            return False
        if options.get("CLOSE_CONNECTION", close_connection_default):
            return False
    return True


def django_cache_close_receiver_sync() -> bool:
    """Django's ``close_caches`` off ``request_finished`` while it provably does nothing, on it
    otherwise; answers whether it is off.

    Django connects it so caches holding per-request connections let them go; this project's one
    cache keeps its pooled connections (``django_cache_close_is_noop``), and the receiver still
    cost ~7 us of CPU on every request, a page's or the API's (``request_finished.send`` 11 -> 4 us
    without it: it fetches each cache from thread-local storage and calls through django-redis to a
    flag check). Any other configuration keeps the receiver, or connects it again when settings
    change to one (``django_cache_close_setting_changed``). Connecting it twice is a no-op (Django
    keys receivers by identity).
    """
    from django.core.cache import close_caches
    from django.core.signals import request_finished

    if django_cache_close_is_noop(
        caches=settings.CACHES,
        close_connection_default=getattr(settings, "DJANGO_REDIS_CLOSE_CONNECTION", False),
    ):
        request_finished.disconnect(close_caches)
        return True
    request_finished.connect(close_caches)
    return False


# The settings ``django_cache_close_is_noop`` reads.
_CACHE_CLOSE_SETTINGS = frozenset({"CACHES", "DJANGO_REDIS_CLOSE_CONNECTION"})


def django_cache_close_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: the check made at ``ready()`` made again when a test
    (``override_settings``) changes what it reads, so a cache whose close matters is closed at
    each request's end, and the receiver is off again once the settings are restored."""
    if setting in _CACHE_CLOSE_SETTINGS:
        django_cache_close_receiver_sync()
