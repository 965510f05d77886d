"""Work after the ack: tasks the bot owns, so that shutdown can wait for them, and replies
that are delivered or logged, never lost silently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


LAST_WORD_SECONDS = 3.0  # the same, once the bot is being stopped


class Tasks:
    """The tasks started after acks; ``drain`` waits for them on shutdown."""

    def __init__(self) -> None:
        self.accepting = True
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, object], name: str) -> None:
        """Run ``work`` as a task owned here; a defect that escapes it is logged."""
        task = asyncio.get_running_loop().create_task(_logged(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Wait until no task is running (for tests and tools; it stops nothing)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, grace: float) -> None:
        """Stop taking new work, wait up to ``grace`` seconds for the work in flight (and
        whatever it starts meanwhile), then cancel what is left: an engagement cut short
        tells its user what is known."""
        self.accepting = False
        if not self._tasks:
            return
        log.info("shutting down: waiting up to %.0f s for %d task(s)", grace, len(self._tasks))
        deadline = time.monotonic() + grace
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        if still_running := set(self._tasks):
            log.warning("grace period over: %d task(s) cut short", len(still_running))
            for task in still_running:
                task.cancel()
            await asyncio.wait(still_running, timeout=LAST_WORD_SECONDS + 1)


class Loop:
    """One background task this process runs until ``stop`` (following cards, the sweep
    of run records): started once, cancelled on shutdown with what it holds left in the
    state store for the next process."""

    def __init__(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self.body = body
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.body(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=5)
            self._task = None


async def _logged(work: Coroutine[Any, Any, object], name: str) -> None:
    try:
        await work
    except Exception:
        log.exception("task %s failed", name)
