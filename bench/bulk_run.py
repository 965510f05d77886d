"""Bulk figures (issues 12 and 27): 1,000 rows at STUDIO_RATE_LIMIT=20/second against a
fake Studio that answers 429 above 20 arrivals in any trailing second (nothing else
sent meanwhile), then single commands' acks during a run of 200 rows (the singles take
Studio slots too, so they are kept out of the 1,000 rows' figure), one bot process or
two on one Redis. Prints one JSON object; bench/run.py puts it in the table.

    .venv/bin/python bench/bulk_run.py [--rows 1000] [--two]

The bot runs as its own process (``python -m bot``); its peers (fake Studio, fake Slack
Web API and response_url sink, the CSV file) run here, on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import time
from collections import deque
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from run import bot_env, free_port, redis_server, signed_headers, spawn_bot  # bench/run.py

LIMIT = 20  # what the fake Studio allows a second, as Studio documents


def file_api(request: web.Request, method: str, name: str, data: bytes) -> web.Response | None:
    """Slack's file methods as the bot meets them: ``files.info`` for the CSV file F1
    (served at ``/files/<name>`` by the same peers), and the upload URL for results."""
    host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
    if method == "files.info":
        info = {
            "id": "F1",
            "name": name,
            "filetype": "csv",
            "size": len(data),
            "url_private_download": f"http://{host}:{port}/files/{name}",
        }
        return web.json_response({"ok": True, "file": info})
    if method == "files.getUploadURLExternal":
        url = f"http://{host}:{port}/upload"
        return web.json_response({"ok": True, "upload_url": url, "file_id": "F2"})
    return None


def answer(method: str, ts: str) -> dict[str, Any]:
    """Slack's answer to any other method: a message's ts, and the uploaded file, as
    ``files.completeUploadExternal`` gives it (slack_sdk's upload reads it)."""
    body: dict[str, Any] = {"ok": True, "ts": ts, "channel": "C0BENCH"}
    if method == "files.completeUploadExternal":
        body["files"] = [{"id": "F2", "title": "results"}]
    return body


class Peers:
    def __init__(self, rows: int) -> None:
        self.accepted: list[float] = []  # times of creates answered 201
        self.arrived: list[float] = []  # times of every create request, answered 201 or 429
        self.refusals: list[float] = []  # times of creates answered 429
        self.window: deque[float] = deque()
        self.replies: list[dict[str, Any]] = []
        self.uploaded = asyncio.Event()
        self.upload_at = 0.0
        self.csv = b""
        self.posts = 0
        self.contacts(rows, 0)

    def contacts(self, rows: int, first: int) -> None:
        """The CSV file F1 from now on: ``rows`` contacts numbered from ``first``."""
        lines = ["phone,first_name"] + [f"+1617555{first + i:04d},N{i}" for i in range(rows)]
        self.csv = "\n".join(lines).encode()

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        now = time.monotonic()
        self.arrived.append(now)
        while self.window and now - self.window[0] > 1.0:
            self.window.popleft()
        if len(self.window) >= LIMIT:
            self.refusals.append(now)
            body = {"code": 20429, "message": "Too Many Requests", "status": 429}
            return web.json_response(body, status=429, headers={"Retry-After": "1"})
        self.window.append(now)
        self.accepted.append(now)
        sid = f"FN{len(self.accepted):032x}"
        return web.json_response(
            {"sid": sid, "status": "active", "contact_channel_address": str(form.get("To"))},
            status=201,
        )

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if files := file_api(request, method, "contacts.csv", self.csv):
            return files
        if method == "files.completeUploadExternal":
            self.upload_at = time.monotonic()
            self.uploaded.set()
        self.posts += method == "chat.postMessage"  # each message its own ts, as Slack's
        return web.json_response(answer(method, f"1.{self.posts}"))

    async def upload(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK")

    async def respond(self, request: web.Request) -> web.Response:
        self.replies.append(await request.json())
        return web.Response(text="ok")

    async def file(self, request: web.Request) -> web.Response:
        return web.Response(body=self.csv)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 20404, "message": "not found", "status": 404}, status=404)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 2**20)  # a results file of 200,000 rows
        app.router.add_post("/v1/Flows/{flow}/Engagements", self.create)
        app.router.add_get("/v2/Flows/{flow}", self.not_found)
        app.router.add_post("/api/{method}", self.api)
        app.router.add_get("/api/{method}", self.api)
        app.router.add_post("/upload", self.upload)
        app.router.add_post("/respond/{id}", self.respond)
        app.router.add_get("/files/contacts.csv", self.file)
        return app


def max_per_second(times: list[float]) -> int:
    """The most of ``times`` (sorted) in any one-second window."""
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] > 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def post(http: aiohttp.ClientSession, url: str, body: str) -> float:
    started = time.perf_counter()
    async with http.post(url, data=body, headers=signed_headers(body)) as response:
        await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - started


def command(i: int, respond: str) -> str:
    fields = {
        "team_id": "T0001",
        "channel_id": "C0BENCH",
        "user_id": f"U{i:08d}",
        "command": "/engage",
        "text": f"+1415555{i % 10000:04d}",
        "response_url": f"{respond}/{i}",
        "trigger_id": "1.2.3",
    }
    return urlencode(fields)


