"""What the bot says in words, for Slack and the terminal alike. Pure: no I/O."""

from __future__ import annotations

from bot.command import USAGE, Defaults, EngageCommand
from bot.errors import StudioError
from bot.phone import pretty
from bot.studio import Step


def label(alias: str | None, flow_sid: str) -> str:
    """``onboarding (FW…)``, or the bare SID when the flow has no alias."""
    return f"{alias} ({flow_sid})" if alias else flow_sid


def flow_label(command: EngageCommand) -> str:
    """``command``'s flow as ``label`` shows it."""
    return label(command.flow_alias, command.flow_sid)


def end_confirm_text(api: str) -> str:
    """What the End button's confirm dialog (and the README) says it does."""
    if api == "v2":
        return "The execution ends now: the flow stops where it is. The contact is not told."
    return (
        "Studio's v1 API cannot end an engagement, so this deletes it and its step log"
        " to stop the flow. This cannot be undone."
    )


def step_line(step: Step) -> str:
    """``Say hello (say-play): Trigger → greeting``"""
    kind = f" ({step.type})" if step.type else ""
    hop = f": {step.transitioned_from or '?'} → {step.transitioned_to or '?'}"
    return f"{step.name or step.sid}{kind}{hop}"


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


def who_may_end(starter: str | None) -> str:
    """The End rule in words (mrkdwn: the starter is a mention)."""
    if starter:
        return f"Only <@{starter}>, who started it, or an admin (ADMIN_SLACK_USERS) can end it."
    return (
        "It was not started from this bot (or too long ago to know by whom), so only an"
        " admin (ADMIN_SLACK_USERS) can end it."
    )
