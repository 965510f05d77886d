"""Block Kit as plain dicts: the pieces every message is built from, and Slack's limits.

Pure: no I/O. Blocks are plain dicts: slack_sdk's models cost about 1.5 ms a
message in validation (a sixth of the bot's CPU per engagement, see bench/), so
the tests run every message through those models instead (tests/test_messages.py).
User-supplied text is escaped and clipped so that every message stays within
Block Kit's limits whatever the input.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from bot.domain.run import console_url

Message = dict[str, Any]
Block = dict[str, Any]

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
BUTTON_URL_MAX = 3000
FALLBACK_TEXT_MAX = 3000  # Slack accepts more; notifications show far less
PARAMETERS_MAX = SECTION_TEXT_MAX - 100  # room for the code fence and the note

CONSOLE_ACTION = "open_console"
REFRESH_ACTION = "engage_refresh"
END_ACTION = "engage_end"
RESTART_ACTION = "engage_restart"
AGAIN_ACTION = "engage_again"
ANYWAY_ACTION = "engage_anyway"
CANCEL_ACTION = "engage_cancel"


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` only, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def clip_escaped(text: str, limit: int) -> str:
    """``text`` escaped, then cut to ``limit`` characters without splitting an escape."""
    escaped = escape(text)
    if len(escaped) <= limit:
        return escaped
    cut = escaped[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 4))
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def more_line(hidden: int, what: str = "") -> str:
    """``…and 12 more.`` (with ``what`` said after the count), for a list that was cut."""
    return f"…and {hidden} more{' ' + what if what else ''}."


def lines_within(lines: list[str], limit: int, what: str = "") -> str:
    """Whole lines joined while they fit in ``limit`` characters; the rest counted in a
    last line (``more_line``) instead of being cut off mid-line."""
    kept: list[str] = []
    used = 0
    for i, line in enumerate(lines):
        tail = len(more_line(len(lines) - i, what)) + 1 if i < len(lines) - 1 else 0
        if used + len(line) + 1 + tail > limit:
            kept.append(more_line(len(lines) - i, what))
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept)


def unfenced(text: str) -> str:
    """``text`` with no run of backticks that could close a code block (a zero-width
    space after every backtick followed by another)."""
    return re.sub("`(?=`)", "`\u200b", text)


def fenced(text: str, limit: int = SECTION_TEXT_MAX) -> str:
    """``text`` escaped in a code block that always closes: whole lines kept within
    ``limit``, the rest counted."""
    body = unfenced(escape(text))
    kept = lines_within(body.splitlines(), limit - 6, "lines")
    return f"```{kept}```"


# --- Block Kit as plain dicts ----------------------------------------------------


def md(text: str, limit: int = SECTION_TEXT_MAX) -> Block:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def field(label: str, value: str) -> Block:
    return md(f"*{label}*\n{value}", FIELD_TEXT_MAX)


def section(text: Block | None = None, fields: list[Block] | None = None) -> Block:
    block: Block = {"type": "section"}
    if text is not None:
        block["text"] = text
    if fields:
        block["fields"] = fields[:10]
    return block


def context(elements: list[Block]) -> Block:
    return {"type": "context", "elements": elements[:10]}


def actions(elements: list[Block]) -> Block:
    return {"type": "actions", "elements": elements[:25]}


def button(
    text: str,
    action_id: str,
    *,
    url: str | None = None,
    value: str | None = None,
    style: str | None = None,
    confirm: Block | None = None,
) -> Block:
    button: Block = {"type": "button", "text": plain(text, 75), "action_id": action_id}
    if url is not None:
        button["url"] = clip(url, BUTTON_URL_MAX)
    if value is not None:
        button["value"] = value[:2000]
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def confirm_dialog(title: str, text: str, confirm: str, deny: str) -> Block:
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(confirm, 30),
        "deny": plain(deny, 30),
    }


def message(response_type: str, text: str, blocks: list[Block], *, markup: bool = False) -> Message:
    """A message: ``text`` is the notification's words (escaped here, so a flow's name or
    Twilio's message cannot ping or link), or with ``markup`` the builder's own mrkdwn
    whose outside pieces it escaped itself (a mention, a date)."""
    return {
        "response_type": response_type,
        "text": clip(text if markup else escape(text), FALLBACK_TEXT_MAX),
        "blocks": blocks[:50],
    }


def console_button(flow_sid: str, sid: str) -> Block:
    return button(
        "Open in Twilio Console", url=console_url(flow_sid, sid), action_id=CONSOLE_ACTION
    )


def parameters_text(parameters: dict[str, Any]) -> str:
    """The flow data as compact, clipped JSON in a code block (escaped for mrkdwn)."""
    body = json.dumps(parameters, ensure_ascii=False, indent=None, separators=(", ", ": "))
    body = clip_escaped(unfenced(body), PARAMETERS_MAX)
    return f"```{body}```"


def when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time_secs}}|{moment.isoformat()}>"


def ago(moment: datetime) -> str:
    """``3 minutes ago`` as each reader's Slack client says it."""
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{ago}}|{moment.isoformat()}>"


def notice(emoji: str, text: str) -> Message:
    return message("ephemeral", text, [section(text=md(f"{emoji} {escape(text)}"))])
