"""The job queue bulk runs go through: Redis Streams with a consumer group, or memory.

Why Redis Streams: the bot already has Redis (``REDIS_URL``) and redis-py, and a
consumer group gives exactly what a bulk run needs and no more: several processes
share one queue, a job taken by a process that died stays *pending* and another
process claims it after ``idle`` (``XAUTOCLAIM``), and nothing is removed until it is
acknowledged (``XACK``). arq, saq or taskiq would add a dependency and a scheduler
for the same thing; none of them knows that a row which may have reached Twilio
must never run again, which the bulk run keeps in its own state anyway.

A run's rows are enqueued in one transaction (``put_many``): all of them or none.

Jobs for later (``later``: a row waiting for its contact's morning, a scheduled start)
wait in a sorted set by due time; ``wake`` moves the due ones into the queue in one
step (a Lua script), so a job is never both waiting and queued, nor lost between.

Idle workers do not poll: they wait on a wake-up (``Wakeups``), a stream every
process reads with a blocking ``XREAD`` (memory: an ``asyncio.Event``), rung when a
run starts or resumes.

Without Redis, an ``asyncio.Queue`` in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping
from typing import Any, Protocol

from bot.errors import StateUnavailable
from bot.store import PREFIX, RedisStore, Store

GROUP = "workers"
BLOCK_MS = 200  # under the store's socket timeout
WAKE_STREAM = PREFIX + "bulk:wake"


class Jobs(Protocol):
    async def put_many(self, jobs: list[str]) -> None:
        """Enqueue ``jobs`` in one step: all of them, or (on an error) none."""

    async def size(self) -> int:
        """How many jobs were ever enqueued (taken or not)."""

    async def take(self) -> tuple[str, str] | None:
        """The next job (id, body), waiting briefly; None if there is none yet."""

    async def ack(self, job_id: str) -> None: ...

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        """Jobs taken by consumers silent for ``idle_seconds`` (a process that died)."""

    async def later(self, jobs: Mapping[str, float]) -> None:
        """Keep ``jobs`` (body -> epoch seconds) out of the queue until they are due."""

    async def wake(self, now: float, limit: int = 500) -> int:
        """Move up to ``limit`` jobs due by ``now`` into the queue (atomically); how many."""

    async def unlater(self, job: str) -> None:
        """Forget a job kept for later (it was cancelled)."""

    async def waiting(self) -> tuple[int, float | None]:
        """How many jobs wait for later, and the first one's due time."""


class MemoryJobs:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._ids = itertools.count(1)
        self._count = 0
        self._later: dict[str, float] = {}

    async def later(self, jobs: Mapping[str, float]) -> None:
        self._later.update(jobs)

    async def wake(self, now: float, limit: int = 500) -> int:
        due = sorted((at, job) for job, at in self._later.items() if at <= now)[:limit]
        for _, job in due:
            del self._later[job]
        await self.put_many([job for _, job in due])
        self._count -= len(due)  # counted when first put, not again
        return len(due)

    async def unlater(self, job: str) -> None:
        self._later.pop(job, None)

    async def waiting(self) -> tuple[int, float | None]:
        return len(self._later), min(self._later.values(), default=None)

    async def put_many(self, jobs: list[str]) -> None:
        for job in jobs:
            self._queue.put_nowait((str(next(self._ids)), job))
        self._count += len(jobs)

    async def size(self) -> int:
        return self._count

    async def take(self) -> tuple[str, str] | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def ack(self, job_id: str) -> None:
        return None

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        return []  # one process: nothing to claim from another


class RedisJobs:
    """One stream (``name``) read by the consumer group ``workers``; ``consumer`` names
    this process in it."""

    def __init__(self, store: RedisStore, consumer: str, name: str) -> None:
        self._redis: Any = store.redis
        self._call = store.call
        self.consumer = consumer
        self.stream = PREFIX + name
        self.later_key = self.stream + ":later"
        self._ready = False

    async def _group(self) -> None:
        if self._ready:
            return
        try:
            await self._call(self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True))
        except StateUnavailable as exc:
            if "BUSYGROUP" not in str(exc.__cause__ or ""):  # the group exists: fine
                raise
        self._ready = True

    async def put_many(self, jobs: list[str]) -> None:
        await self._group()
        async with self._redis.pipeline(transaction=True) as pipe:
            for job in jobs:
                pipe.xadd(self.stream, {"job": job})
            await self._call(pipe.execute())

    async def size(self) -> int:
        return int(await self._call(self._redis.xlen(self.stream)))

    async def take(self) -> tuple[str, str] | None:
        await self._group()
        answer = await self._call(
            self._redis.xreadgroup(
                GROUP, self.consumer, {self.stream: ">"}, count=1, block=BLOCK_MS
            )
        )
        for _, entries in answer or []:
            for job_id, fields in entries:
                return str(job_id), str(fields.get("job", ""))
        return None

    async def ack(self, job_id: str) -> None:
        await self._call(self._redis.xack(self.stream, GROUP, job_id))

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        await self._group()
        answer = await self._call(
            self._redis.xautoclaim(
                self.stream,
                GROUP,
                self.consumer,
                min_idle_time=int(idle_seconds * 1000),
                count=50,
            )
        )
        entries = answer[1] if answer else []
        return [(str(i), str(f.get("job", ""))) for i, f in entries if f]

    async def later(self, jobs: Mapping[str, float]) -> None:
        if jobs:
            await self._call(self._redis.zadd(self.later_key, dict(jobs)))

    async def wake(self, now: float, limit: int = 500) -> int:
        await self._group()
        moved = await self._call(
            self._redis.eval(_WAKE, 2, self.later_key, self.stream, repr(now), str(limit))
        )
        return int(moved)

    async def unlater(self, job: str) -> None:
        await self._call(self._redis.zrem(self.later_key, job))

    async def waiting(self) -> tuple[int, float | None]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.later_key)
            pipe.zrange(self.later_key, 0, 0, withscores=True)
            count, first = await self._call(pipe.execute())
        return int(count), (float(first[0][1]) if first else None)


# Due jobs leave the sorted set and enter the stream in one step (a script runs whole).
_WAKE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, job in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', job)
  redis.call('ZREM', KEYS[1], job)
end
return #due
"""


def jobs_for(store: Store, consumer: str, name: str) -> Jobs:
    """The queue ``name``: a Redis stream with a Redis store, else this process's memory."""
    return RedisJobs(store, consumer, name) if isinstance(store, RedisStore) else MemoryJobs()


class Wakeups:
    """Tells idle workers in every process that there is work (a run started or resumed),
    so that they wait on it instead of polling."""

    def __init__(self, store: Store) -> None:
        self._store = store if isinstance(store, RedisStore) else None
        self._event = asyncio.Event()
        self._last = "$"  # the newest wake-up this process has seen

    async def ring(self) -> None:
        """Wake every worker (best effort: a worker also wakes on its own in a while)."""
        self._event.set()
        if self._store is not None:
            with contextlib.suppress(StateUnavailable):
                await self._store.call(
                    self._store.redis.xadd(WAKE_STREAM, {"w": "1"}, maxlen=100, approximate=True)
                )

    async def wait(self, seconds: float) -> None:
        """Return when rung, or after ``seconds``. Raises ``StateUnavailable``."""
        if self._store is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), seconds)
            self._event.clear()
            return
        answer = await self._store.call(
            self._store.blocking.xread(
                {WAKE_STREAM: self._last}, count=1, block=int(seconds * 1000)
            )
        )
        for _, entries in answer or []:
            for entry_id, _fields in entries:
                self._last = str(entry_id)
