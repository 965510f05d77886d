"""The state store on this process's memory (``bot.state.store.Store``): what a bot
without ``REDIS_URL`` keeps, and what ``BestEffort`` falls back to while Redis fails."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot.state.admission import Admitted, CapRule, ConsentCheck, cap_again
from bot.state.scripts import ANSWERS_KEPT

NEVER = float("inf")  # the suppression list does not expire


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
        *,
        counts: Mapping[str, Mapping[str, int]] | None = None,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        for field, value in (only_if or {}).items():
            if (await self.hget(key, field) or "") != value:
                return False
        if fields:
            await self.hset(key, fields, ttl)
        for index, members in indexes.items():
            expires = self._items.get(index, (None, 0.0))[1]
            await self.zadd(index, members, ttl)  # an index only lives longer, never shorter
            if expires > time.monotonic() + ttl:
                self._items[index] = (self._items[index][0], expires)
        for counter, moves in (counts or {}).items():
            self._count(counter, moves, ttl)
        return True

    def _count(self, counter: str, moves: Mapping[str, int], ttl: float) -> None:
        """``scripts.PUT``'s counters: numbers moved, an answer's values bounded."""
        current = self._live(counter)
        numbers = current if isinstance(current, dict) else {}
        for name, delta in moves.items():
            field = name
            if field.startswith("\x1f") and field not in numbers:
                answer = field[1:].split("\x1f", 1)[0]
                distinct = "\x1e" + answer
                if int(numbers.get(distinct, "0")) >= ANSWERS_KEPT:
                    field = f"\x1f{answer}\x1f"
                else:
                    numbers[distinct] = str(int(numbers.get(distinct, "0")) + 1)
            numbers[field] = str(int(numbers.get(field, "0")) + delta)
        expires = max(self._items.get(counter, (None, 0.0))[1], time.monotonic() + ttl)
        self._items[counter] = (numbers, expires)

    async def hgetall(self, key: str) -> dict[str, str]:
        value = self._live(key)
        return dict(value) if isinstance(value, dict) else {}

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        return [await self.hgetall(key) for key in keys]

    async def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        value = self._live(key)
        found = value if isinstance(value, dict) else {}
        return [found.get(field) for field in fields]

    async def hkeys(self, key: str) -> list[str]:
        value = self._live(key)
        return list(value) if isinstance(value, dict) else []

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
        self,
        uses: str,
        limit: int,
        window: float,
        claim: str | None,
        claim_ttl: float,
        consent: ConsentCheck | None = None,
    ) -> Admitted:
        now = time.time()
        if consent is not None:
            if (entry := self._optouts(consent.optouts).get(consent.contact)) is not None:
                return Admitted(optout=entry)
            if again := self._again(consent.reach, consent.caps, now):
                return Admitted(again=again)
        if limit >= 0:
            kept = [t for t in self._live(uses) or [] if t > now - window]
            if len(kept) >= limit:
                wait = (kept[0] + window - now) if kept else window
                self._items[uses] = (kept, time.monotonic() + window)
                return Admitted(wait=max(1e-6, wait))
            self._items[uses] = ([*kept, now], time.monotonic() + window)
        claimed = claim is None or await self.add(claim, repr(now), claim_ttl)
        if claimed and consent is not None and consent.caps and consent.hold:
            await self.zadd(consent.reach, {consent.hold: now}, consent.longest)
        return Admitted(claimed=claimed)

    def _again(self, reach: str, caps: tuple[CapRule, ...], now: float) -> float:
        if not caps or not reach:
            return 0.0
        return cap_again(caps, list(self._zset(reach).items()), now)

    def _optouts(self, key: str) -> dict[str, str]:
        value = self._live(key)
        return value if isinstance(value, dict) else {}

    async def screen(
        self, optouts: str, contacts: Sequence[str], reach: str, caps: tuple[CapRule, ...]
    ) -> dict[int, str]:
        now, listed, out = time.time(), self._optouts(optouts), {}
        for i, contact in enumerate(contacts):
            if (entry := listed.get(contact)) is not None:
                out[i] = "o" + entry
            elif reach and (again := self._again(reach + contact, caps, now)):
                out[i] = f"c{again:.6f}"
        return out

    async def unhold(self, reach: str, prefix: str) -> None:
        held = sorted(((t, m) for m, t in self._zset(reach).items() if m.startswith(prefix)))
        if held:
            await self.zrem(reach, held[-1][1])

    async def suppress(
        self, optouts: str, contact: str, entry: str, source: str, latest: int
    ) -> bool:
        listed = self._optouts(optouts)
        if contact in listed:
            return False
        listed[contact] = entry
        self._items[optouts] = (listed, NEVER)
        newest = {**self._zset(optouts + ":latest"), contact: time.time()}
        kept = sorted(newest.items(), key=lambda item: item[1])[-latest:]
        self._items[optouts + ":latest"] = (dict(kept), NEVER)
        counts = self._optouts(optouts + ":sources")
        counts[source] = str(int(counts.get(source, "0")) + 1)
        self._items[optouts + ":sources"] = (counts, NEVER)
        return True

    async def unsuppress(self, optouts: str, contact: str) -> str | None:
        entry = self._optouts(optouts).pop(contact, None)
        if entry is None:
            return None
        self._zset(optouts + ":latest").pop(contact, None)
        counts = self._optouts(optouts + ":sources")
        source = str(json.loads(entry).get("source", ""))
        if source in counts:
            counts[source] = str(int(counts[source]) - 1)
            if int(counts[source]) <= 0:
                del counts[source]
        return entry

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
