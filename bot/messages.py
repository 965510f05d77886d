"""Every reply the bot sends, as Block Kit.

Pure: no I/O. Each builder returns the JSON body of a Slack message
(``response_type``, ``text``, ``blocks``). User-supplied text is escaped and
clipped so that every message stays within Block Kit's limits whatever the
input. Blocks are built as plain dicts: slack_sdk's models cost about 1.5 ms a
message in validation (a sixth of the bot's CPU per engagement, see bench/), so
the tests run every message through those models instead (tests/test_messages.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.command import FLOW_SID, RUN_SID, USAGE, CommandError, Defaults, EngageCommand
from bot.phone import mask as masked
from bot.phone import pretty
from bot.policy import Policy
from bot.studio import Engagement, Step, StudioError, console_url, subobject

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
CANCEL_ACTION = "engage_cancel"


def escape(text: str) -> str:
    """Escape text for Slack mrkdwn: ``&``, ``<`` and ``>`` only, as Slack asks."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, marked with … when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Block Kit as plain dicts ----------------------------------------------------


def _md(text: str, limit: int = SECTION_TEXT_MAX) -> Block:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def _plain(text: str, limit: int) -> Block:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def _field(label: str, value: str) -> Block:
    return _md(f"*{label}*\n{value}", FIELD_TEXT_MAX)


def _section(text: Block | None = None, fields: list[Block] | None = None) -> Block:
    block: Block = {"type": "section"}
    if text is not None:
        block["text"] = text
    if fields:
        block["fields"] = fields[:10]
    return block


def _context(elements: list[Block]) -> Block:
    return {"type": "context", "elements": elements[:10]}


def _actions(elements: list[Block]) -> Block:
    return {"type": "actions", "elements": elements[:25]}


def _button(
    text: str,
    action_id: str,
    *,
    url: str | None = None,
    value: str | None = None,
    style: str | None = None,
    confirm: Block | None = None,
) -> Block:
    button: Block = {"type": "button", "text": _plain(text, 75), "action_id": action_id}
    if url is not None:
        button["url"] = clip(url, BUTTON_URL_MAX)
    if value is not None:
        button["value"] = value[:2000]
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def _confirm(title: str, text: str, confirm: str, deny: str) -> Block:
    return {
        "title": _plain(title, 100),
        "text": _plain(text, 300),
        "confirm": _plain(confirm, 30),
        "deny": _plain(deny, 30),
    }


def _message(response_type: str, text: str, blocks: list[Block]) -> Message:
    return {
        "response_type": response_type,
        "text": clip(text, FALLBACK_TEXT_MAX),
        "blocks": blocks[:50],
    }


def label(alias: str | None, flow_sid: str) -> str:
    """``onboarding (FW…)``, or the bare SID when the flow has no alias."""
    return f"{alias} ({flow_sid})" if alias else flow_sid


def flow_label(command: EngageCommand) -> str:
    """``command``'s flow as ``label`` shows it."""
    return label(command.flow_alias, command.flow_sid)


def _console_button(flow_sid: str, sid: str) -> Block:
    return _button(
        "Open in Twilio Console", url=console_url(flow_sid, sid), action_id=CONSOLE_ACTION
    )


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
    return _message("ephemeral", text, [_section(text=_md(text))])


@dataclass(frozen=True)
class RunCard:
    """Everything the in-channel card shows about one run (engagement or execution)."""

    sid: str
    status: str
    flow_sid: str
    flow_alias: str | None
    contact: str  # normalised address
    sender: str | None
    starter: str  # Slack user ID of who triggered it
    parameters: Any = None
    url: str | None = None
    api: str = "v1"
    latest_step: Step | None = None
    updated: datetime | None = None
    ended_by: str | None = None  # Slack user ID; set once the End button did its work
    deleted: bool = False  # v1 End deletes the engagement

    @property
    def flow_label(self) -> str:
        return label(self.flow_alias, self.flow_sid)


def card_value(card: RunCard) -> str:
    """The button payload: only what Refresh and End need (no secret, no contact)."""
    return f"{card.flow_sid}:{card.sid}:{card.starter}"


def parse_card_value(value: str) -> tuple[str, str, str] | None:
    """``card_value``'s parts (flow SID, run SID, starter), or None if it is not one."""
    parts = value.split(":")
    if len(parts) != 3 or not FLOW_SID.match(parts[0]) or not RUN_SID.match(parts[1]):
        return None
    return parts[0], parts[1], parts[2]


