"""The load: Slack-signed slash commands over real HTTP, from their own process.

    python bench/load.py --url http://127.0.0.1:3000/slack/events --concurrency 50 \
        --total 500 --respond http://127.0.0.1:8700/respond --secret S

Prints one JSON object: ack latencies (seconds), statuses, start and end times.
``--raw form|json`` posts unsigned bodies instead, to measure a peer's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp
from run import command_body, signed_headers  # bench/run.py, beside this


async def run(args: argparse.Namespace) -> dict[str, object]:
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(args.total):
        queue.put_nowait(args.offset + i)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            while not queue.empty():
                await one()

        async def one() -> None:
            if True:
                i = queue.get_nowait()
                if args.raw == "form":
                    body = "To=%2B16175551212&From=%2B16175550100"
                    headers = {"Content-Type": "application/x-www-form-urlencoded"}
                elif args.raw == "json":
                    body = '{"response_type": "in_channel", "text": "x"}'
                    headers = {"Content-Type": "application/json"}
                else:
                    body = command_body(i, args.respond)
                    headers = signed_headers(body, args.secret)
                started = time.perf_counter()
                try:
                    url = args.url[i % len(args.url)]
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        key = str(response.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    key = type(exc).__name__
                latencies.append(time.perf_counter() - started)
                statuses[key] = statuses.get(key, 0) + 1

        started_at = time.time()
        if args.waves:
            # Bursts: `concurrency` commands at once, all acked, a pause, again.
            for wave in range(args.waves):
                if wave:
                    await asyncio.sleep(args.gap)
                await asyncio.gather(*(one() for _ in range(args.concurrency)))
        else:
            # Closed loop: each of `concurrency` workers sends its next command on its ack.
            await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        finished_at = time.time()
    return {
        "latencies": latencies,
        "statuses": statuses,
        "started_at": started_at,
        "finished_at": finished_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--url", required=True, action="append", help="again for more: commands take turns"
    )
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--total", type=int, default=1)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--respond", default="http://127.0.0.1:9/respond")
    parser.add_argument("--secret", default="")
    parser.add_argument("--waves", type=int, default=0, help="bursts instead of a closed loop")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between bursts")
    parser.add_argument(
        "--raw", choices=["form", "json"], help="unsigned posts, for a peer's ceiling"
    )
    print(json.dumps(asyncio.run(run(parser.parse_args()))))


if __name__ == "__main__":
    main()
