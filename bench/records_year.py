"""A year of run records (issue 34, 2): a million records (about 2,700 a day over 365
days, five flows, most ended with an answer) written through the records' own code to
a real redis-server, then, each in a fresh process: `/engage report` over 7 and over 90
days, the Home tab's counts (7 days, five flows), and the 90 days' `--csv` written
page by page, with that process's peak RSS. Prints one JSON line; bench/run.py puts it
in the table.

    .venv/bin/python bench/records_year.py [--records 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import redis_server  # bench/run.py (this script's folder is on the path)

from bot.runs.records import Records, RunRecord
from bot.slack.report import Reports
from bot.state.store import Durable, RedisStore

FLOWS = [f"FW{n:032x}" for n in range(1, 6)]
DAY = 86400.0
CHUNK = 2000


def records(url: str) -> Records:
    return Records(Durable(RedisStore(url)), days=366)


async def populate(url: str, total: int) -> dict[str, float]:
    """``total`` records over the last 365 days, started and ended by Records itself."""
    kept = records(url)
    now, rng = time.time(), random.Random(7)  # noqa: S311 - a repeatable mix, not a secret
    started = time.perf_counter()
    for first in range(0, total, CHUNK):
        batch = []
        for n in range(first, min(total, first + CHUNK)):
            at = now - 365 * DAY * (n / total)
            batch.append(
                RunRecord(
                    id=f"FN{n:032x}",
                    sid=f"FN{n:032x}",
                    flow_sid=FLOWS[n % len(FLOWS)],
                    contact="+1 617-•••-1212",
                    contact_key=f"{n:032x}",
                    starter="U0BENCH",
                    channel="C0BENCH",
                    started_at=at,
                    counted=True,
                )
            )
        await asyncio.gather(*(kept._put(r) for r in batch))
        ends = [
            kept.finish(
                r,
                "ended" if rng.random() < 0.9 else "failed",
                widget=rng.choice(["thanks", "bye", "no_reply"]),
                ended_at=r.started_at + 60,
                answers={"score": str(rng.randint(1, 5))} if rng.random() < 0.6 else {},
            )
            for r in batch
            if rng.random() < 0.97
        ]
        await asyncio.gather(*ends)
    seconds = time.perf_counter() - started
    store = kept.state.store
    assert isinstance(store, RedisStore)
    info = await store.redis.info("memory")
    await store.aclose()
    return {"populate_s": round(seconds, 1), "redis_mib": info["used_memory"] / 2**20}


async def measure(url: str, what: str) -> dict[str, float]:
    """One figure, in this (fresh) process."""
    kept = records(url)
    reports = Reports(kept, None, policy=None, tasks=None, slack=None, names={})  # type: ignore[arg-type]
    now = time.time()
    started = time.perf_counter()
    figure: dict[str, float] = {}
    if what in ("report_7d", "report_90d"):
        days = 7 if what == "report_7d" else 90
        summary = await kept.summary(await kept.flows(), now - days * DAY, now)
        figure["runs"] = summary.total
    elif what == "home":
        stats = await reports.stats(FLOWS)
        figure["runs"] = sum(s.total for s in stats.values())
    elif what == "csv_90d":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "report.csv"
            figure["runs"] = await reports._write_csv(path, set(FLOWS), now - 90 * DAY, now)
            figure["csv_mib"] = path.stat().st_size / 2**20
    figure["seconds"] = round(time.perf_counter() - started, 3)
    figure["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    store = kept.state.store
    assert isinstance(store, RedisStore)
    await store.aclose()
    return figure


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # a child: one figure
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.url, args.measure))))
        return
    with redis_server() as url:
        report: dict[str, object] = {"records": args.records}
        report.update(asyncio.run(populate(url, args.records)))
        for what in ("report_7d", "report_90d", "home", "csv_90d"):
            out = subprocess.run(
                [sys.executable, __file__, "--measure", what, "--url", url],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            report[what] = json.loads(out)
        print(json.dumps(report))


if __name__ == "__main__":
    main()
