"""What Redis keeps per thing (issue 34, 4): 1,000 of each written through the bot's own
code to a real redis-server, and Redis's own accounting (MEMORY USAGE of every key,
and used_memory before and after): per run record (with its share of the indexes and
the day's counters), per who-started-it entry, per followed card, per scheduled start,
per opt-out. Prints one JSON line (bytes each); docs/performance.md has the table.

    .venv/bin/python bench/redis_memory.py [--count 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydantic import SecretStr
from run import redis_server  # bench/run.py (this script's folder is on the path)

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.contact_clock import ContactClock
from bot.engage.consent import Consent
from bot.engage.schedules import Schedules
from bot.engage.start import Engager
from bot.runs.records import Records
from bot.runs.registry import RunRegistry, Shown
from bot.slack.follow import INDEX, Followed
from bot.state.store import Durable, RedisStore
from bot.studio.client import StudioClient

FLOW = "FW" + "b" * 32
CALLER = Caller("U0BENCH", "C0BENCH", "T0BENCH")


def command(n: int) -> EngageCommand:
    return EngageCommand(FLOW, "survey", f"+1617{2000000 + n:07d}", "+16175550100", {"a": "b"})


async def used(store: RedisStore) -> int:
    return int((await store.redis.info("memory"))["used_memory"])


async def measure(url: str, count: int) -> dict[str, int]:
    store = RedisStore(url)
    state = Durable(store)
    figures: dict[str, int] = {}

    async def each(name: str, write: object) -> None:
        await store.redis.flushdb()
        before = await used(store)
        await write  # type: ignore[misc]
        figures[name] = round((await used(store) - before) / count)

    records = Records(state, keyed=Consent(state, secret=b"k" * 32).key)

    async def write_records() -> None:
        for n in range(count):
            record = await records.started(f"FN{n:032x}", command(n), CALLER)
            await records.finish(record, "ended", widget="thanks", answers={"score": "5"})

    registry = RunRegistry(state)

    async def write_registry() -> None:
        for n in range(count):
            await registry.remember(f"FN{n:032x}", Shown("U0BENCH", FLOW, "C0BENCH", "1.2"))

    async def write_cards() -> None:
        now = time.time()
        for n in range(count):
            card = Followed(
                sid=f"FN{n:032x}",
                flow_sid=FLOW,
                starter="U0BENCH",
                started=now,
                until=now + 3600,
                channel="C0BENCH",
                ts="1764770000.000100",
                shown=(0, 3, int(now)),
                next_poll=now + 5,
            )
            sid = card.sid
            await store.hset(f"follow:{sid}", card.fields(), 7200)
            await store.hset(INDEX, {sid: "1"}, 7 * 86400)

    studio = StudioClient(
        base_url="http://127.0.0.1:9", username="AC" + "a" * 32, password=SecretStr("token")
    )
    engager = Engager(studio, state=state, clock=ContactClock())
    schedules = Schedules(engager, store, max_days=30, late_minutes=60, tell=None)

    async def write_schedules() -> None:
        due = time.time() + 86400
        for n in range(count):
            await schedules.add(command(n), CALLER, due)

    consent = Consent(state, secret=b"k" * 32)

    async def write_optouts() -> None:
        for n in range(count):
            await consent.opt_out(command(n).to, "file", by="U0BENCH")

    await each("run record", write_records())
    await each("who started a run", write_registry())
    await each("followed card", write_cards())
    await each("scheduled start", write_schedules())
    await each("opt-out", write_optouts())
    await studio.aclose()
    await store.aclose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with redis_server() as url:
        print(json.dumps(asyncio.run(measure(url, args.count))))


if __name__ == "__main__":
    main()
