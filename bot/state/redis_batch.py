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

MOST = 256  # callers in one pipeline; a larger burst is split into several, sent together


class Batcher:
    """One pipeline per moment over ``client`` (redis-py's asyncio client)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pending: list[tuple[Callable[[Any], object], asyncio.Future[list[Any]]]] = []
        self._flushes: set[asyncio.Task[None]] = set()
        self._sent: set[asyncio.Future[list[Any]]] = set()  # answers whose commands are out

    async def run(self, build: Callable[[Any], object]) -> list[Any]:
        """Queue the commands ``build`` adds to a pipeline; their answers, in order. A
        command Redis refused, or a ``build`` that raised, raises for its caller alone;
        a failed round trip raises for every caller in it. A caller cancelled before its
        round trip leaves sends nothing. One cancelled while its commands are on their
        way still gets their answers (a ``GETDEL``'s value is not lost): the
        cancellation takes effect at its next ``await``."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((build, answer))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            if answer not in self._sent and not answer.done():  # not sent: nothing will run
                answer.cancel()
                raise
            result = await answer  # sent: its answers are this caller's, whatever comes
            task = asyncio.current_task()
            if task is not None:
                task.cancel()  # the cancellation goes on at the caller's next await
            return result

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
            await self._send(live)
        finally:
            self._sent.difference_update(answer for _, answer in live)

    async def _send(
        self, live: list[tuple[Callable[[Any], object], asyncio.Future[list[Any]]]]
    ) -> None:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                counts = []
                for build, answer in live:
                    before = len(pipe.command_stack)
                    try:
                        build(pipe)
                        self._sent.add(answer)
                    except Exception as exc:  # noqa: BLE001 - this caller's defect, not the batch's
                        del pipe.command_stack[before:]
                        answer.set_exception(exc)
                    counts.append(len(pipe.command_stack) - before)
                results = await pipe.execute(raise_on_error=False) if pipe.command_stack else []
        except asyncio.CancelledError:  # shut down: no one waits for an answer
            for _, answer in live:
                answer.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - the round trip failed: every caller hears it
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