def end_confirm_text(api: str) -> str:
    """What the End button's confirm dialog (and the README) says it does."""
    if api == "v2":
        return "The execution ends now: the flow stops where it is. The contact is not told."
    return (
        "Studio's v1 API cannot end an engagement, so this deletes it and its step log"
        " to stop the flow. This cannot be undone."
    )


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "unknown"
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time_secs}}|{moment.isoformat()}>"


def step_line(step: Step) -> str:
    """``Say hello (say-play): Trigger → greeting``"""
    kind = f" ({step.type})" if step.type else ""
    hop = f": {step.transitioned_from or '?'} → {step.transitioned_to or '?'}"
    return f"{step.name or step.sid}{kind}{hop}"


def run_card(card: RunCard, *, mask: bool = False) -> Message:
    """In the channel: who started which flow for whom, the SID, status, links and buttons.

    With ``mask`` (MASK_NUMBERS) the contact shows as ``+1 617-•••-1212``.
    """
    link = console_url(card.flow_sid, card.sid)
    status = "deleted" if card.deleted else card.status
    contact = masked(card.contact) if mask else pretty(card.contact)
    who = f"<@{card.starter}>"
    text = (
        f"{who} started {card.flow_label} for {contact}: engagement {card.sid} is {status}. {link}"
    )
    fields = [
        _field("Engagement", f"`{card.sid}`"),
        _field("Status", escape(status)),
        _field("Flow", escape(card.flow_label)),
        _field("Contact", escape(contact)),
        _field("Sender", escape(pretty(card.sender)) if card.sender else "unknown"),
        _field("Triggered by", who),
    ]
    if card.latest_step is not None:
        fields.append(_field("Latest step", escape(step_line(card.latest_step))))
    if card.updated is not None:
        fields.append(_field("Last change", _when(card.updated)))
    blocks: list[Block] = [
        _section(
            text=_md(
                f":rocket: {who} started *{escape(card.flow_alias or card.flow_sid)}* for {escape(contact)}"
            )
        ),
        _section(fields=fields),
    ]
    if card.parameters:
        blocks.append(_section(text=_md("*Parameters*\n" + parameters_text(card.parameters))))
    if card.ended_by:
        done = "deleted" if card.deleted else "ended"
        blocks.append(_context([_md(f":stop_sign: {done} by <@{card.ended_by}>")]))
    buttons = [_console_button(card.flow_sid, card.sid)]
    if not card.deleted:
        buttons.append(_button("Refresh", action_id=REFRESH_ACTION, value=card_value(card)))
    if card.status == "active" and not card.ended_by:
        buttons.append(
            _button(
                "End",
                action_id=END_ACTION,
                value=card_value(card),
                style="danger",
                confirm=_confirm(
                    title="End this engagement?",
                    text=end_confirm_text(card.api),
                    confirm="End it",
                    deny="Keep it",
                ),
            )
        )
    blocks.append(_actions(buttons))
    if card.url:
        blocks.append(_context([_md(f"API: {escape(card.url)}")]))
    return _message("in_channel", text, blocks)


def engaged(
    command: EngageCommand,
    engagement: Engagement,
    user_id: str,
    *,
    mask: bool = False,
    api: str = "v1",
) -> Message:
    """The card for a run just started from ``command``."""
    card = RunCard(
        sid=engagement.sid,
        status=engagement.status or "unknown",
        flow_sid=command.flow_sid,  # the flow asked for: Twilio echoes it, a mock may not
        flow_alias=command.flow_alias,
        contact=command.to,
        sender=command.sender,
        starter=user_id,
        parameters=command.parameters,
        url=engagement.url,
        api=api,
    )
    return run_card(card, mask=mask)


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
        _section(text=_md(f":warning: *{escape(headline)}*\n{escape(detail)}")),
    ]
    if note:
        blocks.append(_context([_md(escape(note))]))
    return _message("ephemeral", text, blocks)


