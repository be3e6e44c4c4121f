"""The stream limits every web process shares through Redis: open connections per API key (406),
symbols per account (405) and failed auths per key and per client address (402).

Each counts in Redis so that a client cannot multiply a limit by the number of web processes, and
each counter expires (or is refreshed by the process holding it), so a process that dies locks
nobody out. When Redis is unavailable each falls back to this process's own counts, never to
refusing everyone: the connection and symbol limits then count this process's connections only,
and the failed-auth limit is off.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis

from config.redis_pools import ASYNC_REDIS_FAILURES

logger = logging.getLogger(__name__)


class ConnectionRegistry:
    """Open stream connections per API key (or user), shared by every web process (error 406).

    A sorted set per identity holds one member per connection, scored by an expiry that each
    process refreshes for its live connections; a process that dies leaves members that expire
    instead of locking the key out. When Redis is unavailable only this process's connections
    are counted (degraded, never refusing because Redis is down).
    """

    def __init__(self, client: aioredis.Redis, *, ttl: float, prefix: str) -> None:
        self.client = client
        self.ttl = ttl
        self.prefix = prefix
        self.local: dict[str, set[str]] = {}

    def _key(self, identity: str) -> str:
        return f"{self.prefix}:conns:{identity}"

    async def acquire(self, identity: str, token: str, limit: int) -> bool:
        key = self._key(identity)
        try:
            now = time.time()
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zadd(key, {token: now + self.ttl})
                pipe.zcard(key)
                pipe.expire(key, int(self.ttl) + 1)
                _, _, count, _ = await pipe.execute()
            if count > limit:
                await self.client.zrem(key, token)
                return False
        except ASYNC_REDIS_FAILURES:
            logger.warning("stream connection limit: Redis unavailable, counting this process only")
            if len(self.local.get(identity, ())) >= limit:
                return False
        self.local.setdefault(identity, set()).add(token)
        return True

    async def release(self, identity: str, token: str) -> None:
        tokens = self.local.get(identity)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self.local[identity]
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            await self.client.zrem(self._key(identity), token)

    async def refresh(self) -> None:
        if not self.local:
            return
        expiry = time.time() + self.ttl
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            async with self.client.pipeline(transaction=False) as pipe:
                for identity, tokens in self.local.items():
                    pipe.zadd(self._key(identity), dict.fromkeys(tokens, expiry), xx=True)
                    pipe.expire(self._key(identity), int(self.ttl) + 1)
                await pipe.execute()


# KEYS[1]: an account's symbol counts, a hash of connection token -> "count:expiry in ms".
# ARGV: token, its new count, the account's budget, now (ms), the token's expiry (ms), the hash's TTL
# (ms). Returns 1 and records the count if the account's live connections stay within the budget,
# else 0 and changes nothing. Fields of connections whose process died (not refreshed) expire.
_CLAIM_SYMBOLS = """
local total = 0
local now = tonumber(ARGV[4])
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  if fields[i] ~= ARGV[1] then
    local count, expiry = string.match(fields[i + 1], '^(%d+):(%d+)$')
    if count and tonumber(expiry) > now then
      total = total + tonumber(count)
    else
      redis.call('HDEL', KEYS[1], fields[i])
    end
  end
end
local wanted = tonumber(ARGV[2])
if wanted > 0 and total + wanted > tonumber(ARGV[3]) then
  return 0
end
if wanted > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""


