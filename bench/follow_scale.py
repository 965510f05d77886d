"""100,000 runs followed at once (issue 34, 3): bulk runs waiting for replies, followed
to their ends with Event Streams, hours of them in minutes. Prints one JSON line.

    .venv/bin/python bench/follow_scale.py [--runs 100000] [--longest-minutes 120]
        [--lost 0.01] [--trackers 1]

The bot's own ``Records`` and ``RunTracker`` on a real redis-server, on a simulated
clock (``RunTracker.now``): every run starts at once and Event Streams tells of it
(``execution.started``); each waits for its reply a random time up to
``--longest-minutes``, then ends at a random widget (``step.ended``, then
``execution.ended``). The events are handed to the tracker as the server hands them
once their signature is checked. ``--lost`` of the ends are never delivered (Twilio gave
up on them): the sweep's safety net must find those. Studio is a stand-in in the same
process that counts every read per run (the HTTP of a read is not in the CPU figure).

Figures: Studio reads per run (target ≤ 1.05), runs left unrecorded (target 0), the
sweep's time per tick against what was due (proportional to what is due, not to the
100,000 active), the process's RSS across the hours (flat), and CPU per run followed.
With ``--trackers 2`` two trackers share the sweep (one Redis): no run is read twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import redis_server  # bench/run.py (this script's folder is on the path)

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.run import Engagement, Step
from bot.runs import tracker as tracker_module
from bot.runs.records import ACTIVE, Records
from bot.runs.tracker import RunTracker
from bot.state.store import Durable, RedisStore

FLOW = "FW" + "b" * 32
WIDGETS = ("thanks", "no_reply", "opted_in", "escalated")
READ_RATE = 10.0  # STUDIO_READ_RATE_LIMIT a second: the sweep's budget is half of it
MINUTE = 60.0


class Clock:
    """Simulated epoch seconds: the wall clock plus the hours skipped."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.time() + self.skipped


