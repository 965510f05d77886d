"""Loopback peers for the benchmark, in their own process: a fake Studio (configurable
latency), a response_url sink that timestamps every reply, and Slack's Web API.

    python bench/peers.py --port 8700

GET /stats gives the counts and reply times; POST /reset?latency=1.0 clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiohttp import web

ACCOUNT = "AC" + "a" * 32


class Peers:
    def __init__(self) -> None:
        self.latency = 0.0
        self.creates = 0
        self.replies: list[tuple[int, float]] = []  # (command number, time.time()) of each
        self.reply_kinds: dict[str, int] = {}
        self.api_calls: dict[str, int] = {}

    async def create(self, request: web.Request) -> web.Response:
        form = await request.post()
        self.creates += 1
        if self.latency:
            await asyncio.sleep(self.latency)
        flow = request.match_info["flow"]
        sid = f"FN{self.creates:032x}"
        kind = "Engagements" if request.path.startswith("/v1/") else "Executions"
        body: dict[str, Any] = {
            "sid": sid,
            "account_sid": ACCOUNT,
            "flow_sid": flow,
            "contact_channel_address": str(form.get("To", "")),
            "status": "active",
            "context": {},
            "date_created": "2026-11-23T10:00:00Z",
            "date_updated": "2026-11-23T10:00:00Z",
            "url": f"https://studio.twilio.com/{request.path[1:3]}/Flows/{flow}/{kind}/{sid}",
            "links": {},
        }
        return web.json_response(body, status=201)

    async def respond(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.replies.append((int(request.match_info["id"]), time.time()))
        kind = str(body.get("response_type", "?"))
        self.reply_kinds[kind] = self.reply_kinds.get(kind, 0) + 1
        return web.Response(text="ok")

    async def api(self, request: web.Request) -> web.Response:
        """Slack's Web API: auth.test as Slack answers it, anything else (the Home tab's
        views.publish after each start) a plain ok, counted."""
        method = request.match_info["method"]
        self.api_calls[method] = self.api_calls.get(method, 0) + 1
        if method != "auth.test":
            await request.read()
            return web.json_response({"ok": True})
        return web.json_response(
            {
                "ok": True,
                "team_id": "T0001",
                "user_id": "UBOT",
                "bot_id": "BBOT",
                "url": "https://t/",
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "creates": self.creates,
                "replies": self.replies,
                "kinds": self.reply_kinds,
                "api_calls": self.api_calls,
            }
        )

    async def reset(self, request: web.Request) -> web.Response:
        self.latency = float(request.query.get("latency", "0"))
        self.creates = 0
        self.replies = []
        self.reply_kinds = {}
        self.api_calls = {}
        return web.json_response({"ok": True})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/Flows/{flow}/Engagements", self.create)
        app.router.add_post("/v2/Flows/{flow}/Executions", self.create)
        app.router.add_post("/respond/{id}", self.respond)
        app.router.add_post("/api/{method}", self.api)
        app.router.add_get("/stats", self.stats)
        app.router.add_post("/reset", self.reset)
        return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(Peers().app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
