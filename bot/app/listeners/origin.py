"""The one place that reads who sent a Slack payload, from where, and where to answer.

Slash commands carry flat fields (``user_id``, ``channel_id``); interactivity
payloads (block actions, shortcuts, view submissions) carry objects (``user.id``,
``channel.id``). Listeners ask ``origin_of`` and never read either shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.domain.caller import Caller


@dataclass(frozen=True)
class Origin:
    caller: Caller
    response_url: str  # "" when Slack gave none (a global shortcut, most view submissions)
    trigger_id: str  # opens a modal within 3 s; "" when there is none
    value: str  # the clicked button's value; "" for anything else
    action_id: str = ""  # the clicked button's action ID


def _id(body: dict[str, Any], flat: str, nested: str) -> str:
    if body.get(flat):
        return str(body[flat])
    inner = body.get(nested)
    return str(inner.get("id", "")) if isinstance(inner, dict) else ""


def origin_of(body: dict[str, Any]) -> Origin:
    """Who, where, and how to answer, for any payload Slack sends the bot."""
    channel = _id(body, "channel_id", "channel")
    if not channel and isinstance(body.get("container"), dict):
        channel = str(body["container"].get("channel_id", ""))
    response_url = str(body.get("response_url") or "")
    if not response_url and body.get("response_urls"):  # a view submission
        first = body["response_urls"][0]
        response_url = str(first.get("response_url", ""))
        channel = channel or str(first.get("channel_id", ""))
    actions = body.get("actions") or [{}]
    return Origin(
        caller=Caller(
            user_id=_id(body, "user_id", "user"),
            channel_id=channel,
            team_id=_id(body, "team_id", "team"),
        ),
        response_url=response_url,
        trigger_id=str(body.get("trigger_id") or ""),
        value=str(actions[0].get("value", "")),
        action_id=str(actions[0].get("action_id", "")),
    )
