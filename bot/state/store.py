"""State that can be shared between processes, and how much each use may rely on it.

One small interface, ``Store``: this process's memory (``MemoryStore``) or a Redis
server every process points at (``RedisStore``, when ``REDIS_URL`` is set). Two
ways to use it, chosen by what the state is for:

- ``BestEffort``: limits and the duplicate window. If the shared store fails, the
  operation runs on this process's memory instead (per-process limits, logged
  once), and the shared store is tried again after ``RETRY_SHARED_AFTER`` seconds.
  Never a crash, never unlimited.
- ``Durable``: what must not be lost or split between processes (a pending
  confirmation, who started a run and where its card is). If the shared store
  fails, the operation raises ``StateUnavailable``: the caller tells the user,
  and nothing is sent on state that may be wrong.

Without Redis both use the same memory, which ends with the process.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from bot.domain.errors import StateUnavailable
from bot.infra import metrics
from bot.infra.logs import Outage
from bot.state.redis_batch import Batcher

log = logging.getLogger(__name__)

_T = TypeVar("_T")
PREFIX = "studio-engage:"
BLOCKING_SECONDS = 10.0  # the longest blocking read (a worker waiting for work)
RETRY_SHARED_AFTER = 5.0  # seconds on memory alone after the shared store failed
POOL_SIZE = 50  # connections to Redis per process; a call waits for a free one...
POOL_WAIT = 2.0  # ...at most this long (seconds), then it counts as an outage
_OUTAGE = (StateUnavailable, OSError, TimeoutError)


class Store(Protocol):
    """Expiring keys, hashes and sorted sets, and the two atomic steps the guardrails
    take (``admit``, ``reserve``).

    A shared store raises ``StateUnavailable`` when it cannot answer; memory never fails.
    """

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Set ``key`` unless it exists (an atomic claim); True if it was set."""

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Set ``key``, replacing what it held."""

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""

    async def pop(self, key: str) -> str | None:
        """Remove ``key`` and return its value (atomically)."""

    async def hset(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        """Set ``fields`` of the hash ``key`` and (re)start its time to live."""

    async def hset_indexed(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl: float,
        indexes: Mapping[str, Mapping[str, float]],
    ) -> None:
        """``hset`` and, in the same round trip (one atomic command on Redis), ``zadd``
        into each sorted set of ``indexes`` (its name -> members and scores); the hash
        lives ``ttl``, each index at least that long (never shortened)."""

    async def hgetall(self, key: str) -> dict[str, str]:
        """Every field of the hash ``key`` ({} if there is none)."""

    async def hget(self, key: str, field: str) -> str | None:
        """One field of the hash ``key``, or None."""

    async def hlen(self, key: str) -> int:
        """How many fields the hash ``key`` has."""

    async def hdel(self, key: str, field: str) -> None:
        """Remove ``field`` from the hash ``key``."""

    async def delete(self, key: str) -> None:
        """Remove ``key``, whatever it holds."""

    async def delete_if(self, key: str, value: str) -> bool:
        """Remove ``key`` only if it holds ``value`` (atomically: a lease is released only
        by its holder); True if it was removed."""

    async def admit(
        self, uses: str, limit: int, window: float, claim: str | None, claim_ttl: float
    ) -> tuple[float, bool]:
        """A use counted in the moving window ``uses`` (at most ``limit`` in ``window``
        seconds; ``limit`` < 0: not counted) and, if the use fits, the key ``claim`` set
        unless it exists (held ``claim_ttl`` seconds), in one atomic step: (0, claimed)
        when the use fits, else (seconds until it would, False), nothing counted or set."""

    async def reserve(self, key: str, interval: float, horizon: float) -> float:
        """A send time on the schedule ``key`` (GCRA with no burst: one send every
        ``interval`` seconds, atomically across processes): the seconds to wait for it,
        reserved; or, if it is more than ``horizon`` seconds away, minus that wait,
        nothing reserved."""

    async def zadd(self, key: str, members: Mapping[str, float], ttl: float) -> None:
        """Add (or re-score) ``members`` of the sorted set ``key``; (re)start its TTL."""

    async def zrange(
        self, key: str, low: float, high: float, limit: int | None = None
    ) -> list[str]:
        """The members scored ``low``..``high`` (inclusive), lowest first, at most ``limit``."""

    async def zclaim(self, key: str, member: str, due_by: float, then: float) -> bool:
        """Move ``member``'s score from at most ``due_by`` to ``then``, atomically:
        whether this caller did (another process may have taken it first)."""

    async def zrem(self, key: str, *members: str) -> None:
        """Remove ``members`` from the sorted set ``key``."""

    async def zcard(self, key: str) -> int:
        """How many members the sorted set ``key`` has."""

    async def zcount(self, key: str, low: float, high: float) -> int:
        """How many members of ``key`` score from ``low`` to ``high`` (read, not listed)."""

    async def zremrange(self, key: str, low: float, high: float) -> None:
        """Remove the members scored ``low``..``high``."""

    async def aclose(self) -> None: ...


class MemoryStore:
    """This process's memory."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[Any, float]] = {}
        self._next_purge = 0.0

    def _live(self, key: str) -> Any:
        now = time.monotonic()
        if now >= self._next_purge:  # forget expired keys, at most once a second
            self._items = {k: v for k, v in self._items.items() if v[1] > now}
            self._next_purge = now + 1.0
        item = self._items.get(key)
        return item[0] if item and item[1] > now else None

    async def add(self, key: str, value: str, ttl: float) -> bool:
        if self._live(key) is not None:
            return False
        self._items[key] = (value, time.monotonic() + ttl)
        return True

    async def set(self, key: str, value: str, ttl: float) -> None:
        self._items[key] = (value, time.monotonic() + ttl)

    async def get(self, key: str) -> str | None:
        value = self._live(key)
        return value if isinstance(value, str) else None

    async def pop(self, key: str) -> str | None:
        value = await self.get(key)
        self._items.pop(key, None)
        return value

    async def hset(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        current = self._live(key)
        merged = {**(current if isinstance(current, dict) else {}), **fields}
        self._items[key] = (merged, time.monotonic() + ttl)

    async def hset_indexed(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl: float,
        indexes: Mapping[str, Mapping[str, float]],
    ) -> None:
        await self.hset(key, fields, ttl)
        for index, members in indexes.items():
            expires = self._items.get(index, (None, 0.0))[1]
            await self.zadd(index, members, ttl)  # an index only lives longer, never shorter
            if expires > time.monotonic() + ttl:
                self._items[index] = (self._items[index][0], expires)

    async def hgetall(self, key: str) -> dict[str, str]:
        value = self._live(key)
        return dict(value) if isinstance(value, dict) else {}

    async def hget(self, key: str, field: str) -> str | None:
        value = self._live(key)
        return value.get(field) if isinstance(value, dict) else None

    async def hlen(self, key: str) -> int:
        value = self._live(key)
        return len(value) if isinstance(value, dict) else 0

    async def hdel(self, key: str, field: str) -> None:
        value = self._live(key)
        if isinstance(value, dict):
            value.pop(field, None)

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def delete_if(self, key: str, value: str) -> bool:
        if self._live(key) != value:
            return False
        self._items.pop(key, None)
        return True

    async def admit(
        self, uses: str, limit: int, window: float, claim: str | None, claim_ttl: float
    ) -> tuple[float, bool]:
        now = time.time()
        if limit >= 0:
            kept = [t for t in self._live(uses) or [] if t > now - window]
            if len(kept) >= limit:
                wait = (kept[0] + window - now) if kept else window
                self._items[uses] = (kept, time.monotonic() + window)
                return max(1e-6, wait), False
            self._items[uses] = ([*kept, now], time.monotonic() + window)
        claimed = claim is None or await self.add(claim, repr(now), claim_ttl)
        return 0.0, claimed

    async def reserve(self, key: str, interval: float, horizon: float) -> float:
        now = time.monotonic()
        stored = self._live(key)
        tat = max(float(stored) if isinstance(stored, str) else 0.0, now)
        wait = tat - now
        if wait > horizon:
            return -wait
        self._items[key] = (repr(tat + interval), now + wait + interval + 60)
        return wait

    def _zset(self, key: str) -> dict[str, float]:
        value = self._live(key)
        return value if isinstance(value, dict) else {}

    async def zadd(self, key: str, members: Mapping[str, float], ttl: float) -> None:
        merged = {**self._zset(key), **{m: float(v) for m, v in members.items()}}
        self._items[key] = (merged, time.monotonic() + ttl)

    async def zrange(
        self, key: str, low: float, high: float, limit: int | None = None
    ) -> list[str]:
        found = sorted(
            ((score, member) for member, score in self._zset(key).items() if low <= score <= high)
        )
        members = [member for _, member in found]
        return members[:limit] if limit is not None else members

    async def zclaim(self, key: str, member: str, due_by: float, then: float) -> bool:
        scores = self._zset(key)
        if member not in scores or scores[member] > due_by:
            return False
        scores[member] = then
        return True

    async def zrem(self, key: str, *members: str) -> None:
        zset = self._zset(key)
        for member in members:
            zset.pop(member, None)

    async def zcard(self, key: str) -> int:
        return len(self._zset(key))

    async def zcount(self, key: str, low: float, high: float) -> int:
        return sum(1 for score in self._zset(key).values() if low <= score <= high)

    async def zremrange(self, key: str, low: float, high: float) -> None:
        zset = self._zset(key)
        for member in [m for m, score in zset.items() if low <= score <= high]:
            del zset[member]

    async def aclose(self) -> None:
        return None


class RedisStore:
    """A Redis server, shared by every process that points at it."""

    def __init__(self, url: str, *, timeout: float = 0.5, verify_tls: bool = True) -> None:
        # Imported only when REDIS_URL is set: it takes a tenth of the start-up.
        from redis import RedisError
        from redis.asyncio import BlockingConnectionPool, Redis

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if not verify_tls and url.startswith("rediss://"):
            # Encrypted, but the server's certificate is not checked (Heroku Redis
            # presents a self-signed one): REDIS_TLS_VERIFY=false.
            options["ssl_cert_reqs"] = "none"

        # A burst waits for a free connection: redis-py's default pool refuses the
        # 101st call at once (MaxConnectionsError), which would read as an outage.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT, decode_responses=True, **options
        )
        self._redis = Redis(connection_pool=pool)
        # Each Lua script registered once, by its SHA1: calls send EVALSHA, and the
        # script's text goes only when Redis does not have it yet (``_script``).
        self._scripts = {
            text: self._redis.register_script(text)
            for text in (_PUT, _DELETE_IF, _ADMIT, _ZCLAIM, _RESERVE)
        }
        # The store's own commands: those issued at one moment share a round trip.
        self._batch = Batcher(self._redis)
        # Blocking reads (a worker waiting for work) on connections of their own, whose
        # timeout outlasts the wait; made at first use.
        self._url, self._options = url, options
        self._blocking: Any = None

    @property
    def redis(self) -> Any:
        """The redis-py client (for the job queue's streams)."""
        return self._redis

    @property
    def blocking(self) -> Any:
        """A redis-py client for blocking reads of up to ``BLOCKING_SECONDS``."""
        if self._blocking is None:
            from redis.asyncio import Redis

            options = {**self._options, "socket_timeout": BLOCKING_SECONDS + 5}
            self._blocking = Redis.from_url(self._url, decode_responses=True, **options)
        return self._blocking

    async def call(self, operation: Awaitable[_T]) -> _T:
        """Await a redis-py call; what redis-py raises becomes ``StateUnavailable``, with
        redis-py's exception as its cause (``BUSYGROUP`` and the like stay readable)."""
        try:
            return await operation
        except self._errors as exc:
            raise StateUnavailable(type(exc).__name__) from exc

    async def _one(self, build: Callable[[Any], object]) -> Any:
        """The answer to the (first) command ``build`` queues, in the moment's round trip."""
        answers = await self.call(self._batch.run(build))
        return answers[0]

    async def _script(self, text: str, keys: Sequence[str], *args: str) -> Any:
        """Run a registered Lua script by its SHA1 (EVALSHA) in the moment's round trip;
        its text is sent (EVAL, which also keeps it) only when Redis answers NOSCRIPT:
        the first use since Redis started, or after a SCRIPT FLUSH. NOSCRIPT means the
        script did not run, so sending it again runs it once."""
        from redis.exceptions import NoScriptError

        sha = self._scripts[text].sha
        try:
            return await self._one(lambda p: p.evalsha(sha, len(keys), *keys, *args))
        except StateUnavailable as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        return await self._one(lambda p: p.eval(text, len(keys), *keys, *args))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        return bool(await self._one(lambda p: p.set(PREFIX + key, value, nx=True, px=_ms(ttl))))

    async def set(self, key: str, value: str, ttl: float) -> None:
        await self._one(lambda p: p.set(PREFIX + key, value, px=_ms(ttl)))

    async def get(self, key: str) -> str | None:
        value = await self._one(lambda p: p.get(PREFIX + key))
        return str(value) if value is not None else None

    async def pop(self, key: str) -> str | None:
        value = await self._one(lambda p: p.getdel(PREFIX + key))
        return str(value) if value is not None else None

    async def hset(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        await self.hset_indexed(key, fields, ttl, {})

    async def hset_indexed(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl: float,
        indexes: Mapping[str, Mapping[str, float]],
    ) -> None:
        size = len(fields) + sum(len(members) for members in indexes.values())
        if len(fields) > 0 and size <= PUT_MOST:  # one command: a record and its indexes
            keys, args = [PREFIX + key], [str(_ms(ttl)), str(len(fields))]
            args += [part for pair in fields.items() for part in pair]
            for index, members in indexes.items():
                keys.append(PREFIX + index)
                args.append(str(len(members)))
                args += [part for m, score in members.items() for part in (repr(score), m)]
            await self._script(_PUT, keys, *args)
            return

        def build(pipe: Any) -> None:  # a large hash (a bulk run's rows): plain commands
            if fields:
                pipe.hset(PREFIX + key, mapping=dict[Any, Any](fields))
                pipe.pexpire(PREFIX + key, _ms(ttl))
            for index, members in indexes.items():
                pipe.zadd(PREFIX + index, dict(members))
                pipe.pexpire(PREFIX + index, _ms(ttl))

        await self.call(self._batch.run(build))

    async def hgetall(self, key: str) -> dict[str, str]:
        value: dict[Any, Any] = await self._one(lambda p: p.hgetall(PREFIX + key))
        return {str(k): str(v) for k, v in value.items()}

    async def hget(self, key: str, field: str) -> str | None:
        value: Any = await self._one(lambda p: p.hget(PREFIX + key, field))
        return str(value) if value is not None else None

    async def hlen(self, key: str) -> int:
        value: Any = await self._one(lambda p: p.hlen(PREFIX + key))
        return int(value)

    async def hdel(self, key: str, field: str) -> None:
        await self._one(lambda p: p.hdel(PREFIX + key, field))

    async def delete(self, key: str) -> None:
        await self._one(lambda p: p.delete(PREFIX + key))

    async def delete_if(self, key: str, value: str) -> bool:
        removed = await self._script(_DELETE_IF, [PREFIX + key], value)
        return bool(removed)

    async def admit(
        self, uses: str, limit: int, window: float, claim: str | None, claim_ttl: float
    ) -> tuple[float, bool]:
        keys = [PREFIX + uses, PREFIX + claim if claim else ""]
        member = secrets.token_hex(6)
        wait, claimed = await self._script(
            _ADMIT, keys, str(limit), repr(window), str(_ms(claim_ttl)), member
        )
        return float(wait), bool(int(claimed))

    async def reserve(self, key: str, interval: float, horizon: float) -> float:
        answer = await self._script(_RESERVE, [PREFIX + key], repr(interval), repr(horizon))
        return float(answer)

    async def zadd(self, key: str, members: Mapping[str, float], ttl: float) -> None:
        await self.call(
            self._batch.run(
                lambda p: p.zadd(PREFIX + key, dict(members)).pexpire(PREFIX + key, _ms(ttl))
            )
        )

    async def zrange(
        self, key: str, low: float, high: float, limit: int | None = None
    ) -> list[str]:
        start, num = (0, limit) if limit is not None else (None, None)
        found: list[Any] = await self._one(
            lambda p: p.zrangebyscore(PREFIX + key, low, high, start=start, num=num)
        )
        return [str(member) for member in found]

    async def zclaim(self, key: str, member: str, due_by: float, then: float) -> bool:
        claimed = await self._script(_ZCLAIM, [PREFIX + key], member, repr(due_by), repr(then))
        return bool(claimed)

    async def zrem(self, key: str, *members: str) -> None:
        if members:
            await self._one(lambda p: p.zrem(PREFIX + key, *members))

    async def zcard(self, key: str) -> int:
        return int(await self._one(lambda p: p.zcard(PREFIX + key)))

    async def zcount(self, key: str, low: float, high: float) -> int:
        return int(await self._one(lambda p: p.zcount(PREFIX + key, low, high)))

    async def zremrange(self, key: str, low: float, high: float) -> None:
        await self._one(lambda p: p.zremrangebyscore(PREFIX + key, low, high))

    async def aclose(self) -> None:
        await self._batch.aclose()
        await self._redis.aclose(close_connection_pool=True)  # the pool is ours
        if self._blocking is not None:
            await self._blocking.aclose()


# Compare-and-delete in one step (Redis runs a script atomically).
_DELETE_IF = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


# A use in a moving window (a sorted set of use times) and the duplicate claim, in one
# round trip, by Redis's own clock: the use is counted only if it fits, the claim is set
# only then. Numbers go back as strings (a Lua number would be truncated).
_ADMIT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
  if redis.call('ZCARD', KEYS[1]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    local wait = window
    if oldest[2] then wait = tonumber(oldest[2]) + window - t end
    return {string.format('%.6f', math.max(wait, 0.000001)), 0}
  end
  redis.call('ZADD', KEYS[1], t, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
local claimed = 1
if KEYS[2] ~= '' then
  if not redis.call('SET', KEYS[2], string.format('%.6f', t), 'NX', 'PX', ARGV[3]) then
    claimed = 0
  end
end
return {'0', claimed}
"""


# A hash and the sorted sets that index it, as one command: the hash with the TTL
# ARGV[1], each index with at least that (an index shared by records of longer lives
# keeps the longest, so a short-lived record never expires a long-lived one's entry)
# (a client's cost is per command, and a start writes a record with two indexes).
# ARGV: the TTL in ms, the field count n, n field/value pairs, then for each sorted set
# KEYS[2..] a member count m and m score/member pairs.
_PUT = """
local n = tonumber(ARGV[2])
local fields = {}
for i = 3, 2 + 2 * n do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local at = 3 + 2 * n
for k = 2, #KEYS do
  local m = tonumber(ARGV[at])
  at = at + 1
  for i = 1, m do
    redis.call('ZADD', KEYS[k], ARGV[at], ARGV[at + 1])
    at = at + 2
  end
  if redis.call('PTTL', KEYS[k]) < tonumber(ARGV[1]) then
    redis.call('PEXPIRE', KEYS[k], ARGV[1])  -- an index only lives longer, never shorter
  end
end
return 1
"""
PUT_MOST = 1000  # fields and members in one _PUT (Lua's unpack takes a few thousand)


# A member's score moved from "due" to its next time, only if it is still due: of two
# processes that read the same due member, one claims it.
_ZCLAIM = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


# The next send time of a schedule, by Redis's own clock (one clock for every process):
# GCRA with no burst. Numbers go back as strings (a Lua number would be truncated).
_RESERVE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < t then tat = t end
local wait = tat - t
if wait > tonumber(ARGV[2]) then return tostring(-wait) end
local keep = math.ceil((wait + tonumber(ARGV[1])) * 1000) + 60000
redis.call('SET', KEYS[1], string.format('%.6f', tat + tonumber(ARGV[1])), 'PX', keep)
return string.format('%.6f', wait)
"""


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def open_store(url: str | None, *, verify_tls: bool = True) -> Store:
    """Redis at ``url`` when one is given, else this process's memory."""
    return RedisStore(url, verify_tls=verify_tls) if url else MemoryStore()


class BestEffort:
    """Use a shared store, falling back to this process's memory while it fails."""

    def __init__(self, store: Store | None = None) -> None:
        self.memory = MemoryStore()
        self.store: Store = store or self.memory
        self._degraded = False
        self._next_try = 0.0  # while degraded, when to try the shared store again

    async def use(self, operation: Callable[[Store], Awaitable[_T]]) -> _T:
        """Run ``operation`` on the shared store, or on this process's memory if it fails."""
        if self.store is not self.memory and time.monotonic() >= self._next_try:
            try:
                result = await operation(self.store)
            except _OUTAGE as exc:
                if not self._degraded:
                    log.warning(
                        "shared state unavailable (%s): limits are per process until it is back",
                        type(exc).__name__,
                    )
                self._degraded = True
                # Do not make every command wait for a timeout: try again in a while.
                self._next_try = time.monotonic() + RETRY_SHARED_AFTER
            else:
                if self._degraded:
                    log.warning("shared state is back")
                self._degraded = False
                return result
        if self.store is not self.memory:
            metrics.STORE_FALLBACKS.inc()  # answered from this process's memory
        return await operation(self.memory)


DURABLE_OUTAGE = Outage(log, "shared state (durable: confirmations, runs, bulk runs)")


class Durable:
    """Use a store that must answer: a failure raises ``StateUnavailable``, logged."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def use(self, operation: Callable[[Store], Awaitable[_T]]) -> _T:
        try:
            result = await operation(self.store)
        except _OUTAGE as exc:
            DURABLE_OUTAGE.failed(exc)  # logged when the outage starts, and when it ends
            if isinstance(exc, StateUnavailable):
                raise
            raise StateUnavailable(type(exc).__name__) from exc
        if DURABLE_OUTAGE.down:
            DURABLE_OUTAGE.ok()
        return result
