"""Answers to commands and clicks: acks, refusals, failures, listings. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from bot.domain.command import Defaults, EngageCommand
from bot.domain.errors import CommandError, StudioError
from bot.domain.flows import Findings, FlowInfo
from bot.domain.grammar import USAGE
from bot.domain.phone import pretty
from bot.domain.policy import Policy
from bot.domain.text import (
    REST_FIX,
    UNCHECKED,
    configured_flows,
    describe_error,
    findings_text,
    flow_label,
    flow_summary,
    help_text,
    outcome_note,
    who_may_end,
)
from bot.slack.messages import consent as consent_messages
from bot.slack.messages.blocks import (
    SECTION_TEXT_MAX,
    Block,
    Message,
    clip,
    context,
    escape,
    fenced,
    lines_within,
    md,
    message,
    notice,
    section,
)

if TYPE_CHECKING:
    from bot.domain.results import Refused


def starting(command: EngageCommand) -> Message:
    """The immediate ack: only the caller sees it; the result follows in the channel."""
    text = (
        f":hourglass_flowing_sand: Starting *{escape(flow_label(command))}*"
        f" for {escape(pretty(command.to))}…"
    )
    return message("ephemeral", text, [section(text=md(text))], markup=True)


def engage_failed(command: EngageCommand, error: StudioError) -> Message:
    """Only to the caller: the engagement could not be started (or may have been)."""
    headline = f"Could not start {flow_label(command)} for {pretty(command.to)}"
    if error.outcome_unknown:
        headline = f"Not sure whether {flow_label(command)} started for {pretty(command.to)}"
    detail = describe_error(error)
    note = outcome_note(error)
    text = f"{headline}: {detail}" + (f" {note}" if note else "")
    blocks: list[Block] = [
        section(text=md(f":warning: *{escape(headline)}*\n{escape(detail)}")),
    ]
    if note:
        blocks.append(context([md(escape(note))]))
    return message("ephemeral", text, blocks)


def invalid_command(error: CommandError) -> Message:
    """Only to the caller: the command did not parse; nothing was sent to Twilio."""
    problem = error.problem
    token = f" (at `{escape(clip(error.token, 200))}`)" if error.token else ""
    text = f"{problem}. Nothing was sent. Usage: {USAGE}"
    blocks: list[Block] = [
        section(text=md(f":x: {escape(problem)}{token}\nNothing was sent to Twilio.")),
        context([md(f"Usage: `{escape(USAGE)}` · `/engage help` for examples")]),
    ]
    return message("ephemeral", text, blocks)


def help_message(defaults: Defaults, command: str = "/engage") -> Message:
    """``/engage help``: usage, examples and the configured flows, to the caller only."""
    text = help_text(defaults, command)
    return message("ephemeral", text, [section(text=md(fenced(text)))])


def notice_message(emoji: str, text: str) -> Message:
    """Only to the caller: one line."""
    return notice(emoji, text)


def refused(reason: str) -> Message:
    """Only to the caller: a guardrail forbids this command; nothing was sent."""
    return notice(":no_entry:", f"Not started: {reason}. Nothing was sent to Twilio.")


def refusal(command: EngageCommand, why: Refused, rate: str, now: float = 0.0) -> Message:
    """Only to the caller: why a start was stopped (``engage.Refused``); nothing was sent.
    ``now``: to say how long until a capped contact may be reached again."""
    if why.suppressed is not None:
        return consent_messages.suppressed(command, why.suppressed, now)
    if why.kind == "unchecked":
        return refused(UNCHECKED)
    if why.kind == "rate_limited":
        return rate_limited(why.wait, rate)
    if why.kind == "not_rest_ready":
        return not_rest_ready(command)
    if why.kind == "duplicate":
        return refused("you started the same flow for this contact just now")
    if why.kind == "parameters" and why.findings is not None:
        return parameters_refused(command, why.findings)
    return refused(why.reason)


def not_allowed(reason: str) -> Message:
    """Only to the caller: the rules forbid this (reading or ending a run, the opt-out
    list's admin commands); nothing was changed."""
    return notice(":no_entry:", f"Not allowed: {reason}.")


def rate_limited(wait: float, rate: str, *, starting: bool = True) -> Message:
    """Only to the caller: they have used as many starts (or looks at runs) as
    USER_RATE_LIMIT allows."""
    head = "Not started" if starting else "Not now"
    tail = " Nothing was sent to Twilio." if starting else ""
    return notice(
        ":stopwatch:",
        f"{head}: you have reached the limit of {rate} (USER_RATE_LIMIT)."
        f" Try again in {max(1, round(wait))} s.{tail}",
    )


def shutting_down() -> Message:
    """The bot is restarting and took no new command."""
    text = (
        "The bot is restarting and did not take this command."
        " Nothing was sent; try again in a minute."
    )
    return message("ephemeral", text, [section(text=md(f":zzz: {text}"))])


# --- lifecycle: flows, status, end, already active -------------------------------


def flows_message(
    defaults: Defaults, policy: Policy, infos: Mapping[str, FlowInfo | None]
) -> Message:
    """``/engage flows``: each flow with Studio's name, REST-readiness and parameters,
    who may use it, and the default sender."""
    lines = []
    for alias, sid in configured_flows(defaults):
        line = escape(flow_summary(alias, sid, infos.get(sid), default=sid == defaults.flow_sid))
        access = policy.per_flow.get(sid)
        if access is not None and access.users is not None:
            line += "\n  users: " + ", ".join(f"<@{u}>" for u in sorted(access.users))
        if access is not None and access.channels is not None:
            line += "\n  channels: " + ", ".join(f"<#{c}>" for c in sorted(access.channels))
        sender = defaults.flow_senders.get(sid)
        if sender:
            line += f"\n  sends from {escape(pretty(sender))}"
        lines.append("• " + line)
    if not defaults.flows:
        lines.append("No named flows (STUDIO_FLOWS); flows can still be given by SID with --flow.")
    body = lines_within(lines, SECTION_TEXT_MAX - 200, "flows")
    blocks: list[Block] = [section(text=md(f"*Flows*\n{body}"))]
    if defaults.sender:
        note = f"Sender: {pretty(defaults.sender)} unless --from says otherwise."
        blocks.append(context([md(escape(note))]))
    names = [alias or sid for alias, sid in configured_flows(defaults)]
    return message("ephemeral", f"Flows: {', '.join(names) or 'none'}", blocks)


def reading_flows() -> Message:
    """The ack while the bot asks Studio about the flows; the answer follows."""
    return notice(":mag:", "Asking Studio about the flows…")


def flow_help(
    alias: str | None, sid: str, info: FlowInfo | None, command: str = "/engage"
) -> Message:
    """``/engage help <flow>``: the flow, whether it can be started, what it reads."""
    summary = flow_summary(alias, sid, info, default=False)
    example = [command, alias or f"--flow {sid}", "+16175551212"]
    if info is not None:
        example += [f"{key}=…" for key in sorted(info.analysis.parameters.required)]
    text = f"{summary}\nExample: {' '.join(example)}"
    if info is not None and info.analysis.rest_ready is False:
        text += f"\n{REST_FIX}"
    return message("ephemeral", text, [section(text=md(fenced(text)))])


def not_rest_ready(command: EngageCommand) -> Message:
    """Only to the caller: the flow cannot be started over the REST API; nothing was sent."""
    return notice(
        ":no_entry:",
        f"Not started: the REST API trigger of {flow_label(command)} is not connected, so an"
        f" execution would end at once and reach nobody. {REST_FIX} Nothing was sent to Twilio.",
    )


def parameters_refused(command: EngageCommand, found: Findings) -> Message:
    """Only to the caller: FLOW_PARAMETER_CHECK=refuse, and the parameters do not fit."""
    return notice(
        ":no_entry:",
        f"Not started: {flow_label(command)} does not fit these parameters: "
        f"{findings_text(found)}. Nothing was sent to Twilio.",
    )


def looking_up(sid: str) -> Message:
    """The ack to ``/engage status``: the answer follows."""
    return notice(":mag:", f"Looking up {sid}…")


def lookup_failed(sid: str, error: StudioError | None) -> Message:
    """Only to the caller: the run could not be found or read."""
    if error is None:
        return notice(
            ":grey_question:", f"No engagement {sid} in the configured flows. Try --flow <flow>."
        )
    return notice(":warning:", f"Could not look up {sid}: {describe_error(error)}")


def not_allowed_to_end(starter: str | None) -> Message:
    """Only to the clicker: End is for the person who started it, or an admin."""
    text = who_may_end(starter)  # mrkdwn with a real mention, in the blocks and the text
    return message("ephemeral", text, [section(text=md(f":no_entry: {text}"))], markup=True)


def action_failed(what: str, error: StudioError) -> Message:
    """Only to the clicker: a button's request to Studio failed."""
    return notice(":warning:", f"Could not {what}: {describe_error(error)}")


def state_unavailable() -> Message:
    """Only to the clicker: the shared state (Redis) holding what the button stands for did
    not answer."""
    return notice(
        ":warning:",
        "The bot's shared state (Redis) is not answering, so this cannot be done right now."
        " Nothing was sent; try again in a minute.",
    )


def invite_for_updates() -> Message:
    """Only to the starter, once: the card cannot follow the run where the bot is not."""
    return notice(
        ":information_source:",
        "The bot cannot post in this conversation, so its card will not follow the run"
        " closely (Slack allows a few updates through the command's reply link)."
        " Invite the bot (/invite @engage) for live updates.",
    )


def thread_note(text: str) -> Message:
    """A reply in a card's thread: ``text`` is the bot's own mrkdwn (mentions stay
    mentions); anything from outside in it was escaped by its builder (``end_note``)."""
    return message("in_channel", text, [section(text=md(text))], markup=True)


def end_note(starter: str, flow: str, sid: str, ending: str, answers: Mapping[str, str]) -> Message:
    """The thread reply that tells the starter how a run ended, with what the contact
    answered. The flow's name, the ending (Studio's widget names) and the answers come
    from outside: escaped, so a contact's reply cannot ping the channel or hide a link."""
    text = f"<@{starter}> {escape(flow)}: {sid} {escape(ending)}."
    if answers:
        said = "; ".join(f"{escape(f)}: “{escape(v[:100])}”" for f, v in answers.items())
        text += f" Answers: {said}."
    return thread_note(text)


def card_stuck_note(starter: str, sid: str, ending: str, channel: str) -> Message:
    """To the starter: the run ended but Slack kept refusing the card's edit."""
    return thread_note(
        f"<@{starter}> {sid} {escape(ending)}, but Slack did not let the bot update its card"
        f" in <#{channel}> (rate limited)."
    )
