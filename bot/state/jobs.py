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

from bot.domain.errors import StateUnavailable
from bot.state.store import PREFIX, RedisStore, Store

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

    async def ack(self, job_id: str) -> None:
        """The job is done: never handed out again (and, for a queue made with
        ``delete_done``, gone from the stream, so a long-lived queue does not grow)."""

    async def keep(self, job_ids: list[str]) -> None:
        """Jobs still in hand: restart their idle time, so ``reclaim`` does not hand them
        to another process while a slow start is in flight."""

    async def expire(self, seconds: float) -> None:
        """Let the queue go ``seconds`` from now (its run is over)."""

    @property
    def later_index(self) -> str | None:
        """The store key (``Store.hset_indexed``'s index name) of the jobs kept for
        later, where one store write may add to it; None: not in the store."""

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

    async def due(self, now: float) -> int:
        """Jobs due by ``now`` and not yet done: due but not yet queued, queued, in hand."""


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

    async def due(self, now: float) -> int:
        return sum(1 for at in self._later.values() if at <= now) + self._queue.qsize()

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

    async def keep(self, job_ids: list[str]) -> None:
        return None  # one process: nothing reclaims

    async def expire(self, seconds: float) -> None:
        return None  # gone with the process

    @property
    def later_index(self) -> str | None:
        return None

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        return []  # one process: nothing to claim from another


class RedisJobs:
    """One stream (``name``) read by the consumer group ``workers``; ``consumer`` names
    this process in it. With ``delete_done``, an acknowledged job leaves the stream too
    (a queue that lives for ever: the schedules'); else the stream is kept whole (its
    length counts what was ever enqueued) until ``expire``."""

    def __init__(
        self, store: RedisStore, consumer: str, name: str, *, delete_done: bool = False
    ) -> None:
        self._redis: Any = store.redis
        self._call = store.call
        self._wake = self._redis.register_script(_WAKE)  # EVALSHA; the text once
        self.consumer = consumer
        self.stream = PREFIX + name
        self._later_name = name + ":later"  # the store's name for it (``later_index``)
        self.later_key = PREFIX + self._later_name
        self.delete_done = delete_done
        self._ready = False

    @property
    def later_index(self) -> str | None:
        return self._later_name

    async def _grouped(self, operation: Any) -> Any:
        """``operation`` on the group; a group gone (Redis restarted empty) is made again
        on the next call, instead of failing every call after."""
        try:
            return await self._call(operation)
        except StateUnavailable as exc:
            if "NOGROUP" in str(exc.__cause__ or ""):
                self._ready = False
            raise

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
        answer = await self._grouped(
            self._redis.xreadgroup(
                GROUP, self.consumer, {self.stream: ">"}, count=1, block=BLOCK_MS
            )
        )
        for _, entries in answer or []:
            for job_id, fields in entries:
                return str(job_id), str(fields.get("job", ""))
        return None

    async def ack(self, job_id: str) -> None:
        if not self.delete_done:
            await self._call(self._redis.xack(self.stream, GROUP, job_id))
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.stream, GROUP, job_id)
            pipe.xdel(self.stream, job_id)
            await self._call(pipe.execute())

    async def keep(self, job_ids: list[str]) -> None:
        if job_ids:
            await self._group()
            await self._call(
                self._redis.xclaim(self.stream, GROUP, self.consumer, 0, job_ids, justid=True)
            )

    async def expire(self, seconds: float) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.pexpire(self.stream, int(seconds * 1000))
            pipe.pexpire(self.later_key, int(seconds * 1000))
            await self._call(pipe.execute())

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        await self._group()
        answer = await self._grouped(
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
            self._wake(keys=[self.later_key, self.stream], args=[repr(now), str(limit)])
        )
        return int(moved)

    async def unlater(self, job: str) -> None:
        await self._call(self._redis.zrem(self.later_key, job))

    async def due(self, now: float) -> int:
        """Due in the sorted set, plus the stream's entries (with ``delete_done``, only the
        queued and those in hand; else every entry ever put)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(self.later_key, "-inf", repr(now))
            pipe.xlen(self.stream)
            later, queued = await self._call(pipe.execute())
        return int(later) + int(queued)

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


def jobs_for(store: Store, consumer: str, name: str, *, delete_done: bool = False) -> Jobs:
    """The queue ``name``: a Redis stream with a Redis store, else this process's memory."""
    if isinstance(store, RedisStore):
        return RedisJobs(store, consumer, name, delete_done=delete_done)
    return MemoryJobs()


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
