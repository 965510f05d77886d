"""The loop behind every queue the bot works (bulk rows, due schedules): rounds that take
work while there is room, each piece run as a task in one of a fixed number of slots.

``Workers`` owns what both had by hand: the slots, waking when one frees, idling when
there is nothing to take, pausing while the shared state is out (said once when it
starts and once when it ends), logging a defect without flooding, and stopping with
the work in flight given time to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.domain.errors import StateUnavailable
from bot.infra.logs import Outage, Repeats

OUTAGE_PAUSE = 1.0  # between rounds while the shared state is down, or after a defect


class Workers:
    """``round`` takes what there is room for (``spawn`` each piece) and says whether it
    took any; with nothing taken and room left, ``idle`` is awaited before the next."""

    def __init__(
        self,
        name: str,
        *,
        slots: int,
        round: Callable[[], Awaitable[bool]],
        idle: Callable[[], Awaitable[object]],
        busy_wait: float,
        log: logging.Logger,
        outage: Outage,
    ) -> None:
        self.name = name
        self.stopping = False
        self.rounds = 0  # rounds finished, however they ended (what a test waits on)
        self._round = round
        self._idle = idle
        self._busy_wait = busy_wait  # the longest wait for a freed slot before looking again
        self._log = log
        self._outage = outage
        self._defects = Repeats(log)
        self._slots = asyncio.Semaphore(slots)
        self._freed = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def full(self) -> bool:
        """Every slot is taken."""
        return self._slots.locked()

    def start(self) -> None:
        """Work in the background (not once stopping)."""
        if self._loop is None and not self.stopping:
            self._loop = asyncio.get_running_loop().create_task(self._work(), name=self.name)

    async def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in a slot, waiting for one to free."""
        await self._slots.acquire()
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._slots.release()
            self._freed.set()

        task.add_done_callback(done)

    async def stop(self, grace: float = 10.0, *, cancel: bool = False) -> None:
        """Take no more; wait up to ``grace`` seconds for the work in flight (cancelling
        what is left with ``cancel``)."""
        self.stopping = True
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.wait({self._loop}, timeout=5)
            self._loop = None
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace)
            if cancel:
                for task in set(self._tasks):
                    task.cancel()

    async def _work(self) -> None:
        while not self.stopping:
            try:
                took = await self._round()
                if self.full:  # every slot busy: go on as soon as one is free
                    self._freed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._freed.wait(), self._busy_wait)
                elif not took:
                    await self._idle()
                self._outage.ok()
            except StateUnavailable as exc:
                self._outage.failed(exc)
                await asyncio.sleep(OUTAGE_PAUSE)
            except Exception:  # noqa: BLE001 - a defect: logged (without flooding), the loop goes on
                self._defects.log(
                    logging.ERROR, "round", f"{self.name} round failed", exc_info=True
                )
                await asyncio.sleep(OUTAGE_PAUSE)
            finally:
                self.rounds += 1