class Studio:
    """Runs that end when the simulated clock says; every read counted per run."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.ends: dict[str, tuple[float, str]] = {}  # run SID -> (ends at, widget)
        self.reads: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()

    def _read(self, sid: str, kind: str) -> tuple[float, str]:
        self.reads[sid] += 1
        self.kinds[kind] += 1
        return self.ends[sid]

    async def fetch_engagement(self, flow_sid: str, sid: str, **_: Any) -> Engagement:
        ends, _widget = self._read(sid, "run")
        status = "ended" if self.clock() >= ends else "active"
        return Engagement(sid=sid, flow_sid=flow_sid, status=status)

    async def steps(self, flow_sid: str, sid: str, **_: Any) -> list[Step]:
        _ends, widget = self._read(sid, "steps")
        return [Step(sid="FT" + "0" * 32, name="sent", transitioned_from=widget)]

    async def context(self, flow_sid: str, sid: str, **_: Any) -> Any:
        self._read(sid, "context")
        return {"flow": {"data": {}}, "widgets": {"ask": {"inbound": {"Body": "3"}}}}


class Reads:
    """STUDIO_READ_RATE_LIMIT as the sweep sees it; every read is let through (the sweep
    keeps to its budget by spreading checks; what is counted is how many there are)."""

    per_second = READ_RATE

    async def pace(self, requests: int = 1, *, bulk: bool = False, queue: bool = False) -> bool:
        return True


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def in_chunks(calls: list[Any], size: int = 500) -> None:
    for first in range(0, len(calls), size):
        await asyncio.gather(*calls[first : first + size])


async def measure(url: str, runs: int, longest: float, lost: float, trackers: int) -> Any:
    random.seed(34)
    clock = Clock()
    studio = Studio(clock)
    state = Durable(RedisStore(url))
    sweepers: list[RunTracker] = []
    records = Records(state, follow_hours=48, first_check=lambda: sweepers[0].interval)
    for _ in range(trackers):
        sweeper = RunTracker(studio, records, reads=Reads(), events=True, now=clock)  # type: ignore[arg-type]
        sweepers.append(sweeper)
    caller = Caller("U0STARTER", "C0BENCH", "T0001")
    sids = [f"FN{i:032x}" for i in range(runs)]
    for sid in sids:
        ends = random.uniform(MINUTE, longest * MINUTE)  # noqa: S311
        studio.ends[sid] = (clock() + ends, random.choice(WIDGETS))  # noqa: S311
    created = time.perf_counter()
    await in_chunks(
        [
            records.started(sid, EngageCommand(FLOW, None, "+16175550000", "+1", {}), caller)
            for sid in sids
        ]
    )
    created = time.perf_counter() - created
    await sweepers[0].sweep()  # the interval, for 100,000 active runs
    # Event Streams: each run's execution.started, as the runs start
    await in_chunks([sweepers[0].event("execution.started", sid) for sid in sids])
    lost_ends = set(random.sample(sids, round(runs * lost)))
    pending = deque(sorted(sids, key=lambda sid: studio.ends[sid][0]))
    cpu_before, rss = cpu_seconds(), [rss_mib()]
    ticks: list[tuple[int, float]] = []  # (due, seconds) of each sweep
    horizon = longest * MINUTE + tracker_module.HEARD_SILENCE + 30 * MINUTE
    start = clock()
    while clock() - start < horizon:
        clock.skipped += MINUTE  # a minute passes
        now = clock()
        ended = []
        while pending and studio.ends[pending[0]][0] <= now:
            ended.append(pending.popleft())
        delivered = [sid for sid in ended if sid not in lost_ends]
        await in_chunks(
            [sweepers[0].event("step.ended", sid, widget=studio.ends[sid][1]) for sid in delivered]
        )
        await in_chunks(
            [
                sweepers[i % trackers].event("execution.ended", sid, when=studio.ends[sid][0])
                for i, sid in enumerate(delivered)
            ]
        )
        for tick in range(30):  # a minute of the sweep's 2-second ticks, each tracker's turn
            due = await records.state.use(lambda s, now=now: s.zcount(ACTIVE, float("-inf"), now))
            began = time.perf_counter()
            await sweepers[tick % trackers].sweep()
            ticks.append((due, time.perf_counter() - began))
            if not due:
                break
        if int(clock() - start) % 3600 < MINUTE:
            rss.append(rss_mib())
    cpu = cpu_seconds() - cpu_before
    active = await records.active_count()
    idle = [s for due, s in ticks if due == 0]
    busy = [s for due, s in ticks if due >= tracker_module.BATCH]
    reads = sum(studio.reads.values())
    return {
        "runs": runs,
        "trackers": trackers,
        "longest_wait_min": longest,
        "ends_lost": len(lost_ends),
        "studio_reads_per_run": round(reads / runs, 4),
        "reads_by_kind": dict(studio.kinds),
        "most_reads_of_one_run": max(studio.reads.values()),
        "left_unrecorded": active,
        "created_s": round(created, 1),
        "sweep_tick_ms_nothing_due": round(1000 * statistics.median(idle), 2) if idle else None,
        "sweep_tick_ms_a_batch_due": round(1000 * statistics.median(busy), 2) if busy else None,
        "sweep_ticks": len(ticks),
        "rss_mib_each_hour": [round(x, 1) for x in rss],
        "cpu_ms_per_run_followed": round(1000 * cpu / runs, 3),
        "simulated_hours": round((clock() - start) / 3600, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--longest-minutes", type=float, default=120.0)
    parser.add_argument("--lost", type=float, default=0.01, help="share of ends not delivered")
    parser.add_argument("--trackers", type=int, default=1)
    args = parser.parse_args()
    with redis_server() as url:
        figures = measure(url, args.runs, args.longest_minutes, args.lost, args.trackers)
        print(json.dumps(asyncio.run(figures)))


if __name__ == "__main__":
    main()
