"""Workflow Builder's *Start a Studio flow* step (``function_executed``), over HTTP or
Socket Mode: acked at once (Bolt's ``auto_acknowledge``); the start and the step's
completion are a task the use-case owns (``bot.slack.workflow_step``)."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp

from bot.app.services import Services
from bot.slack.workflow_step import CALLBACK_ID


def register(app: AsyncApp, services: Services) -> None:
    steps = services.steps

    @app.function(CALLBACK_ID)
    async def start_studio_flow(body: dict[str, Any]) -> None:
        steps.executed(body.get("event") or {}, str(body.get("team_id") or ""))
