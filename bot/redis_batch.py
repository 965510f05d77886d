"""Redis commands issued at the same moment share one round trip.

Each start makes a few small Redis calls (its guardrails, then who started the run,
its record, the starter's recent runs), and each redis-py call costs a round trip and
a few hundred microseconds of this process's CPU: under load, that, not Redis, is the
ceiling. ``Batcher`` queues the commands its callers issue and, as soon as the event
loop comes round, sends everything queued as one pipeline. The pipeline is not a
transaction: each caller's commands run in order, and what must be atomic is one
command or one script. Each caller gets the answers to its own commands.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

MOST = 256  # callers in one round trip; more wait for the next


class Batcher:
    """One pipeline per moment over ``client`` (redis-py's asyncio client)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: list[tuple[Callable[[Any], object], asyncio.Future[list[Any]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    async def run(self, build: Callable[[Any], object]) -> list[Any]:
        """Queue the commands ``build`` adds to a pipeline; their answers, in order. A
        command Redis refused raises its error; a failed round trip raises for every
        caller in it. A caller cancelled before its round trip leaves sends nothing."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((build, answer))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        return await answer

    def _flush_soon(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MOST], self._pending[MOST:]
            task = asyncio.get_running_loop().create_task(self._flush(batch))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(
        self, batch: list[tuple[Callable[[Any], object], asyncio.Future[list[Any]]]]
    ) -> None:
        live = [(build, answer) for build, answer in batch if not answer.done()]
        if not live:
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                counts = []
                for build, _ in live:
                    before = len(pipe.command_stack)
                    build(pipe)
                    counts.append(len(pipe.command_stack) - before)
                results = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # shut down: no one waits for an answer
            for _, answer in live:
                answer.cancel()
            raise
        except Exception as exc:  # the round trip failed: every caller hears it
            for _, answer in live:
                if not answer.done():
                    answer.set_exception(exc)
            return
        start = 0
        for (_, answer), count in zip(live, counts, strict=True):
            mine = results[start : start + count]
            start += count
            if answer.done():
                continue
            refused = next((r for r in mine if isinstance(r, Exception)), None)
            if refused is not None:
                answer.set_exception(refused)
            else:
                answer.set_result(mine)

    async def aclose(self) -> None:
        """Let the round trips under way finish."""
        if self._flushes:
            await asyncio.wait(set(self._flushes))
