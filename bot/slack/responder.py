"""Replies through Slack's ``response_url``s, over one pooled aiohttp session.

Bolt's ``respond()`` opens a new session (and connection) per call; under load
that is the slowest part of a reply. A reply is a JSON POST, as Slack documents
it; slack_sdk's ``AsyncWebhookClient`` would read the proxy settings from the
environment again for every one.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import aiohttp

from bot.domain.errors import SlackReplyError
from bot.infra.transport import env_proxy
from bot.slack.messages import Message

REPLY_TIMEOUT = aiohttp.ClientTimeout(total=10)
JSON = {"Content-Type": "application/json; charset=utf-8"}


def slack_session() -> aiohttp.ClientSession:
    """One pool for every call to Slack (replies and the Web API): Bolt's ``respond()``
    and slack_sdk's clients otherwise open a session, and a TLS connection, per call.
    Call on the running loop."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))


class ResponseUrlReply:
    """A ``Reply`` through one ``response_url`` (which it keeps, for later edits)."""

    def __init__(self, responder: Responder, url: str, *, replace: bool) -> None:
        self.responder = responder
        self.url = url
        self.replace = replace

    async def __call__(self, message: Message) -> None:
        body = dict(message, replace_original=self.replace)
        if self.replace:
            body.pop("response_type", None)
        status = await self.responder.post(self.url, body)
        if status != 200:
            raise SlackReplyError(f"response_url answered HTTP {status}")


class Responder:
    """Posts to ``response_url``s over ``session``: the process's one pool for Slack,
    which it closes (one of its own, opened at first use, if none is given)."""

    def __init__(self, session: aiohttp.ClientSession | None = None) -> None:
        self._session = session

    async def post(self, url: str, message: Message) -> int:
        """Send ``message``; returns Slack's HTTP status."""
        if self._session is None:  # created on the running loop, at first use
            self._session = slack_session()
        where = urlsplit(url)
        async with self._session.post(
            url,
            data=json.dumps(message),
            headers=JSON,
            timeout=REPLY_TIMEOUT,
            proxy=env_proxy(where.scheme, where.hostname or ""),
        ) as response:
            await response.read()
            return response.status

    def reply(self, url: str, *, replace: bool = False) -> ResponseUrlReply:
        """A ``Reply`` to ``url``: a new message, or with ``replace`` the one holding the
        clicked button (ephemeral or not). Raises ``SlackReplyError`` if Slack refuses."""
        return ResponseUrlReply(self, url, replace=replace)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
