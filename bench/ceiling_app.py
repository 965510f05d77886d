"""The stack's own ceiling: the bot's HTTP server (aiohttp, and bot.slack.http's checks
of Slack's headers, size and signature) answering every signed command with a fixed
ack, and doing nothing else: no Bolt, no parsing, no guardrails, no Studio, no reply.

Not part of the bot; bench/run.py measures it beside studio-engage, in the same run.
"""

from __future__ import annotations

import os

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.domain.errors import BadRequest
from bot.slack.http import signed_request

VERIFIER = SignatureVerifier(os.environ["SLACK_SIGNING_SECRET"])
ACK = {"response_type": "ephemeral", "text": "Starting…"}


async def events(request: web.Request) -> web.Response:
    try:
        await signed_request(request, VERIFIER)
    except BadRequest as exc:
        return web.json_response({"error": exc.reason}, status=exc.status)
    return web.json_response(ACK)


if __name__ == "__main__":
    app = web.Application()
    app.router.add_post("/slack/events", events)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["PORT"]), print=None, access_log=None)
