"""Posting through Slack's Web API: a message in a channel (or a thread), or a DM from
the bot. Each says what happened instead of raising: the caller decides who to tell."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.api_errors import slack_refusal
from bot.slack.messages import Message
from bot.slack.pace import SlackBusy

log = logging.getLogger(__name__)

NOT_POSTED: tuple[str | None, str] = (None, "")
BUSY = "busy"  # the channel's turn under Slack's tier was further away than the caller waits


async def post_message(
    slack: AsyncWebClient | None, channel: str, message: Message, thread_ts: str | None = None
) -> tuple[str | None, str]:
    """``chat.postMessage``: the message's ts, or None and why (Slack's error code, an
    HTTP status, or the network's exception) where it was not posted."""
    if slack is None or not channel:
        return NOT_POSTED
    try:
        response = await slack.chat_postMessage(
            channel=channel, text=message["text"], blocks=message["blocks"], thread_ts=thread_ts
        )
    except SlackApiError as exc:
        refusal = slack_refusal(exc)
        log.info("chat.postMessage refused in %s: %s", channel, refusal)
        return None, refusal
    except SlackBusy:  # posted within a time, and the channel's turn is further away
        return None, BUSY
    except Exception as exc:  # noqa: BLE001 - the network: the caller still has other ways to say it
        log.warning("chat.postMessage failed: %s", type(exc).__name__)
        return None, type(exc).__name__
    return str(response.get("ts") or "") or None, ""


async def open_dm(slack: AsyncWebClient, user_id: str) -> str:
    """The bot's DM channel with ``user_id`` (``conversations.open``). Raises
    ``SlackApiError``."""
    opened = await slack.conversations_open(users=user_id)
    return str((opened.get("channel") or {}).get("id", ""))


async def direct_message(slack: AsyncWebClient | None, user_id: str, message: Message) -> bool:
    """Post ``message`` in the bot's DM with ``user_id``; False if Slack did not take it."""
    if slack is None:
        return False
    try:
        channel = await open_dm(slack, user_id)
    except SlackApiError as exc:
        log.warning("DM to %s not opened: %s", user_id, slack_refusal(exc))
        return False
    ts, _ = await post_message(slack, channel, message)
    return ts is not None
