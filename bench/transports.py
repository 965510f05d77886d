"""The Studio client's transports, side by side: one StudioClient, its httpx API
unchanged, over each candidate transport, against bench/peers.py's fake Studio.

    python bench/transports.py [--studio http://127.0.0.1:8700] [--total 2000]

For each transport and concurrency, N creates are sent by N/concurrency workers
and timed: creates per second (wall) and CPU milliseconds per create in this
process, which is what a busy bot pays. Without ``--studio`` the peers are
started here. Prints one JSON object (bench/run.py renders it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from bot.infra.transport import AiohttpTransport  # noqa: E402
from bot.studio.client import POOL_LIMITS, StudioClient  # noqa: E402

FLOW = "FW" + "b" * 32


def _httpcore(keepalive: int) -> Callable[[], httpx.AsyncBaseTransport]:
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=keepalive)
    return lambda: httpx.AsyncHTTPTransport(limits=limits)


def _httpx_aiohttp() -> httpx.AsyncBaseTransport:
    from httpx_aiohttp import AiohttpTransport as Theirs  # a bench extra, not a dependency

    return Theirs(limits=POOL_LIMITS)


CANDIDATES: dict[str, Callable[[], httpx.AsyncBaseTransport]] = {
    "aiohttp, bot/infra/transport.py (ours)": lambda: AiohttpTransport(POOL_LIMITS),
    "httpx-aiohttp": _httpx_aiohttp,
    "httpcore, keep-alive 64 (before)": _httpcore(64),
    "httpcore, keep-alive 8": _httpcore(8),
}


async def _create(client: StudioClient, n: int) -> None:
    await client.create_engagement(
        FLOW, to="+16175551212", sender="+16175550100", parameters={"n": n}
    )


async def _measure(
    studio: str, transport: httpx.AsyncBaseTransport, concurrency: int, total: int
) -> dict[str, float]:
    client = StudioClient(
        base_url=studio,
        username="AC" + "a" * 32,
        password=SecretStr("bench"),
        transport=transport,
    )
    async with client:
        # Warm the pool to the concurrency it will see, as a running bot's is.
        await asyncio.gather(*(_create(client, 0) for _ in range(concurrency)))
        remaining = total

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await _create(client, remaining)

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"per_second": total / wall, "cpu_ms_per_create": cpu / total * 1000}


def measure_all(studio: str, total: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, make in CANDIDATES.items():
        results[name] = {
            str(concurrency): asyncio.run(_measure(studio, make(), concurrency, total))
            for concurrency in (1, 50)
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--studio", help="bench/peers.py's URL; started here if not given")
    parser.add_argument("--total", type=int, default=2000)
    args = parser.parse_args()
    if args.studio:
        print(json.dumps(measure_all(args.studio, args.total)))
        return
    sys.path.insert(0, str(HERE))
    from run import free_port, wait_port

    port = free_port()
    peers = subprocess.Popen([sys.executable, str(HERE / "peers.py"), "--port", str(port)])
    try:
        wait_port(port, peers)
        print(json.dumps(measure_all(f"http://127.0.0.1:{port}", args.total), indent=2))
    finally:
        peers.terminate()
        peers.wait(timeout=10)


if __name__ == "__main__":
    main()