def payload(data: dict[str, Any]) -> str:
    base = {"team": {"id": "T0001"}, "user": {"id": "U0STARTER"}, "channel": {"id": "C0BENCH"}}
    return urlencode({"payload": json.dumps({**base, **data})})


async def ask_preview(http: aiohttp.ClientSession, url: str, base: str, text: str) -> None:
    """The message shortcut *Start flow for each row* on a message sharing the CSV
    file F1 (served by the peers at ``base``)."""
    shortcut = {
        "type": "message_action",
        "callback_id": "bulk_csv",
        "trigger_id": "1.2",
        "response_url": f"{base}/respond/preview",
        "message": {"text": text, "files": [{"id": "F1", "name": "contacts.csv"}]},
    }
    await post(http, url, payload(shortcut))


async def start_click(replies: list[dict[str, Any]], base: str) -> str:
    """The preview's Start, clicked, once the preview has arrived (within 2 minutes)."""
    for _ in range(1200):
        if any("bulk_start" in json.dumps(r) for r in replies):
            break
        await asyncio.sleep(0.1)
    preview = next(r for r in replies if "bulk_start" in json.dumps(r))
    actions = next(b for b in preview["blocks"] if b["type"] == "actions")
    click = {
        "type": "block_actions",
        "response_url": f"{base}/respond/start",
        "actions": [{"action_id": "bulk_start", "value": actions["elements"][0]["value"]}],
    }
    return payload(click)


def start_bot(peers: str, redis: str | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = bot_env(port, peers, STUDIO_RATE_LIMIT=f"{LIMIT}/second")
    if redis:
        env["REDIS_URL"] = redis
    return spawn_bot(port, env), f"http://127.0.0.1:{port}"


async def bulk_run(
    http: aiohttp.ClientSession, peers: Peers, base: str, url: str, *, singles: bool
) -> dict[str, Any]:
    """One bulk run through the bot, from Start clicked to its last row started (and to
    its results file uploaded); with ``singles``, single commands sent one after another
    meanwhile (their acks)."""
    peers.replies.clear()
    peers.uploaded.clear()
    await ask_preview(http, url, base, "list")
    click = await start_click(peers.replies, base)
    started = time.monotonic()
    await post(http, url, click)
    during = []
    i = 1000
    while not peers.uploaded.is_set():
        if singles:
            during.append(await post(http, url, command(i, f"{base}/respond")))
            i += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(peers.uploaded.wait(), 0.5)
    arrived = [t for t in peers.arrived if t >= started]
    return {
        "seconds": max(t for t in peers.accepted if t >= started) - started,
        "results_s": peers.upload_at - started,
        "responses_429": sum(t >= started for t in peers.refusals),
        "max_sent_per_second": max_per_second(arrived),
        "sent": sum(t >= started for t in peers.accepted),
        "during": during,
    }


async def scenario(rows: int, base: str, url: str) -> dict[str, Any]:
    """The runs, through the bot at ``url``, with the peers served here at ``base``:
    ``rows`` rows with nothing else sent (the rate figures), then a run of 200 rows with
    single commands sent throughout (their acks against the same commands' acks idle)."""
    peers = Peers(rows)
    runner = web.AppRunner(peers.app(), access_log=None)
    await runner.setup()
    host, port = base.removeprefix("http://").split(":")
    await web.TCPSite(runner, host, int(port)).start()
    try:
        async with aiohttp.ClientSession() as http:
            idle = [await post(http, url, command(i, f"{base}/respond")) for i in range(30)]
            await asyncio.sleep(3)  # their engagements take their turns before the run
            alone = await bulk_run(http, peers, base, url, singles=False)
            peers.contacts(200, rows)  # other contacts: not duplicates of the first run's
            shared = await bulk_run(http, peers, base, url, singles=True)
        during = shared["during"]
        return {
            "rows": rows,
            "seconds": alone["seconds"],
            "results_s": alone["results_s"],
            "responses_429": alone["responses_429"],
            "max_sent_per_second": alone["max_sent_per_second"],
            "sent": alone["sent"],
            "with_singles": {
                "rows": 200,
                "singles": len(during),
                "seconds": shared["seconds"],
                "responses_429": shared["responses_429"],
                "max_sent_per_second": shared["max_sent_per_second"],
            },
            "idle_ack_p99_ms": statistics.quantiles(idle, n=100)[98] * 1000,
            "during_ack_p99_ms": (
                statistics.quantiles(during, n=100)[98] * 1000
                if len(during) > 1
                else during[0] * 1000
            ),
        }
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--two", action="store_true", help="two bot processes on one Redis")
    args = parser.parse_args()
    base = f"http://127.0.0.1:{free_port()}"
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server()) if args.two else None
        procs = [start_bot(base, redis) for _ in range(2 if args.two else 1)]
        try:
            result = asyncio.run(scenario(args.rows, base, procs[0][1] + "/slack/events"))
        finally:
            for proc, _ in procs:
                proc.terminate()
                proc.wait(timeout=30)
    print(json.dumps({**result, "bots": len(procs)}))


if __name__ == "__main__":
    main()