def invalid_command(error: CommandError) -> Message:
    """Only to the caller: the command did not parse; nothing was sent to Twilio."""
    problem = error.problem
    token = f" (at `{escape(clip(error.token, 200))}`)" if error.token else ""
    text = f"{problem}. Nothing was sent. Usage: {USAGE}"
    blocks: list[Block] = [
        _section(text=_md(f":x: {escape(problem)}{token}\nNothing was sent to Twilio.")),
        _context([_md(f"Usage: `{escape(USAGE)}` · `/engage help` for examples")]),
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
    return _message("ephemeral", text, [_section(text=_md(f"```{escape(text)}```"))])


def _notice(emoji: str, text: str) -> Message:
    return _message("ephemeral", text, [_section(text=_md(f"{emoji} {escape(text)}"))])


def refused(reason: str) -> Message:
    """Only to the caller: a guardrail forbids this command; nothing was sent."""
    return _notice(":no_entry:", f"Not started: {reason}. Nothing was sent to Twilio.")


def not_allowed(reason: str) -> Message:
    """Only to the caller: the rules forbid reading or ending this run."""
    return _notice(":no_entry:", f"Not allowed: {reason}.")


def rate_limited(wait: float, rate: str, *, starting: bool = True) -> Message:
    """Only to the caller: they have used as many starts (or looks at runs) as
    USER_RATE_LIMIT allows."""
    head = "Not started" if starting else "Not now"
    tail = " Nothing was sent to Twilio." if starting else ""
    return _notice(
        ":stopwatch:",
        f"{head}: you have reached the limit of {rate} (USER_RATE_LIMIT)."
        f" Try again in {max(1, round(wait))} s.{tail}",
    )


def studio_busy() -> Message:
    """Only to the caller: the account's pace (STUDIO_RATE_LIMIT) left no room in time."""
    return _notice(
        ":hourglass:",
        "Studio is busy with this account's requests right now (STUDIO_RATE_LIMIT);"
        " try again in a moment.",
    )


def confirm_duplicate(command: EngageCommand, token: str, window: float) -> Message:
    """Only to the caller: the same flow for the same contact was just started; again?"""
    text = (
        f"You started {flow_label(command)} for {pretty(command.to)} less than"
        f" {round(window)} s ago. Start it again? Nothing has been sent yet."
    )
    blocks: list[Block] = [
        _section(text=_md(f":repeat: {escape(text)}")),
        _confirm_or_cancel(
            AGAIN_ACTION,
            token,
            label="Start again",
            title="Start again?",
            warning=f"{pretty(command.to)} will be contacted a second time.",
        ),
    ]
    return _message("ephemeral", text, blocks)


def _confirm_or_cancel(
    action_id: str, token: str, *, label: str, title: str, warning: str
) -> Block:
    """A red button behind a confirm dialog, and Cancel; both carry only ``token``."""
    go = _button(
        label,
        action_id=action_id,
        value=token,
        style="danger",
        confirm=_confirm(title=title, text=clip(warning, 300), confirm=clip(label, 30), deny="No"),
    )
    return _actions([go, _button("Cancel", action_id=CANCEL_ACTION, value=token)])


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
    return _message("ephemeral", text, [_section(text=_md(f":zzz: {text}"))])


# --- lifecycle: flows, status, end, already active -------------------------------


def flows_message(defaults: Defaults, policy: Policy) -> Message:
    """``/engage flows``: each alias, its SID, the default sender, who may use it."""
    lines = []
    for alias, sid in sorted(defaults.flows.items()):
        marker = " (default)" if sid == defaults.flow_sid else ""
        line = f"• *{escape(alias)}*{marker} `{sid}`"
        access = policy.per_flow.get(sid)
        if access is not None and access.users is not None:
            line += " · users: " + ", ".join(f"<@{u}>" for u in sorted(access.users))
        if access is not None and access.channels is not None:
            line += " · channels: " + ", ".join(f"<#{c}>" for c in sorted(access.channels))
        lines.append(line)
    if defaults.flow_sid and defaults.flow_sid not in defaults.flows.values():
        lines.append(f"• default flow `{defaults.flow_sid}`")
    if not defaults.flows:
        lines.append("No named flows (STUDIO_FLOWS); flows can still be given by SID with --flow.")
    sender = (
        f"Sender: {pretty(defaults.sender)} unless --from says otherwise."
        if defaults.sender
        else ""
    )
    body = clip("\n".join(lines), SECTION_TEXT_MAX - 200)
    blocks: list[Block] = [_section(text=_md(f"*Flows*\n{body}"))]
    if sender:
        blocks.append(_context([_md(escape(sender))]))
    return _message(
        "ephemeral", f"Flows: {', '.join(sorted(defaults.flows)) or 'none named'}", blocks
    )


def looking_up(sid: str) -> Message:
    """The ack to ``/engage status``: the answer follows."""
    return _notice(":mag:", f"Looking up {sid}…")


MAX_STEPS_SHOWN = 20


def status_message(
    run: Engagement, steps: list[Step], context: Any, flow: str, *, mask: bool = False
) -> Message:
    """Only to the caller: status, times, the steps so far and the flow data.

    With ``mask`` the contact shows as the channel card shows it (``MASK_NUMBERS``).
    """
    head = f"{run.sid} of {flow} is {run.status or 'unknown'}"
    address = run.contact_channel_address or "?"
    contact = masked(address) if mask and address != "?" else pretty(address)
    blocks: list[Block] = [
        _section(
            text=_md(f":bar_chart: *{escape(head)}*"),
            fields=[
                _field("Started", _when(run.date_created)),
                _field("Last change", _when(run.date_updated)),
                _field("Contact", escape(contact)),
                _field("Steps", str(len(steps))),
            ],
        )
    ]
    if steps:
        shown = steps[-MAX_STEPS_SHOWN:]
        skipped = len(steps) - len(shown)
        lines = [f"{i}. {escape(step_line(s))}" for i, s in enumerate(shown, start=skipped + 1)]
        more = f"_{skipped} earlier steps not shown_\n" if skipped else ""
        blocks.append(
            _section(text=_md(clip(f"*Steps*\n{more}" + "\n".join(lines), SECTION_TEXT_MAX)))
        )
    if data := subobject(context, "flow").get("data"):
        blocks.append(_section(text=_md("*Flow data*\n" + parameters_text(data))))
    blocks.append(_actions([_console_button(run.flow_sid or "", run.sid)]))
    return _message("ephemeral", head, blocks)


def lookup_failed(sid: str, error: StudioError | None) -> Message:
    """Only to the caller: the run could not be found or read."""
    if error is None:
        return _notice(
            ":grey_question:", f"No engagement {sid} in the configured flows. Try --flow <flow>."
        )
    return _notice(":warning:", f"Could not look up {sid}: {describe_error(error)}")


def who_may_end(starter: str | None) -> str:
    """The End rule in words (mrkdwn: the starter is a mention)."""
    if starter:
        return f"Only <@{starter}>, who started it, or an admin (ADMIN_SLACK_USERS) can end it."
    return (
        "It was not started from this bot (or too long ago to know by whom), so only an"
        " admin (ADMIN_SLACK_USERS) can end it."
    )


def not_allowed_to_end(starter: str | None) -> Message:
    """Only to the clicker: End is for the person who started it, or an admin."""
    text = who_may_end(starter)  # mrkdwn with a real mention, in the blocks and the text
    return _message("ephemeral", text, [_section(text=_md(f":no_entry: {text}"))])


def action_failed(what: str, error: StudioError) -> Message:
    """Only to the clicker: a button's request to Studio failed."""
    return _notice(":warning:", f"Could not {what}: {describe_error(error)}")


def already_active(
    command: EngageCommand,
    error: StudioError,
    active: Engagement | None,
    token: str | None,
    *,
    starter: str | None = None,
    api: str = "v1",
) -> Message:
    """Only to the caller: Twilio allows one active run per contact and sender.

    ``token`` is None when the caller may not end the active run (the End rule): then
    the message says who may, instead of offering to.
    """
    head = (
        f"{pretty(command.to)} already has an active run of {flow_label(command)}"
        " (Twilio allows one per contact and sender), so nothing new was started."
    )
    detail = f"Twilio said: {describe_error(error)}"
    blocks: list[Block] = [
        _section(text=_md(f":no_entry_sign: {escape(head)}")),
        _context([_md(escape(detail))]),
    ]
    text = f"{head} {detail}"
    if active is None:
        blocks.append(
            _section(
                text=_md(
                    "The active run was not found among the newest runs; end it from the"
                    " flow's executions in the Twilio Console."
                )
            )
        )
        blocks.append(
            _actions(
                [
                    _button(
                        "Open the flow's executions",
                        url=console_url(command.flow_sid),
                        action_id=CONSOLE_ACTION,
                    )
                ]
            )
        )
        return _message("ephemeral", text, blocks)
    text += f" Active: {active.sid}."
    if token is None:
        blocks.append(_section(text=_md(f"Active: `{active.sid}`. {who_may_end(starter)}")))
        blocks.append(_actions([_console_button(command.flow_sid, active.sid)]))
        return _message("ephemeral", text, blocks)
    verb = "End" if api == "v2" else "Delete"
    restart = _confirm_or_cancel(
        RESTART_ACTION,
        token,
        label=f"{verb} it and start again",
        title=f"{verb} the active run?",
        warning=f"{active.sid}: {end_confirm_text(api)} Then the flow starts again for"
        f" {pretty(command.to)}.",
    )
    blocks.append(restart)
    return _message("ephemeral", text, blocks)
