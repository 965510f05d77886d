"""Slack's tiers under load: many runs started at once in one channel, each card
followed to its end, against a fake Web API that enforces Slack's tiers and answers
429 with Retry-After. Prints one JSON object (figures, never asserted).

    .venv/bin/python bench/slack_tiers_run.py [--runs 200] [--minutes 1]

The fake keeps Slack's published limits as sliding windows: ``chat.postMessage`` 60 a
minute per channel with bursts of 5 a second, ``chat.update`` and ``conversations.open``
50 a minute (Tier 3), ``views.publish`` 100 a minute (Tier 4). The runs end at random
moments within ``--minutes`` (Event Streams tells the bot). Each command's
``response_url`` takes five uses, as Slack's does; a card is a message posted with
``chat.postMessage`` (edited with ``chat.update``) or the command's in-channel reply
(edited through its ``response_url``). Figures: Slack calls per minute per method (the
busiest minute), 429s received per method (target: none after the first one per
method), response_url uses refused, and seconds from the first command until every
card shows its end (target ≤ 90 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter, defaultdict, deque
from typing import Any

import aiohttp
from aiohttp import web
from bulk_run import post
from outcomes_run import Studio, studio_routes
from run import bot_env, command_body, free_port, redis_server, spawn_bot, wait_port

# method -> [(calls, seconds), ...] per scope (the channel for chat.postMessage)
RESPONSE_URL_USES = 5  # each response_url, within thirty minutes
LIMITS: dict[str, list[tuple[int, float]]] = {
    "chat.postMessage": [(60, 60.0), (5, 1.0)],
    "chat.update": [(50, 60.0)],
    "conversations.open": [(50, 60.0)],
    "views.publish": [(100, 60.0)],
}


class TieredSlack:
    """Slack's Web API as far as following cards needs it, with Slack's tiers kept."""

    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.calls: list[tuple[str, float]] = []  # (method, monotonic), answered ok
        self.limited: Counter[str] = Counter()
        self.limited_at: dict[str, list[float]] = defaultdict(list)
        self.windows: dict[tuple[str, str, float], deque[float]] = defaultdict(deque)
        self.cards: dict[str, str] = {}  # ts or response_url -> the card's latest text
        self.ended_at: dict[str, float] = {}  # ts or response_url -> when it showed the end
        self.url_uses: Counter[str] = Counter()
        self.url_refused = 0  # response_url uses past Slack's five
        self.all_ended = asyncio.Event()

    def _over(self, method: str, scope: str, now: float) -> float:
        """Seconds until a call fits every window of ``method`` (0: it fits; counted)."""
        windows = LIMITS.get(method, [])
        waits = []
        for calls, seconds in windows:
            window = self.windows[(method, scope, seconds)]
            while window and now - window[0] >= seconds:
                window.popleft()
            if len(window) >= calls:
                waits.append(window[0] + seconds - now)
        if waits:
            return max(waits)
        for _, seconds in windows:
            self.windows[(method, scope, seconds)].append(now)
        return 0.0

    async def api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            sent: dict[str, Any] = await request.json()
        else:
            sent = {k: str(v) for k, v in (await request.post()).items()}
        now = time.monotonic()
        scope = str(sent.get("channel", "")) if method == "chat.postMessage" else ""
        if wait := self._over(method, scope, now):
            self.limited[method] += 1
            self.limited_at[method].append(now)
            retry = str(max(1, round(wait + 0.5)))
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": retry}
            )
        self.calls.append((method, now))
        if method == "chat.postMessage":
            ts = f"{1700000000 + len(self.calls)}.000100"
            if not sent.get("thread_ts"):
                self.cards[ts] = str(sent.get("text", ""))
            return web.json_response({"ok": True, "ts": ts, "channel": scope})
        if method == "chat.update":
            ts = str(sent.get("ts", ""))
            self._card(ts, str(sent.get("text", "")), now)
            return web.json_response({"ok": True, "ts": ts, "channel": sent.get("channel")})
        if method == "conversations.open":
            return web.json_response({"ok": True, "channel": {"id": "D0BENCH"}})
        return web.json_response({"ok": True})

    async def respond(self, request: web.Request) -> web.Response:
        """A command's response_url: five uses in thirty minutes, as Slack allows. An
        in-channel reply showing a run is a card; replacing it edits that card."""
        url = "url:" + request.match_info["id"]
        sent: dict[str, Any] = await request.json()
        self.url_uses[url] += 1
        if self.url_uses[url] > RESPONSE_URL_USES:
            self.url_refused += 1
            return web.Response(status=404, text="used_url")
        text = str(sent.get("text", ""))
        is_card = sent.get("response_type") == "in_channel" and ": engagement " in text
        if is_card or (url in self.cards and sent.get("replace_original")):
            self._card(url, text, time.monotonic())
        return web.Response(text="ok")

    def _card(self, key: str, text: str, now: float) -> None:
        """A card shown or edited (by its ts, or its response_url)."""
        self.cards[key] = text
        if " is ended" in text and key not in self.ended_at:
            self.ended_at[key] = now
            if len(self.ended_at) >= self.runs:
                self.all_ended.set()


def busiest_minute(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 60.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def scenario(runs: int, minutes: float, base: str, bot: str) -> dict[str, Any]:
    studio, slack = Studio(minutes, f"{bot}/twilio/events"), TieredSlack(runs)
    application = web.Application()
    studio_routes(application, studio)
    application.router.add_route("*", "/api/{method}", slack.api)
    application.router.add_post("/respond/{id}", slack.respond)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    host, port = base.removeprefix("http://").split(":")
    await web.TCPSite(runner, host, int(port)).start()
    try:
        began = time.monotonic()
        async with aiohttp.ClientSession() as http:
            for i in range(runs):
                await post(http, f"{bot}/slack/events", command_body(30_000 + i, f"{base}/respond"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slack.all_ended.wait(), minutes * 60 + 600)
        await asyncio.sleep(2)  # calls still on their way
    finally:
        for task in studio.pending:
            task.cancel()
        await runner.cleanup()
    by_method: dict[str, list[float]] = defaultdict(list)
    for method, at in slack.calls:
        by_method[method].append(at)
    after_first = {m: sum(1 for at in slack.limited_at[m][1:]) for m in slack.limited_at}
    return {
        "runs": runs,
        "cards": len(slack.cards),
        "cards_by_response_url": sum(key.startswith("url:") for key in slack.cards),
        "response_url_uses_refused": slack.url_refused,
        "cards_showing_their_end": len(slack.ended_at),
        "seconds_until_every_card_shows_its_end": (
            round(max(slack.ended_at.values()) - began, 1) if len(slack.ended_at) >= runs else None
        ),
        "last_run_end_s": round(studio.last_end - began, 1) if studio.last_end else None,
        "busiest_minute_calls": {m: busiest_minute(t) for m, t in sorted(by_method.items())},
        "answers_429": dict(slack.limited),
        "answers_429_after_the_first": after_first,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=1.0)
    args = parser.parse_args()
    base_port = free_port()
    base = f"http://127.0.0.1:{base_port}"
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_server())
        port = free_port()
        bot = f"http://127.0.0.1:{port}"
        env = bot_env(
            port,
            base,
            REDIS_URL=redis,
            FOLLOW_MINUTES="60",
            STUDIO_RATE_LIMIT="20/second",
            STUDIO_READ_RATE_LIMIT="20/second",
            FLOW_PARAMETER_CHECK="off",
            TWILIO_EVENTS_URL=f"{bot}/twilio/events",
        )
        proc = spawn_bot(port, env, wait=False)
        try:
            wait_port(port, proc)
            result = asyncio.run(scenario(args.runs, args.minutes, base, bot))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