class SymbolBudget:
    """Symbols subscribed per account, summed over all of its market-data connections (all its
    keys, the sessions acting on it) on every web process: STREAM_MAX_SYMBOLS_PER_ACCOUNT (405 beyond).

    Each connection's count is a field of the account's hash, with an expiry its process refreshes
    (as ConnectionRegistry does), so a crashed process's counts lapse. When Redis is unavailable
    only this process's connections are counted.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limit: int,
        ttl: float,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.limit = limit
        self.ttl = ttl
        self.prefix = prefix
        self.clock = clock
        # account -> connection token -> symbols, for this process's connections.
        self.local: dict[str, dict[str, int]] = {}

    def key(self, owner: str) -> str:
        return f"{self.prefix}:symbols:{owner}"

    async def claim(self, owner: str, token: str, count: int) -> bool:
        """Set the connection's count to ``count`` if the owner stays within the budget."""
        now_ms = int(self.clock() * 1000)
        ttl_ms = int(self.ttl * 1000)
        try:
            allowed = await self.client.eval(
                _CLAIM_SYMBOLS,
                1,
                self.key(owner),
                token,
                count,
                self.limit,
                now_ms,
                now_ms + ttl_ms,
                ttl_ms + 1000,
            )
        except ASYNC_REDIS_FAILURES:
            logger.warning("stream symbol budget: Redis unavailable, counting this process only")
            mine = self.local.get(owner, {})
            allowed = count == 0 or sum(mine.values()) - mine.get(token, 0) + count <= self.limit
        if not allowed:
            return False
        if count:
            self.local.setdefault(owner, {})[token] = count
        else:
            self._forget(owner, token)
        return True

    async def release(self, owner: str, token: str) -> None:
        if token not in self.local.get(owner, {}):
            return
        self._forget(owner, token)
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            await self.client.hdel(self.key(owner), token)

    def _forget(self, owner: str, token: str) -> None:
        counts = self.local.get(owner)
        if counts is not None:
            counts.pop(token, None)
            if not counts:
                del self.local[owner]

    async def refresh(self) -> None:
        if not self.local:
            return
        expiry = int((self.clock() + self.ttl) * 1000)
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            async with self.client.pipeline(transaction=False) as pipe:
                for owner, counts in self.local.items():
                    pipe.hset(self.key(owner), mapping={t: f"{n}:{expiry}" for t, n in counts.items()})
                    pipe.pexpire(self.key(owner), int(self.ttl * 1000) + 1000)
                await pipe.execute()


# Failed auths from one client address before it is refused without a lookup. Far above the
# per-key limit: behind a NAT or an untrusted proxy one address is many people, and a bot with a
# wrong secret is already stopped by its key's own count.
AUTH_FAILURES_PER_ADDRESS_MAX = 50

# KEYS[1]: a failure counter. ARGV[1]: the window in milliseconds. Returns the count.
# INCR, then give the counter its window when it has none: a new counter, or one left without an
# expiry (by an earlier version, or a crash between two commands). One script, so no counter is
# ever left behind without its expiry. Redis 6.2 has no EXPIRE ... NX, which this stands for.
_COUNT_FAILURE = """
local count = redis.call('INCR', KEYS[1])
if count == 1 or redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return count
"""


class AuthFailureLimiter:
    """Failed stream auths per client address and per existing key, in a fixed window.

    alpaca-py reconnects after a failed auth; a bot with a wrong secret would otherwise verify
    keys in a loop. Past a limit the server answers 402 without checking and closes. A key is
    limited after ``limit`` failures within ``window_s``; an address only after
    ``address_limit`` (AUTH_FAILURES_PER_ADDRESS_MAX, or ``limit`` if higher). Failures with a key
    id nobody owns count against the address alone, so guessing ids neither fills Redis nor locks
    anyone out. Each counter expires ``window_s`` after its first failure. A Redis outage disables
    the limit rather than locking everyone out.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        limit: int,
        window_s: float,
        prefix: str,
        address_limit: int = AUTH_FAILURES_PER_ADDRESS_MAX,
    ) -> None:
        self.client = client
        self.limit = limit
        self.address_limit = max(address_limit, limit)
        self.window_ms = max(1, int(window_s * 1000))
        self.prefix = prefix

    def address_key(self, address: str) -> str:
        return f"{self.prefix}:authfail:ip:{address}"

    def key_id_key(self, key_id: str) -> str:
        return f"{self.prefix}:authfail:key:{key_id}"

    async def blocked(self, *, address: str, key_id: str | None) -> bool:
        keys = [self.address_key(address)]
        if key_id:
            keys.append(self.key_id_key(key_id))
        try:
            counts = await self.client.mget(keys)
        except ASYNC_REDIS_FAILURES:
            return False
        limits = (self.address_limit, self.limit)
        return any(
            count is not None and int(count) >= limit for count, limit in zip(counts, limits, strict=False)
        )

    async def failed(self, *, address: str, key_id: str | None) -> None:
        """Count one failure for the address and, when it names an existing key, for that key."""
        keys = [self.address_key(address)]
        if key_id:
            keys.append(self.key_id_key(key_id))
        with contextlib.suppress(*ASYNC_REDIS_FAILURES):
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.eval(_COUNT_FAILURE, 1, key, self.window_ms)
                await pipe.execute()
