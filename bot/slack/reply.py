"""Replies to Slack that are delivered or logged, never lost silently."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.slack.messages import Message

log = logging.getLogger(__name__)


Reply = Callable[[Message], Awaitable[None]]


REPLY_SECONDS = 15.0  # how long a reply to Slack may take


async def deliver(
    reply: Reply, message: Message, about: str = "-", within: float = REPLY_SECONDS
) -> bool:
    """Send ``message``; False if Slack could not take it, and the log keeps what the
    user missed (``about`` names what it was for: a run SID or a flow)."""
    try:
        await asyncio.wait_for(reply(message), timeout=within)
    except Exception as exc:  # noqa: BLE001 - the reply is best effort; the log line is the record
        log.error("could not deliver the reply for %s: %s", about, type(exc).__name__)
        return False
    return True
