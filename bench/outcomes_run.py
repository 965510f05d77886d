"""Run records figures: a bulk run followed to its end against a fake Studio whose runs
end at random widgets over a few minutes and serve their Context. Prints one JSON
object (figures, never asserted).

    .venv/bin/python bench/outcomes_run.py [--rows 5000] [--minutes 3] [--polling]

With Event Streams (the default) the fake sends signed ``step.ended`` and
``execution.ended`` deliveries as runs end: Studio reads per run should be the context
read and nothing else (target ≤ 1.05), and the final results file should follow the
last end within 10 s. ``--polling`` sends none: the sweep's reads per second must
never exceed STUDIO_READ_RATE_LIMIT. Also: the bot's peak RSS (target ≤ 120 MiB) and
Redis memory per record (target ≤ 1 KiB). The bot runs as its own process on a
throwaway Redis; its starts are paced fast (the starts are not what is measured).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import random
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from bulk_run import answer, ask_preview, file_api, max_per_second, post, start_click
from run import FLOW, bot_env, free_port, redis_server, spawn_bot, wait_port

TOKEN = "bench-token"  # bot_env's TWILIO_AUTH_TOKEN
WIDGETS = ("thanks", "no_reply", "opted_out", "escalated")
READ_RATE = 5.0  # STUDIO_READ_RATE_LIMIT per second, polling (the default)
# With Event Streams: 5,000 runs ending within 3 minutes end ~28 a second, and each
# end is one read; at 5 a second they would queue 17 minutes (recorded late, not lost)
# and the final results file could not follow the last end within 10 s.
EVENTS_READ_RATE = 50.0
DEFINITION = {
    "states": [
        {
            "name": "Trigger",
            "type": "trigger",
            "transitions": [{"event": "incomingRequest", "next": "ask"}],
        },
        {"name": "ask", "type": "send-and-wait-for-reply", "properties": {"body": "1-5?"}},
    ]
}


class Studio:
    """Runs that end at random moments at random widgets; every request counted."""

    def __init__(self, minutes: float, events_to: str | None) -> None:
        self.minutes = minutes
        self.events_to = events_to
        self.runs: dict[str, dict[str, Any]] = {}
        self.reads: Counter[str] = Counter()  # run SID -> GETs
        self.read_times: list[float] = []
        self.last_end = 0.0
        self.pending: list[asyncio.Task[None]] = []

    async def create(self, request: web.Request) -> web.Response:
        await request.post()
        sid = f"FN{uuid.uuid4().hex}"
        ends = time.time() + random.uniform(5, self.minutes * 60)  # noqa: S311
        self.runs[sid] = {"ends": ends, "widget": random.choice(WIDGETS)}  # noqa: S311
        if self.events_to:
            self.pending.append(asyncio.get_running_loop().create_task(self._deliver(sid)))
        return web.json_response({"sid": sid, "status": "active"}, status=201)

    def _body(self, sid: str) -> dict[str, Any]:
        run = self.runs[sid]
        ended = time.time() >= run["ends"]
        return {"sid": sid, "status": "ended" if ended else "active", "flow_sid": FLOW}

    async def fetch(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.reads[sid] += 1
        self.read_times.append(time.monotonic())
        return web.json_response(self._body(sid))

    async def steps(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.reads[sid] += 1
        self.read_times.append(time.monotonic())
        widget = self.runs[sid]["widget"]
        step = {"sid": "FT" + "0" * 32, "name": "sent", "transitioned_from": widget}
        return web.json_response({"steps": [step], "meta": {"next_page_url": None}})

    async def context(self, request: web.Request) -> web.Response:
        sid = request.match_info["sid"]
        self.reads[sid] += 1
        self.read_times.append(time.monotonic())
        answer = str(random.randint(1, 5))  # noqa: S311
        context = {"flow": {"data": {}}, "widgets": {"ask": {"inbound": {"Body": answer}}}}
        return web.json_response({"context": context, "flow_sid": FLOW})

    async def flow(self, request: web.Request) -> web.Response:
        body = {
            "sid": FLOW,
            "friendly_name": "Survey",
            "status": "published",
            "revision": 1,
            "definition": DEFINITION,
        }
        return web.json_response(body)

    async def _deliver(self, sid: str) -> None:
        """The run's end, as Event Streams delivers it: its last step, then its end."""
        assert self.events_to is not None
        await asyncio.sleep(max(0.0, self.runs[sid]["ends"] - time.time()))
        moment = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        data = {"execution_sid": sid, "flow_sid": FLOW}
        events = [
            {
                "type": f"com.twilio.studio.flow.{kind}",
                "id": "EZ" + uuid.uuid4().hex,
                "time": moment,
                "data": {**data, "transitioned_from": self.runs[sid]["widget"]}
                if kind == "step.ended"
                else data,
            }
            for kind in ("step.ended", "execution.ended")
        ]
        body = json.dumps(events).encode()
        query = urlencode({"bodySHA256": hashlib.sha256(body).hexdigest()})
        url = f"{self.events_to}?{query}"
        signature = base64.b64encode(hmac.new(TOKEN.encode(), url.encode(), "sha1").digest())
        self.last_end = max(self.last_end, time.monotonic())
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                url, data=body, headers={"X-Twilio-Signature": signature.decode()}
            ) as response,
        ):
            await response.read()


