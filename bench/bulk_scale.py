"""A 100,000-row campaign (issue 34, 1): a CSV file of 100,000 contacts shared in Slack,
previewed and started through the bot (its own process, on Redis), with Studio's pace
lifted so that the bot's own cost is what is measured: the preview's time, the bot's
peak RSS over the whole run, Redis's memory per row while running and after, the CPU
the bot spent per row started, and the results file (written and uploaded a page at a
time). While the preview is being read, a slash command (`/engage help`) is sent every
0.25 s: the slowest of their acknowledgements is printed (Slack waits 3 s for one).
Prints one JSON line; bench/run.py puts it in the table.

    .venv/bin/python bench/bulk_scale.py [--rows 100000] [--pace 2000] [--preview-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import bulk_run  # bench/bulk_run.py: the peers and the clicks
import redis as redis_sync
from aiohttp import web
from run import bot_env, free_port, redis_server, spawn_bot


def contacts(rows: int) -> bytes:
    lines = ["phone,first_name"] + [f"+1617{2000000 + i:07d},N{i}" for i in range(rows)]
    return "\n".join(lines).encode()


def proc_figures(pid: int) -> tuple[float, float]:
    """The process's peak RSS (MiB) and CPU seconds so far (Linux's /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    peak = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return peak / 1024, (int(fields[11]) + int(fields[12])) / ticks


def kind_of(key: str) -> str:
    """``studio-engage:bulk:<id>:rows`` -> ``bulk:rows``; ``rec:<id>`` -> ``rec``."""
    parts = key.removeprefix("studio-engage:").split(":")
    if parts[0] == "bulk" and len(parts) > 2:
        return f"bulk:{parts[2]}"
    if parts[0] in ("rec", "run", "follow", "agg", "reach", "uses") and len(parts) > 1:
        return (
            parts[0]
            if parts[1] not in ("index", "active", "flows", "bulk")
            else ":".join(parts[:2])
        )
    return parts[0]


def memory_by_kind(redis: Any, rows: int) -> dict[str, int]:
    """Redis's memory (MEMORY USAGE) summed by kind of key, per row."""
    sums: dict[str, int] = {}
    for key in redis.scan_iter("*", count=1000):
        name = key.decode()
        sums[kind_of(name)] = sums.get(kind_of(name), 0) + int(redis.memory_usage(key) or 0)
    return {kind: round(total / rows) for kind, total in sorted(sums.items()) if total >= rows}


async def acks_while(http: aiohttp.ClientSession, url: str, done: asyncio.Event) -> list[float]:
    """``/engage help`` every 0.25 s until ``done``: each acknowledgement's seconds."""
    body = urlencode(
        {
            "team_id": "T0001",
            "channel_id": "C0BENCH",
            "user_id": "U0PROBE",
            "command": "/engage",
            "text": "help",
            "response_url": "http://127.0.0.1:9/unused",
            "trigger_id": "1.2.3",
        }
    )
    seconds = []
    while not done.is_set():
        seconds.append(await bulk_run.post(http, url, body))
        await asyncio.sleep(0.25)
    return seconds


async def run(
    rows: int, pace: int, redis_url: str, bots: int = 1, *, preview_only: bool = False
) -> dict[str, Any]:
    bulk_run.LIMIT = 10**9  # the fake Studio answers every start: the pace is the bot's
    peers = bulk_run.Peers(0)
    peers.csv = contacts(rows)
    base_port = free_port()
    base = f"http://127.0.0.1:{base_port}"
    runner = web.AppRunner(peers.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", base_port).start()
    procs = []
    for _ in range(bots):  # the same Redis: they share the run's rows
        port = free_port()
        env = bot_env(
            port,
            base,
            STUDIO_RATE_LIMIT=f"{pace}/second",
            BULK_MAX_ROWS="200000",
            REDIS_URL=redis_url,
            RUN_RECORD_DAYS="90",
        )
        procs.append(spawn_bot(port, env))
        if len(procs) == 1:
            url = f"http://127.0.0.1:{port}/slack/events"
    redis = redis_sync.Redis.from_url(redis_url)
    try:
        await asyncio.sleep(2)
        before = int(redis.info("memory")["used_memory"])
        async with aiohttp.ClientSession() as http:
            asked = time.monotonic()
            previewed = asyncio.Event()
            probe = asyncio.create_task(acks_while(http, url, previewed))
            await bulk_run.ask_preview(http, url, base, "survey")
            click = await bulk_run.start_click(peers.replies, base)
            preview_s = time.monotonic() - asked
            previewed.set()
            acks = await probe
            preview = {
                "rows": rows,
                "preview_s": round(preview_s, 2),
                "slowest_ack_during_preview_s": round(max(acks), 3),
                "acks_during_preview": len(acks),
            }
            if preview_only:
                return preview
            cpu_before = [proc_figures(p.pid)[1] for p in procs]
            started = time.monotonic()
            await bulk_run.post(http, url, click)
            running = 0
            while not peers.uploaded.is_set():
                running = max(running, int(redis.info("memory")["used_memory"]))
                await asyncio.sleep(1.0)
            run_s = time.monotonic() - started
            figures = [proc_figures(p.pid) for p in procs]
            cpu = [after - before for (_, after), before in zip(figures, cpu_before, strict=True)]
        after = int(redis.info("memory")["used_memory"])
        breakdown = memory_by_kind(redis, rows)
        return {
            **preview,
            "pace_per_s": pace,
            "run_s": round(run_s, 1),
            "sent": len(peers.accepted),
            "bots": bots,
            "peak_rss_mib": round(max(peak for peak, _ in figures), 1),
            "cpu_ms_per_row": round(1000 * sum(cpu) / max(1, rows), 3),
            "cpu_share_per_bot": [round(c / max(sum(cpu), 1e-9), 2) for c in cpu],
            "redis_bytes_per_row_running": round((running - before) / rows),
            "redis_bytes_per_row_after": round((after - before) / rows),
            "results_uploaded_s": round(peers.upload_at - started, 1),
            "redis_bytes_per_row_by_kind": breakdown,
        }
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--pace", type=int, default=2000, help="STUDIO_RATE_LIMIT a second")
    parser.add_argument("--bots", type=int, default=1, help="bot processes on one Redis")
    parser.add_argument("--preview-only", action="store_true", help="stop at the preview")
    args = parser.parse_args()
    with redis_server() as url:
        figures = run(args.rows, args.pace, url, args.bots, preview_only=args.preview_only)
        print(json.dumps(asyncio.run(figures)))


if __name__ == "__main__":
    main()
