"""The bot itself on loopback, wired to the fake peers: what the end-to-end tests drive."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot.app.config import load_settings
from bot.app.factories import studio_client
from bot.app.server import build_web_app
from bot.app.services import Services
from tests.peers import FakeSlack, FakeStudio, bot_env, serve, signed_headers, slash_command


@dataclass
class Harness:
    studio: FakeStudio
    slack: FakeSlack
    slack_url: str
    bot_url: str
    services: Services

    async def idle(self) -> None:
        """Wait until the bot has finished all work after its acks."""
        await self.services.tasks.idle()

    async def post(
        self, body: str, headers: dict[str, str] | None = None
    ) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.bot_url}/slack/events",
                content=body,
                headers=signed_headers(body) if headers is None else headers,
            )
        return response, time.monotonic() - started

    async def command(self, text: str, **kwargs: Any) -> tuple[httpx.Response, float]:
        body = slash_command(text, response_url=f"{self.slack_url}/respond/1", **kwargs)
        return await self.post(body)

    async def start(self, text: str = "+16175551212 first_name=Zeke") -> dict[str, Any]:
        """Run ``/engage text`` and return the card it posts (the first reply)."""
        await self.command(text)
        (card,) = await self.slack.wait_for_replies(1)
        return card

    async def click(
        self,
        action: str,
        value: str,
        *,
        user: str = "U0CALLER",
        channel: str = "C0CHANNEL",
        n: int = 2,
    ) -> dict[str, Any]:
        """Click a button as ``user`` in ``channel``; return the ``n``-th reply overall."""
        body = block_action(
            action,
            value,
            user_id=user,
            channel_id=channel,
            response_url=f"{self.slack_url}/respond/{n}",
        )
        response, _ = await self.post(body)
        assert response.status_code == 200
        return (await self.slack.wait_for_replies(n))[n - 1]


def text_of(message: Any) -> str:
    return json.dumps(message, ensure_ascii=False)


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The buttons of a message's actions block, by action ID."""
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return {b["action_id"]: b for b in actions["elements"]}


@asynccontextmanager
async def harness(
    monkeypatch: pytest.MonkeyPatch, studio: FakeStudio, studio_url: str | None = None, **env: str
) -> AsyncIterator[Harness]:
    """The bot on loopback, wired to ``studio`` and a fresh fake Slack."""
    async with wired(monkeypatch, studio, FakeSlack(), studio_url, env) as running:
        yield running


@asynccontextmanager
async def wired(
    monkeypatch: pytest.MonkeyPatch,
    studio: FakeStudio,
    slack: FakeSlack,
    studio_url: str | None = None,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Harness]:
    """The bot on loopback, wired to given peers (several bots may share them)."""
    async with serve(studio.app()) as fake_studio_url, serve(slack.app()) as slack_url:
        values = bot_env(
            studio_url or fake_studio_url, slack_url, SHUTDOWN_GRACE_SECONDS="10", **(env or {})
        )
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(need_slack=True)
        services = Services.build(settings, studio_client(settings))
        async with serve(build_web_app(settings, services)) as bot_url:
            yield Harness(studio, slack, slack_url, bot_url, services)


def block_action(
    action_id: str,
    value: str,
    *,
    user_id: str = "U0CALLER",
    response_url: str,
    channel_id: str = "C0CHANNEL",
) -> str:
    """The form body Slack posts when a button is clicked."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0001"},
        "user": {"id": user_id},
        "api_app_id": "A0APP",
        "token": "deprecated",
        "trigger_id": "1.2.3",
        "response_url": response_url,
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b",
                "value": value,
                "action_ts": "1",
            }
        ],
        "container": {"type": "message"},
        "channel": {"id": channel_id},
    }
    return urlencode({"payload": json.dumps(payload)})
