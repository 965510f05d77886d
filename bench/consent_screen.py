"""One consent figure (issue 35): a bulk preview of 100,000 rows checked against an
opt-out list of 10,000 contacts and a contact cap, on a real redis-server: the time of
the check alone (every row's keyed hash, then the list and the caps in Redis), the
preview it feeds, the round trips it took, and what it found. Prints one JSON line;
bench/run.py puts it in the table.

    .venv/bin/python bench/consent_screen.py [--rows 100000] [--optouts 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import redis_server  # bench/run.py (this script's folder is on the path)

from bot.domain.bulk_input import row_for
from bot.domain.bulk_plan import plan
from bot.domain.command import EngageCommand
from bot.domain.consent import Cap
from bot.domain.policy import Policy
from bot.engage.consent import Consent
from bot.state.store import Durable, RedisStore

FLOW = "FW" + "b" * 32


def number(i: int) -> str:
    return f"+1617{2000000 + i:07d}"


async def measure(url: str, rows: int, optouts: int) -> dict[str, object]:
    store = RedisStore(url)
    consent = Consent(
        Durable(store), secret=b"bench-consent-key-" + b"0" * 32, contact_cap=Cap(2, 86400)
    )
    # the list: every tenth contact opted out (up to --optouts), by a file's import
    listed = [number(i) for i in range(0, rows, max(1, rows // optouts))][:optouts]
    await asyncio.gather(*(consent.opt_out(to, "file") for to in listed))
    # the caps: 1,000 contacts reached twice today (at their cap)
    for i in range(1, min(rows, 10_000), 10):
        for n in range(2):
            command = EngageCommand(FLOW, None, number(i), "+16175550100", {})
            check = consent.check(command, f"U{n}", hold=True, over=False)
            await store.admit("uses:-", -1, 60, None, 60, check)
    contacts = [number(i) for i in range(rows)]
    await consent.screen(contacts[:10], FLOW)  # the script known to Redis, as after any use
    await store.redis.config_resetstat()
    started = time.perf_counter()
    found = await consent.screen(contacts, FLOW)
    screened = time.perf_counter() - started
    stats = await store.redis.info("commandstats")
    trips = sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    memory = await store.redis.memory_usage("studio-engage:optouts") or 0
    rows_in = [row_for(i, to, "US", {}) for i, to in enumerate(contacts, 2)]
    started = time.perf_counter()
    made = plan(
        rows_in,
        flow_sid=FLOW,
        flow_alias="survey",
        sender="+16175550100",
        shared={},
        policy=Policy(countries=frozenset({"US"})),
        info=None,
        per_second=20.0,
        suppressed=found,
    )
    planned = time.perf_counter() - started
    await store.aclose()
    opted = sum(1 for why in found.values() if why.kind == "opted_out")
    return {
        "rows": rows,
        "optouts": len(listed),
        "screen_seconds": round(screened, 3),
        "plan_seconds": round(planned, 3),
        "script_calls": trips,
        "opted_out_found": opted,
        "capped_found": len(found) - opted,
        "valid": len(made.valid),
        "list_bytes_per_optout": round(memory / max(1, len(listed))),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--optouts", type=int, default=10_000)
    args = parser.parse_args()
    with redis_server() as url:
        print(json.dumps(asyncio.run(measure(url, args.rows, args.optouts))))


if __name__ == "__main__":
    main()
