"""Every reply the bot sends, built as Block Kit with slack_sdk's models.

Pure: no I/O. Each builder returns the JSON body of a Slack message
(``response_type``, ``text``, ``blocks``). User-supplied text is escaped and
clipped so that every message stays within Block Kit's limits whatever the
input; slack_sdk's models check those limits again when the dict is built.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.command import USAGE, CommandError, Defaults, EngageCommand
from bot.phone import mask as masked
from bot.phone import pretty
from bot.studio import Engagement, StudioError, console_url

Message = dict[str, Any]

# Block Kit limits (https://api.slack.com/reference/block-kit/blocks).
SECTION_TEXT_MAX = 3000
FIELD_TEXT_MAX = 2000
BUTTON_URL_MAX = 3000
FALLBACK_TEXT_MAX = 3000  # Slack accepts more; notifications show far less
PARAMETERS_MAX = SECTION_TEXT_MAX - 100  # room for the code fence and the note

CONSOLE_ACTION = "open_console"
AGAIN_ACTION = "engage_again"
CANCEL_ACTION = "engage_cancel"


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` only, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str, limit: int = SECTION_TEXT_MAX) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text, limit))


def _field(label: str, value: str) -> MarkdownTextObject:
    return _md(f"*{label}*\n{value}", FIELD_TEXT_MAX)


def _message(response_type: str, text: str, blocks: list[Block]) -> Message:
    return {
        "response_type": response_type,
        "text": clip(text, FALLBACK_TEXT_MAX),
        "blocks": [block.to_dict() for block in blocks],
    }


def flow_label(command: EngageCommand) -> str:
    """``onboarding (FW…)`` or the bare SID when the flow has no alias."""
    if command.flow_alias:
        return f"{command.flow_alias} ({command.flow_sid})"
    return command.flow_sid


def parameters_text(parameters: dict[str, Any]) -> str:
    """The flow data as compact, clipped JSON in a code block (escaped for mrkdwn)."""
    body = json.dumps(parameters, ensure_ascii=False, indent=None, separators=(", ", ": "))
    body = clip(body, PARAMETERS_MAX).replace("```", "`\u200b``")
    return f"```{escape(body)}```"


# --- replies to /engage ---------------------------------------------------------


def starting(command: EngageCommand) -> Message:
    """The immediate ack: only the caller sees it; the result follows in the channel."""
    text = (
        f":hourglass_flowing_sand: Starting *{escape(flow_label(command))}*"
        f" for {escape(pretty(command.to))}…"
    )
    return _message("ephemeral", text, [SectionBlock(text=_md(text))])


def engaged(
    command: EngageCommand, engagement: Engagement, user_id: str, *, mask: bool = False
) -> Message:
    """In the channel: who started which flow for whom, the SID, status and links.

    With ``mask`` (MASK_NUMBERS) the contact shows as ``+1 617-•••-1212``.
    """
    flow_sid = engagement.flow_sid or command.flow_sid
    link = console_url(flow_sid, engagement.sid)
    status = engagement.status or "unknown"
    contact = masked(command.to) if mask else pretty(command.to)
    text = (
        f"<@{user_id}> started {flow_label(command)} for {contact}:"
        f" engagement {engagement.sid} is {status}. {link}"
    )
    blocks: list[Block] = [
        SectionBlock(
            text=_md(
                f":rocket: <@{user_id}> started *{escape(command.flow_alias or command.flow_sid)}*"
                f" for {escape(contact)}"
            )
        ),
        SectionBlock(
            fields=[
                _field("Engagement", f"`{engagement.sid}`"),
                _field("Status", escape(status)),
                _field("Flow", escape(flow_label(command))),
                _field("Contact", escape(contact)),
                _field("Sender", escape(pretty(command.sender))),
                _field("Triggered by", f"<@{user_id}>"),
            ]
        ),
    ]
    if command.parameters:
        blocks.append(
            SectionBlock(text=_md("*Parameters*\n" + parameters_text(command.parameters)))
        )
    blocks.append(
        ActionsBlock(
            elements=[
                ButtonElement(
                    text="Open in Twilio Console",
                    url=clip(link, BUTTON_URL_MAX),
                    action_id=CONSOLE_ACTION,
                )
            ]
        )
    )
    if engagement.url:
        blocks.append(ContextBlock(elements=[_md(f"API: {escape(engagement.url)}")]))
    return _message("in_channel", text, blocks)


def describe_error(error: StudioError) -> str:
    """What went wrong, in words, with Twilio's code and link when there is one."""
    parts = [error.message.rstrip(".") + "."]
    if error.code is not None:
        parts.append(
            f"Twilio error {error.code}" + (f" (HTTP {error.status})." if error.status else ".")
        )
    elif error.status is not None:
        parts.append(f"HTTP {error.status}.")
    if error.more_info:
        parts.append(f"More: {error.more_info}")
    return " ".join(parts)


def outcome_note(error: StudioError) -> str | None:
    """The warning owed to the user when the flow may have started despite the error."""
    if not error.outcome_unknown:
        return None
    return (
        "The outcome is unknown: the flow may have started. Check the Twilio Console"
        " (Studio > Flows > Executions) before you try again; the bot does not retry."
    )


