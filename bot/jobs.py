"""The job queue bulk runs go through: Redis Streams with a consumer group, or memory.

Why Redis Streams: the bot already has Redis (``REDIS_URL``) and redis-py, and a
consumer group gives exactly what a bulk run needs and no more: several processes
share one queue, a job taken by a process that died stays *pending* and another
process claims it after ``idle`` (``XAUTOCLAIM``), and nothing is removed until it is
acknowledged (``XACK``). arq, saq or taskiq would add a dependency and a scheduler
for the same thing; none of them knows that a row which may have reached Twilio
must never run again, which the bulk run keeps in its own state anyway.

Without Redis, an ``asyncio.Queue`` in this process.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Protocol

from bot.errors import StateUnavailable
from bot.store import PREFIX, RedisStore

GROUP = "workers"
BLOCK_MS = 200  # under the store's socket timeout


class Jobs(Protocol):
    async def put(self, job: str) -> None: ...

    async def take(self) -> tuple[str, str] | None:
        """The next job (id, body), waiting briefly; None if there is none yet."""

    async def ack(self, job_id: str) -> None: ...

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        """Jobs taken by consumers silent for ``idle_seconds`` (a process that died)."""


class MemoryJobs:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._ids = itertools.count(1)

    async def put(self, job: str) -> None:
        self._queue.put_nowait((str(next(self._ids)), job))

    async def take(self) -> tuple[str, str] | None:
        try:
            return await asyncio.wait_for(self._queue.get(), BLOCK_MS / 1000)
        except TimeoutError:
            return None

    async def ack(self, job_id: str) -> None:
        return None

    async def reclaim(self, idle_seconds: float) -> list[tuple[str, str]]:
        return []  # one process: nothing to claim from another


class RedisJobs:
    """One stream (``name``) read by the consumer group ``workers``; ``consumer`` names
    this process in it."""

    def __init__(self, store: RedisStore, consumer: str, name: str) -> None:
        self._redis: Any = store._redis
        self._call = store._call
        self.consumer = consumer
        self.stream = PREFIX + name
        self._ready = False

    async def _group(self) -> None:
        if self._ready:
            return
        try:
            await self._call(self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True))
        except StateUnavailable as exc:
            if "BUSYGROUP" not in str(exc) and "ResponseError" not in str(exc):
                raise
        self._ready = True

    async def put(self, job: str) -> None:
        await self._group()
        await self._call(self._redis.xadd(self.stream, {"job": job}))

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
