"""Log lines that cannot flood: repeats counted once a minute, outages told twice."""

from __future__ import annotations

import logging

import pytest

from bot.infra.logs import Outage, Repeats


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_repeats_are_counted_and_summarised_once_a_window(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    repeats = Repeats(logging.getLogger("t.repeats"), window=60, clock=clock)
    with caplog.at_level(logging.WARNING, "t.repeats"):
        for _ in range(3500):  # a flood of forged deliveries
            repeats.warning("forged", "refused: bad signature")
            clock.now += 0.01  # 35 s in all
        repeats.warning("other", "refused: stale")
        clock.now = 61.0
        repeats.warning("forged", "refused: bad signature")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "refused: bad signature",
        "refused: stale",
        "… 3499 more like this in the last 60 s: forged",
        "refused: bad signature",
    ]


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    outage = Outage(logging.getLogger("t.outage"), "Redis", clock=clock)
    with caplog.at_level(logging.WARNING, "t.outage"):
        for _ in range(200):  # a loop meeting the outage ten times a second
            outage.failed(ConnectionError("refused"))
            clock.now += 0.1
        outage.ok()
        outage.ok()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("Redis unavailable (ConnectionError: refused)")
    assert lines[1] == "Redis is back after 20 s (200 failed attempts)"
    assert not any(r.exc_info for r in caplog.records)  # no traceback per attempt
