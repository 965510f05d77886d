"""The state store on this process's memory (``bot.state.store.Store``): what a bot
without ``REDIS_URL`` keeps, and what ``BestEffort`` falls back to while Redis fails."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


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