def engage_failed(command: EngageCommand, error: StudioError) -> Message:
    """Only to the caller: the engagement could not be started (or may have been)."""
    headline = f"Could not start {flow_label(command)} for {pretty(command.to)}"
    if error.outcome_unknown:
        headline = f"Not sure whether {flow_label(command)} started for {pretty(command.to)}"
    detail = describe_error(error)
    note = outcome_note(error)
    text = f"{headline}: {detail}" + (f" {note}" if note else "")
    blocks: list[Block] = [
        SectionBlock(text=_md(f":warning: *{escape(headline)}*\n{escape(detail)}")),
    ]
    if note:
        blocks.append(ContextBlock(elements=[_md(escape(note))]))
    return _message("ephemeral", text, blocks)


def invalid_command(error: CommandError) -> Message:
    """Only to the caller: the command did not parse; nothing was sent to Twilio."""
    problem = error.problem
    token = f" (at `{escape(clip(error.token, 200))}`)" if error.token else ""
    text = f"{problem}. Nothing was sent. Usage: {USAGE}"
    blocks: list[Block] = [
        SectionBlock(text=_md(f":x: {escape(problem)}{token}\nNothing was sent to Twilio.")),
        ContextBlock(elements=[_md(f"Usage: `{escape(USAGE)}` · `/engage help` for examples")]),
    ]
    return _message("ephemeral", text, blocks)


def help_text(defaults: Defaults, command: str = "/engage") -> str:
    """Usage, examples and the configured flows, as mrkdwn-friendly plain text."""
    lines = [
        f"Usage: {USAGE.replace('/engage', command, 1)}",
        "",
        "Examples:",
        f"  {command} +16175551212 first_name=Zeke",
        f'  {command} +1 617 555 1212 name="Zeke Smith" plan=gold vip:=true',
        f'  {command} +16175551212 customer.name=Zeke tags:=["a","b"]',
        f'  {command} +16175551212 {{"first_name": "Zeke", "count": 3}}',
        f"  {command} +16175551212 --from +16175550100",
    ]
    if defaults.flows:
        alias = sorted(defaults.flows)[0]
        lines.append(f"  {command} {alias} +16175551212 first_name=Zeke")
    lines += [
        "",
        "key=value sends a string, key:=json a JSON value; dots nest (customer.name=Zeke).",
        "Each key reaches the flow as {{flow.data.key}}.",
        "",
        "Flows:",
    ]
    for alias, sid in sorted(defaults.flows.items()):
        marker = " (default)" if sid == defaults.flow_sid else ""
        lines.append(f"  {alias}: {sid}{marker}")
    if defaults.flow_sid and defaults.flow_sid not in defaults.flows.values():
        lines.append(f"  default: {defaults.flow_sid}")
    if defaults.sender:
        lines.append(f"Sender: {pretty(defaults.sender)} unless --from says otherwise.")
    if defaults.region:
        lines.append(f"Numbers without +country code are read as {defaults.region} numbers.")
    else:
        lines.append("Write numbers with their country code: +<country code><number>.")
    return "\n".join(lines)


def help_message(defaults: Defaults, command: str = "/engage") -> Message:
    """``/engage help``: usage, examples and the configured flows, to the caller only."""
    text = help_text(defaults, command)
    return _message("ephemeral", text, [SectionBlock(text=_md(f"```{escape(text)}```"))])


def _notice(emoji: str, text: str) -> Message:
    return _message("ephemeral", text, [SectionBlock(text=_md(f"{emoji} {escape(text)}"))])


def refused(reason: str) -> Message:
    """Only to the caller: a guardrail forbids this command; nothing was sent."""
    return _notice(":no_entry:", f"Not started: {reason}. Nothing was sent to Twilio.")


def rate_limited(wait: float, rate: str) -> Message:
    """Only to the caller: they have started as many as USER_RATE_LIMIT allows."""
    return _notice(
        ":stopwatch:",
        f"Not started: you have reached the limit of {rate} (USER_RATE_LIMIT)."
        f" Try again in {max(1, round(wait))} s. Nothing was sent to Twilio.",
    )


def confirm_duplicate(command: EngageCommand, token: str, window: float) -> Message:
    """Only to the caller: the same flow for the same contact was just started; again?"""
    text = (
        f"You started {flow_label(command)} for {pretty(command.to)} less than"
        f" {round(window)} s ago. Start it again? Nothing has been sent yet."
    )
    again = ButtonElement(
        text="Start again",
        action_id=AGAIN_ACTION,
        value=token,
        style="danger",
        confirm=ConfirmObject(
            title="Start again?",
            text=clip(f"{pretty(command.to)} will be contacted a second time.", 300),
            confirm="Start again",
            deny="No",
        ),
    )
    cancel = ButtonElement(text="Cancel", action_id=CANCEL_ACTION, value=token)
    blocks: list[Block] = [
        SectionBlock(text=_md(f":repeat: {escape(text)}")),
        ActionsBlock(elements=[again, cancel]),
    ]
    return _message("ephemeral", text, blocks)


def cancelled() -> Message:
    """Replaces the "start again?" prompt when the caller says no."""
    return _notice(":ok_hand:", "Not started again. Nothing was sent.")


def expired() -> Message:
    """The "start again?" button outlived its command (or was used already)."""
    return _notice(
        ":hourglass:",
        "This confirmation has expired or was already used. Nothing was sent; run the command again.",
    )


def shutting_down() -> Message:
    """The bot is restarting and took no new command."""
    text = (
        "The bot is restarting and did not take this command."
        " Nothing was sent; try again in a minute."
    )
    return _message("ephemeral", text, [SectionBlock(text=_md(f":zzz: {text}"))])
