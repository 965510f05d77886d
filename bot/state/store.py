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
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from bot.domain.errors import StateUnavailable
from bot.infra import metrics
from bot.infra.logs import Outage
from bot.state.admission import Admitted, CapRule, ConsentCheck
from bot.state.memory import MemoryStore
from bot.state.redis_store import PREFIX, RedisStore

__all__ = ["PREFIX", "BestEffort", "Durable", "MemoryStore", "RedisStore", "Store", "open_store"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
RETRY_SHARED_AFTER = 5.0  # seconds on memory alone after the shared store failed
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
        *,
        counts: Mapping[str, Mapping[str, int]] | None = None,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        """``hset`` and, in the same round trip (one atomic command on Redis), ``zadd``
        into each sorted set of ``indexes`` (its name -> members and scores) and move
        the numbers of each hash of ``counts`` (its name -> field -> delta; an answer's
        field, ``"\\x1f<name>\\x1f<value>"``, keeps at most ``ANSWERS_KEPT`` values per
        name, the rest counted as ``"\\x1f<name>\\x1f"``); the hash lives ``ttl``, each
        index and counter at least that long (never shortened). With ``only_if`` (fields
        and the values they must hold, "" for a field the hash lacks), nothing is
        written unless they all hold: whether it was written."""

    async def hgetall(self, key: str) -> dict[str, str]:
        """Every field of the hash ``key`` ({} if there is none)."""

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        """``hgetall`` of each key, in one round trip (a page of records)."""

    async def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        """Some fields of the hash ``key``, in order (None for each it lacks)."""

    async def hkeys(self, key: str) -> list[str]:
        """The fields of the hash ``key``."""

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
        self,
        uses: str,
        limit: int,
        window: float,
        claim: str | None,
        claim_ttl: float,
        consent: ConsentCheck | None = None,
    ) -> Admitted:
        """A start's admission in one atomic step (``bot.state.admission``): with
        ``consent``, an opted-out or capped contact is refused first; then a use counted
        in the moving window ``uses`` (at most ``limit`` in ``window`` seconds; ``limit``
        < 0: not counted) and, if the use fits, the key ``claim`` set unless it exists
        (held ``claim_ttl`` seconds), then the start's hold on the contact's caps. A start
        refused at any step counts, sets and holds nothing."""

    async def screen(
        self, optouts: str, contacts: Sequence[str], reach: str, caps: tuple[CapRule, ...]
    ) -> dict[int, str]:
        """Many contacts (their keys in ``optouts``; their starts at ``reach`` + key, ""
        for no cap) judged as ``admit`` judges one, nothing held: for those that may not
        be reached only, by position, "o" + its entry (opted out) or "c" + when it may
        be reached again (capped)."""

    async def unhold(self, reach: str, prefix: str) -> None:
        """Give back the newest hold beginning with ``prefix`` on the caps kept in ``reach``."""

    async def suppress(
        self, optouts: str, contact: str, entry: str, source: str, latest: int
    ) -> bool:
        """Add ``contact`` to the list ``optouts`` with ``entry`` unless it is there (never
        expires); kept among the ``latest`` additions (``optouts:latest``) and counted by
        ``source`` (``optouts:sources``). True if it was added."""

    async def unsuppress(self, optouts: str, contact: str) -> str | None:
        """Take ``contact`` off the list ``optouts``: its entry, or None if it was not on it."""

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

    async def use(
        self, operation: Callable[[Store], Awaitable[_T]], *, fallback: bool = True
    ) -> _T:
        """Run ``operation`` on the shared store, or on this process's memory if it fails;
        without ``fallback``, a failure raises ``StateUnavailable`` instead (state that
        this process's memory cannot stand in for: the suppression list)."""
        if not fallback and self.store is not self.memory:
            try:
                return await operation(self.store)
            except _OUTAGE as exc:
                if isinstance(exc, StateUnavailable):
                    raise
                raise StateUnavailable(type(exc).__name__) from exc
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
