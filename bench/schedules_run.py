"""Scheduled starts at volume: many schedules due within the same minute, fired by two
bot processes on one Redis. Prints one JSON object (figures, never asserted).

    .venv/bin/python bench/schedules_run.py [--items 10000] [--rate 200]

The schedules are kept through the bot's own ``Schedules.add`` (as ``--at`` would keep
them), by 200 people in 500 channels, due at random moments within one minute; then two ``python -m bot`` processes
fire them against a fake Studio that records each create's arrival and contact, and a
fake Slack that takes the cards. Figures: every schedule fired once (creates, distinct
contacts, duplicates), the lag from due time to the request above the pace's own wait
(the moment STUDIO_RATE_LIMIT would let it go, target p99 ≤ 2 s), and Redis memory per
schedule kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import statistics
import subprocess
import time
from collections import Counter
from typing import Any

import redis as redis_sync
from aiohttp import web
from pydantic import SecretStr
from run import FLOW, bot_env, free_port, redis_server, spawn_bot

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.engage.schedules import Schedules
from bot.engage.start import Engager
from bot.engage.throttle import SPACING
from bot.state.store import RedisStore
from bot.studio.client import StudioClient

SENDER = "+16175550100"


class Peers:
    """Studio's create (each arrival and contact kept) and Slack's Web API (all ok)."""

    def __init__(self, items: int) -> None:
        self.arrivals: list[tuple[float, str]] = []  # (epoch seconds, To)
        self.items = items
        self.all_arrived = asyncio.Event()

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        to = str(form.get("To"))
        self.arrivals.append((time.time(), to))
        if len(self.arrivals) >= self.items:
            self.all_arrived.set()
        sid = f"FN{len(self.arrivals):032x}"
        body = {"sid": sid, "status": "active", "contact_channel_address": to}
        return web.json_response(body, status=201)

    async def api(self, request: web.Request) -> web.Response:
        answer = {"ok": True, "ts": f"{time.time():.6f}", "channel": {"id": "D0BENCH"}}
        return web.json_response(answer)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/Flows/{flow}/Engagements", self.create)
        app.router.add_get("/v2/Flows/{flow}", self.not_found)
        app.router.add_post("/api/{method}", self.api)
        return app


async def keep(url: str, items: int, first_due: float) -> dict[str, float]:
    """``items`` schedules due within the minute after ``first_due``; contact -> due."""
    store = RedisStore(url, timeout=5)
    studio = StudioClient(base_url="http://127.0.0.1:9", username="AC", password=SecretStr("x"))
    schedules = Schedules(Engager(studio), store)
    dues: dict[str, float] = {}
    rng = random.Random(25)  # noqa: S311 - due times, not secrets
    for i in range(items):
        to = f"+1617555{i:04d}"
        due = first_due + rng.uniform(0, 60)
        # spread over channels, as many teams' schedules are: Slack posts about one
        # message a second per channel, which the cards keep to
        caller = Caller(f"U{i % 200:08d}", f"C{i % 500:08d}", "T0BENCH")
        await schedules.add(EngageCommand(FLOW, None, to, SENDER, {"n": i}), caller, due)
        dues[to] = due
    await studio.aclose()
    await store.aclose()
    return dues


def start_bot(peers: str, url: str, rate: int) -> subprocess.Popen[bytes]:
    port = free_port()
    env = bot_env(
        port,
        peers,
        REDIS_URL=url,
        STUDIO_RATE_LIMIT=f"{rate}/second",
        PACING_MAX_WAIT_SECONDS="60",
    )
    return spawn_bot(port, env)


def pace_lags(dues: dict[str, float], arrivals: list[tuple[float, str]], rate: int) -> list[float]:
    """Each request's lag above the pace's own wait: the pace lets one go every
    ``SPACING / rate`` seconds, in due order, never before its due time."""
    interval = SPACING / rate
    allowed: dict[str, float] = {}
    free = 0.0
    for to, due in sorted(dues.items(), key=lambda item: item[1]):
        free = max(due, free + interval)
        allowed[to] = free
    return [at - allowed[to] for at, to in arrivals if to in allowed]


async def scenario(items: int, rate: int, url: str) -> dict[str, Any]:
    peers = Peers(items)
    runner = web.AppRunner(peers.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    client = redis_sync.Redis.from_url(url)
    before = int(client.info("memory")["used_memory"])
    kept_at = time.monotonic()
    first_due = time.time() + 30 + items / 1000  # room to keep them and start the bots
    dues = await keep(url, items, first_due)
    keep_seconds = time.monotonic() - kept_at
    per_item = (int(client.info("memory")["used_memory"]) - before) / items
    bots = [await asyncio.to_thread(start_bot, base, url, rate) for _ in range(2)]
    try:
        limit = first_due - time.time() + 60 + 60 + items * SPACING / rate * 2
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peers.all_arrived.wait(), limit)
        await asyncio.sleep(3)  # anything fired twice would arrive by now
    finally:
        for proc in bots:
            proc.terminate()
        for proc in bots:
            proc.wait(timeout=30)
        await runner.cleanup()
    counts = Counter(to for _, to in peers.arrivals)
    lags = pace_lags(dues, peers.arrivals, rate)
    raw = [at - dues[to] for at, to in peers.arrivals if to in dues]
    return {
        "items": items,
        "bots": len(bots),
        "rate_per_second": rate,
        "creates": len(peers.arrivals),
        "distinct_contacts": len(counts),
        "sent_twice": sum(1 for n in counts.values() if n > 1),
        "keep_seconds": round(keep_seconds, 1),
        "lag_above_pace_p50_s": round(statistics.median(lags), 3) if lags else None,
        "lag_above_pace_p99_s": (
            round(statistics.quantiles(lags, n=100)[98], 3) if len(lags) > 1 else None
        ),
        "lag_from_due_p99_s": (
            round(statistics.quantiles(raw, n=100)[98], 3) if len(raw) > 1 else None
        ),
        "redis_bytes_per_schedule": round(per_item),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=50, help="STUDIO_RATE_LIMIT per second")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_server())
        result = asyncio.run(scenario(args.items, args.rate, url))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