class Slack:
    def __init__(self, rows: int) -> None:
        self.csv = ("to\n" + "".join(f"+1617555{i:04d}\n" for i in range(rows))).encode()
        self.replies: list[dict[str, Any]] = []
        self.final_at = 0.0
        self.final = asyncio.Event()

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        asked = {**request.query, **(await request.post())}
        if files := file_api(request, method, "list.csv", self.csv):
            return files
        if method == "files.completeUploadExternal" and "final" in str(asked.get("files", "")):
            self.final_at = time.monotonic()
            self.final.set()
        return web.json_response(answer(method, "1.1"))

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.csv)

    async def upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    async def respond(self, request: web.Request) -> web.Response:
        self.replies.append(await request.json())
        return web.Response(text="ok")


def studio_routes(application: web.Application, studio: Studio) -> None:
    """The fake Studio's routes: runs (create, fetch, Steps, Context) and the Flows API."""
    runs = "/v1/Flows/{flow}/Engagements"
    application.router.add_post(runs, studio.create)
    application.router.add_get(runs + "/{sid}", studio.fetch)
    application.router.add_get(runs + "/{sid}/Steps", studio.steps)
    application.router.add_get(runs + "/{sid}/Context", studio.context)
    application.router.add_get("/v2/Flows/{flow}", studio.flow)


def app(studio: Studio, slack: Slack) -> web.Application:
    application = web.Application()
    studio_routes(application, studio)
    application.router.add_route("*", "/api/{method}", slack.api)
    application.router.add_get("/files/list.csv", slack.file)
    application.router.add_post("/upload", slack.upload)
    application.router.add_post("/respond/{id}", slack.respond)
    return application


async def scenario(args: argparse.Namespace, base: str, bot: str, redis: str) -> dict[str, Any]:
    events_to = None if args.polling else f"{bot}/twilio/events"
    studio, slack = Studio(args.minutes, events_to), Slack(args.rows)
    runner = web.AppRunner(app(studio, slack), access_log=None)
    await runner.setup()
    host, port = base.removeprefix("http://").split(":")
    await web.TCPSite(runner, host, int(port)).start()
    events = f"{bot}/slack/events"
    try:
        async with aiohttp.ClientSession() as http:
            await ask_preview(http, events, base, "survey")
            click = await start_click(slack.replies, base)
            await post(http, events, click)
            window = args.minutes * 60 + 30 + args.rows / 100
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(slack.final.wait(), window)
        reads = sum(studio.reads.values())
        created = len(studio.runs)
        return {
            "rows": args.rows,
            "path": "polling" if args.polling else "event streams",
            "runs": created,
            "studio_reads_per_run": reads / created if created else 0.0,
            "max_reads_per_second": max_per_second(sorted(studio.read_times)),
            "read_rate_limit": READ_RATE if args.polling else EVENTS_READ_RATE,
            "final_results_after_last_end_s": (
                slack.final_at - studio.last_end
                if slack.final.is_set() and studio.last_end
                else None
            ),
            "final_results": slack.final.is_set(),
            "redis_bytes_per_record": redis_per_record(redis, created),
        }
    finally:
        for task in studio.pending:
            task.cancel()
        await runner.cleanup()


def redis_per_record(url: str, records: int) -> float:
    """Redis memory of the run records (their hashes and index entries), per record."""
    import redis as redis_py

    client = redis_py.Redis.from_url(url)
    total = 0
    for key in client.scan_iter("studio-engage:rec:*", count=1000):
        total += int(client.memory_usage(key) or 0)
    client.close()
    return total / records if records else 0.0


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--minutes", type=float, default=3.0, help="runs end within this")
    parser.add_argument("--polling", action="store_true", help="no Event Streams deliveries")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{free_port()}"
    port = free_port()
    bot = f"http://127.0.0.1:{port}"
    with redis_server() as redis:
        env = bot_env(
            port,
            base,
            REDIS_URL=redis,
            STUDIO_RATE_LIMIT="200/second",
            STUDIO_READ_RATE_LIMIT=f"{READ_RATE if args.polling else EVENTS_READ_RATE:g}/second",
            BULK_MAX_ROWS=str(args.rows),
            FLOW_PARAMETER_CHECK="confirm",
        )
        if not args.polling:
            env["TWILIO_EVENTS_URL"] = f"{bot}/twilio/events"
        proc = spawn_bot(port, env, wait=False)
        try:
            wait_port(port, proc)
            result = asyncio.run(scenario(args, base, bot, redis))
            result["peak_rss_mib"] = peak_rss_mib(proc.pid)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
