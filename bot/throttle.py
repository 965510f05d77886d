"""How often: per-user limits, account-wide pacing of Studio requests, the
duplicate window and parked confirmations, in state that can be shared.

State lives behind one small interface, ``Store``: in this process's memory by
default, in Redis when ``REDIS_URL`` is set so that several processes share it.
If Redis fails, each call falls back to this process's memory (per-process
limits, logged), never to an unlimited bot and never to a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypeVar

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from bot.command import EngageCommand

log = logging.getLogger(__name__)

_T = TypeVar("_T")
PARKED_SECONDS = 15 * 60  # how long a "start again?" button stays valid
RETRY_SHARED_AFTER = 5.0  # seconds on memory alone after the shared store failed
_PREFIX = "studio-engage:"


STARTER_SECONDS = 30 * 24 * 3600  # how long the bot remembers who started a run


class StateUnavailable(Exception):
    """The shared store did not answer (what redis-py raised is named in ``str()``)."""


class Store(Protocol):
    """Expiring keys plus a ``limits`` storage: all the state the guardrails need.

    A shared store raises ``StateUnavailable`` (or ``limits``' ``StorageError``) when
    it cannot answer; memory never fails.
    """

    limiter: Storage

    async def add(self, key: str, value: str, ttl: float) -> bool:
        """Set ``key`` unless it exists (atomically); True if it was set."""

    async def set(self, key: str, value: str, ttl: float) -> None:
        """Set ``key``, replacing what it held."""

    async def get(self, key: str) -> str | None:
        """The value of ``key``, or None."""

    async def pop(self, key: str) -> str | None:
        """Remove ``key`` and return its value (atomically)."""

    async def aclose(self) -> None: ...


class MemoryStore:
    """This process's memory."""

    def __init__(self) -> None:
        self.limiter: Storage = MemoryStorage()
        self._items: dict[str, tuple[str, float]] = {}
        self._next_purge = 0.0

    def _live(self, key: str) -> str | None:
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
        return self._live(key)

    async def pop(self, key: str) -> str | None:
        value = self._live(key)
        self._items.pop(key, None)
        return value

    async def aclose(self) -> None:
        return None


class RedisStore:
    """A Redis server, shared by every process that points at it."""

    def __init__(self, url: str, *, timeout: float = 0.5, verify_tls: bool = True) -> None:
        # Imported only when REDIS_URL is set: it takes a tenth of the start-up.
        from redis import RedisError
        from redis.asyncio import Redis

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if not verify_tls and url.startswith("rediss://"):
            # Encrypted, but the server's certificate is not checked (Heroku Redis
            # presents a self-signed one): REDIS_TLS_VERIFY=false.
            options["ssl_cert_reqs"] = "none"
        self._redis = Redis.from_url(url, decode_responses=True, **options)
        self.limiter: Storage = RedisStorage(
            "async+" + url,
            implementation="redispy",
            wrap_exceptions=True,
            key_prefix="studio-engage",
            **options,
        )

    async def _call(self, operation: Awaitable[_T]) -> _T:
        """Await a redis-py call; what redis-py raises becomes ``StateUnavailable``."""
        try:
            return await operation
        except self._errors as exc:
            raise StateUnavailable(type(exc).__name__) from None

    async def add(self, key: str, value: str, ttl: float) -> bool:
        px = max(1, int(ttl * 1000))
        return bool(await self._call(self._redis.set(f"{_PREFIX}{key}", value, nx=True, px=px)))

    async def set(self, key: str, value: str, ttl: float) -> None:
        px = max(1, int(ttl * 1000))
        await self._call(self._redis.set(f"{_PREFIX}{key}", value, px=px))

    async def get(self, key: str) -> str | None:
        value = await self._call(self._redis.get(f"{_PREFIX}{key}"))
        return str(value) if value is not None else None

    async def pop(self, key: str) -> str | None:
        value = await self._call(self._redis.getdel(f"{_PREFIX}{key}"))
        return str(value) if value is not None else None

    async def aclose(self) -> None:
        await self._redis.aclose()


@dataclass(frozen=True)
class Parked:
    """A command waiting for its author's click, and the active run it would end first."""

    user_id: str
    command: EngageCommand
    active_sid: str | None = None


_OUTAGE = (StorageError, StateUnavailable, OSError, TimeoutError)


async def _hit(store: Store, item: limits.RateLimitItem, *ids: str, cost: int = 1) -> float:
    """Count ``cost`` uses in ``item``'s moving window: 0 if they fit, else seconds until
    they do."""
    limiter = MovingWindowRateLimiter(store.limiter)
    if await limiter.hit(item, *ids, cost=cost):
        return 0.0
    stats = await limiter.get_window_stats(item, *ids)
    return max(1e-6, stats.reset_time - time.time())


class Throttle:
    """The "how often" guardrails over a ``Store``, with memory as the fallback."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        user_rate: str = "10/minute",
        studio_rate: str = "20/second",
        max_wait: float = 10.0,
        duplicate_window: float = 60.0,
    ) -> None:
        self._memory = MemoryStore()
        self._store: Store = store or self._memory
        self.user_rate = user_rate
        self._user_item = limits.parse(user_rate)
        self._studio_item = limits.parse(studio_rate)
        self.max_wait = max_wait
        self.duplicate_window = duplicate_window
        self._degraded = False
        self._next_try = 0.0  # while degraded, when to try the shared store again

    async def aclose(self) -> None:
        await self._store.aclose()

    async def _use(self, operation: Callable[[Store], Awaitable[_T]]) -> _T:
        """Run ``operation`` on the shared store, or on this process's memory if it fails."""
        if self._store is not self._memory and time.monotonic() >= self._next_try:
            try:
                result = await operation(self._store)
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
        return await operation(self._memory)

    async def user_wait(self, user_id: str, kind: str = "user") -> float:
        """Count one command for ``user_id``: 0 if within USER_RATE_LIMIT, else seconds to wait.

        ``kind`` keeps separate counts: starts (``user``) and reads of runs (``read``).
        """

        wait = await self._use(lambda store: _hit(store, self._user_item, kind, user_id))
        return max(1.0, wait) if wait else 0.0

    async def pace(self, requests: int = 1) -> bool:
        """Wait for ``requests`` slots under STUDIO_RATE_LIMIT (account-wide); False after
        ``max_wait``."""
        deadline = time.monotonic() + self.max_wait
        cost = max(1, min(requests, self._studio_item.amount))

        while True:
            wait = await self._use(
                lambda store: _hit(store, self._studio_item, "studio", cost=cost)
            )
            if not wait:
                return True
            wait = max(0.01, wait)
            if time.monotonic() + wait > deadline:
                return False
            await asyncio.sleep(min(wait, 0.25))

    @staticmethod
    def _duplicate_key(user_id: str, command: EngageCommand) -> str:
        return f"dup:{user_id}:{command.flow_sid}:{command.to}"

    async def claim(self, user_id: str, command: EngageCommand) -> bool:
        """Mark this user/flow/contact as just started; False if it already was, recently."""
        if self.duplicate_window <= 0:
            return True
        key = self._duplicate_key(user_id, command)
        return await self._use(lambda s: s.add(key, str(time.time()), self.duplicate_window))

    async def release(self, user_id: str, command: EngageCommand) -> None:
        """Forget a claim whose engagement certainly did not start, so a retry is not a duplicate."""
        if self.duplicate_window > 0:
            key = self._duplicate_key(user_id, command)
            await self._use(lambda s: s.pop(key))

    async def park(
        self, user_id: str, command: EngageCommand, active_sid: str | None = None
    ) -> str:
        """Keep ``command`` for a confirmation button; returns the button's token."""
        token = secrets.token_urlsafe(12)
        value = json.dumps({"user": user_id, "command": asdict(command), "active": active_sid})
        await self._use(lambda s: s.add(f"parked:{token}", value, PARKED_SECONDS))
        return token

    async def remember_starter(self, sid: str, user_id: str) -> None:
        """Note who started run ``sid`` (the End rule and masking ask later)."""
        await self._use(lambda s: s.set(f"starter:{sid}", user_id, STARTER_SECONDS))

    async def starter_of(self, sid: str) -> str | None:
        """Who started run ``sid`` from this bot, or None if unknown (or long ago)."""
        return await self._use(lambda s: s.get(f"starter:{sid}"))

    async def unpark(self, token: str) -> Parked | None:
        """The parked command (once), or None if expired, used or unknown."""
        value = await self._use(lambda s: s.pop(f"parked:{token}"))
        if value is None:
            return None
        data = json.loads(value)
        return Parked(data["user"], EngageCommand(**data["command"]), data.get("active"))
