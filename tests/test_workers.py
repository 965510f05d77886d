"""The one loop behind bulk rows and due schedules (bot.infra.workers)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.domain.errors import StateUnavailable
from bot.infra import workers as workers_module
from bot.infra.logs import Outage
from bot.infra.workers import Workers

log = logging.getLogger("tests.workers")


def make(round_: object, *, slots: int = 2, idle: object = None) -> Workers:
    async def rest() -> None:
        await asyncio.sleep(0.001)

    return Workers(
        "test",
        slots=slots,
        round=round_,  # type: ignore[arg-type]
        idle=idle or rest,  # type: ignore[arg-type]
        busy_wait=0.05,
        log=log,
        outage=Outage(log, "test: shared state"),
    )


async def test_no_more_pieces_run_at_once_than_there_are_slots() -> None:
    running, most, done = 0, 0, asyncio.Event()
    left = 6

    async def piece() -> None:
        nonlocal running, most, left
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        left -= 1
        if left == 0:
            done.set()

    queued = 6

    async def round_() -> bool:
        nonlocal queued
        took = False
        while queued and not pool.full:
            queued -= 1
            await pool.spawn(piece())
            took = True
        return took

    pool = make(round_, slots=2)
    pool.start()
    await asyncio.wait_for(done.wait(), 5)
    await pool.stop()
    assert most == 2


async def test_with_nothing_to_take_it_idles_between_rounds() -> None:
    rounds, idles, enough = 0, 0, asyncio.Event()

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        return False

    async def idle() -> None:
        nonlocal idles
        idles += 1
        if idles == 3:
            enough.set()
        await asyncio.sleep(0)

    pool = make(round_, idle=idle)
    pool.start()
    await asyncio.wait_for(enough.wait(), 5)
    await pool.stop()
    assert rounds >= idles >= 3


async def test_an_outage_is_said_once_and_a_defect_does_not_stop_the_loop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers_module, "OUTAGE_PAUSE", 0.001)
    caplog.set_level(logging.INFO, logger="tests.workers")
    calls, recovered = 0, asyncio.Event()

    async def round_() -> bool:
        nonlocal calls
        calls += 1
        if calls <= 5:
            raise StateUnavailable("ConnectionError")
        if calls == 6:
            raise RuntimeError("a bug")
        recovered.set()
        return False

    pool = make(round_)
    pool.start()
    await asyncio.wait_for(recovered.wait(), 5)
    await pool.stop()
    down = [r for r in caplog.records if "unavailable" in r.getMessage().lower()]
    assert len(down) == 1  # said when it started, not each of the five rounds
    assert any("test round failed" in r.getMessage() for r in caplog.records)
    assert calls >= 7  # it went on after the defect


async def test_stop_lets_the_work_in_flight_finish_and_takes_no_more() -> None:
    finished, started = asyncio.Event(), asyncio.Event()
    rounds = 0

    async def piece() -> None:
        started.set()
        await asyncio.sleep(0.05)
        finished.set()

    async def round_() -> bool:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            await pool.spawn(piece())
            return True
        return False

    pool = make(round_)
    pool.start()
    await asyncio.wait_for(started.wait(), 5)
    await pool.stop(grace=5)
    assert finished.is_set()
    assert pool.stopping
