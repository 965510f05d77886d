"""What the bot says in words, for Slack and the terminal alike. Pure: no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bot.domain.command import Defaults, EngageCommand
from bot.domain.consent import SOURCE_TEXT, OptOut, Suppressed
from bot.domain.contact_clock import opening_text
from bot.domain.durations import duration
from bot.domain.errors import StudioError
from bot.domain.flows import Findings, FlowInfo
from bot.domain.grammar import USAGE, argv_to_text
from bot.domain.phone import pretty
from bot.domain.run import Step

if TYPE_CHECKING:
    from bot.domain.results import Refused


def label(alias: str | None, flow_sid: str, name: str | None = None) -> str:
    """A flow for people: ``reminder · Renewal reminder`` (alias and Studio's name), the
    name alone, or with the SID while Studio's name is not known: ``reminder (FW…)``."""
    if alias and name:
        return f"{alias} · {name}"
    if name:
        return name
    return f"{alias} ({flow_sid})" if alias else flow_sid


def flow_label(command: EngageCommand) -> str:
    """``command``'s flow as ``label`` shows it."""
    return label(command.flow_alias, command.flow_sid, command.flow_name)


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


# The grammar's examples, as a shell would split them: Slack shows them as /engage text
# (``argv_to_text``), the terminal quoted for a shell (``shlex.join``).
EXAMPLES: tuple[tuple[str, ...], ...] = (
    ("+16175551212", "first_name=Zeke"),
    ("+1 617 555 1212", "name=Zeke Smith", "plan=gold", "vip:=true"),
    ("+16175551212", "customer.name=Zeke", 'tags:=["a","b"]'),
    ("+16175551212", '{"first_name": "Zeke", "count": 3}'),
    ("+16175551212", "--from", "+16175550100"),
)


def help_text(defaults: Defaults, command: str = "/engage") -> str:
    """Usage, examples and the configured flows, as mrkdwn-friendly plain text."""
    lines = [
        f"Usage: {USAGE.replace('/engage', command, 1)}",
        "",
        "Examples:",
        *(f"  {command} {argv_to_text(words)}" for words in EXAMPLES),
        f"  {command} +16175551212 --at 09:00   (09:00 in the contact's time; or --in 2h,"
        ' --at "2026-12-03 09:00", --at "09:00 America/Chicago")',
    ]
    if defaults.flows:
        alias = sorted(defaults.flows)[0]
        lines.append(f"  {command} {alias} +16175551212 first_name=Zeke")
    lines += [
        "",
        "key=value sends a string, key:=json a JSON value; dots nest (customer.name=Zeke).",
        "Each key reaches the flow as {{flow.data.key}}.",
        "",
        f"Also: {command} status FN… · {command} flows · {command} help <flow>",
        f"      {command} report [flow] [--since 7d] [--csv]  (how the runs went: only you see it)",
        f"      {command} scheduled  (your scheduled starts, with Cancel)",
        f"      {command} optout +16175551212 [reason]  (never start a flow for them again)",
        f"      {command} optin +16175551212 <reason> · {command} optouts  (admins)",
        "",
        "Nothing starts in the contact's quiet hours (their local time): you are offered"
        " their next window instead, nor for a contact who opted out (replied STOP).",
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


# --- flows as Studio knows them ------------------------------------------------------

REST_FIX = (
    "In Studio, open the flow, connect the Trigger widget's REST API transition to the"
    " widget that should run first, and publish the flow."
)


def configured_flows(defaults: Defaults) -> list[tuple[str | None, str]]:
    """(alias, SID) of every configured flow: the named ones, then an unnamed default."""
    flows: list[tuple[str | None, str]] = sorted(defaults.flows.items())
    if defaults.flow_sid and defaults.flow_sid not in defaults.flows.values():
        flows.append((None, defaults.flow_sid))
    return flows


def parameters_line(info: FlowInfo | None) -> str:
    """``needs first_name, plan · may use vip`` (or why it is not known)."""
    if info is None:
        return "parameters: not known (Studio's Flows API could not be asked)"
    read = info.analysis.parameters
    parts = []
    if read.required:
        parts.append("needs " + ", ".join(sorted(read.required)))
    if read.optional:
        parts.append("may use " + ", ".join(sorted(read.optional)))
    if read.reads_anything:
        parts.append("reads flow.data as a whole (any parameter may matter)")
    return " · ".join(parts) or "reads no parameters"


def flow_summary(alias: str | None, sid: str, info: FlowInfo | None, *, default: bool) -> str:
    """One flow in a listing: its label, SID, status, REST-readiness, parameters."""
    head = label(alias, sid, info.name if info else None)
    marks = [sid] + (["default"] if default else [])
    if info is not None and info.status and info.status != "published":
        marks.append(info.status)
    lines = [f"{head} ({', '.join(marks)})"]
    if info is not None and info.analysis.rest_ready is False:
        lines.append("  ⚠ REST API trigger not connected: starting it reaches nobody.")
    lines.append("  " + parameters_line(info))
    return "\n".join(lines)


def findings_text(found: Findings, quote: str = "`") -> str:
    """What is wrong with a command's parameters, in one sentence per kind (names in
    ``quote``: Slack's code marks, or plain quotes for a terminal)."""
    q = quote
    parts = []
    if found.missing:
        parts.append("it needs " + ", ".join(f"{q}{p}{q}" for p in found.missing) + ", not given")
    for given, close in found.unknown:
        hint = f" (did you mean {q}{close}{q}?)" if close else ""
        parts.append(f"it never reads {q}{given}{q}{hint}")
    return "; ".join(parts)


def refusal_text(
    command: EngageCommand, why: Refused, rate: str = "", window: float = 0.0, now: float = 0.0
) -> str:
    """Why a start was stopped (``Refused``), as plain text: for a terminal, a
    results file, a workflow step's output. Nothing was sent."""
    flow = flow_label(command)
    if why.kind == "quiet_hours" and why.opening is not None:
        return f"it is quiet hours for the contact (QUIET_HOURS): {opening_text(why.opening)}"
    if why.kind == "duplicate":
        within = f"less than {round(window)} s ago " if window else "just now "
        return (
            f"{flow} was started for {pretty(command.to)} {within}by the same person"
            " (DUPLICATE_WINDOW_SECONDS)"
        )
    if why.kind == "rate_limited":
        limit = f"{rate} (USER_RATE_LIMIT)" if rate else "USER_RATE_LIMIT"
        return f"the limit of {limit} is reached; try again in {max(1, round(why.wait))} s"
    if why.kind in ("opted_out", "capped") and why.suppressed is not None:
        return suppressed_text(why.suppressed, pretty(command.to), now)
    if why.kind == "unchecked":
        return UNCHECKED
    if why.kind == "not_rest_ready":
        return f"the REST API trigger of {flow} is not connected, so a run would reach nobody. {REST_FIX}"
    if why.kind == "parameters" and why.findings is not None:
        return f"{flow} does not fit these parameters: {findings_text(why.findings, quote=chr(39))}"
    return why.reason


UNCHECKED = (
    "the opt-out list could not be read (the shared state is unavailable), so nothing was"
    " started; try again in a minute"
)


def day(epoch: float) -> str:
    """``2026-12-03 14:05 UTC``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def optout_line(entry: OptOut) -> str:
    """``opted out 2026-12-03 14:05 UTC: replied with an opt-out word (STOP)``: when and how."""
    how = SOURCE_TEXT[entry.source]
    why = f" ({entry.reason})" if entry.reason else ""
    by = f", by {entry.by}" if entry.by else ""
    return f"opted out {day(entry.at)}: {how}{why}{by}"


def suppressed_text(suppressed: Suppressed, contact: str, now: float = 0.0) -> str:
    """Why a start to ``contact`` (shown as the medium needs) was not made, for people: it
    opted out (when and how), or it reached its cap (which, and when it may be reached
    again; ``now`` for how long from now)."""
    if suppressed.kind == "opted_out" and suppressed.optout is not None:
        return (
            f"{contact} {optout_line(suppressed.optout)}. Nothing is started for them until"
            " an admin runs /engage optin"
        )
    wait = f"in {duration(suppressed.until - now, smallest='min')}, " if now else ""
    return (
        f"{contact} was reached as often as the cap allows ({suppressed.cap}); they may be"
        f" reached again {wait}from {day(suppressed.until)}"
    )


def consent_detail(suppressed: Suppressed) -> str:
    """The audit's detail of a start refused on consent (no number in it)."""
    if suppressed.kind == "opted_out" and suppressed.optout is not None:
        return f"{optout_line(suppressed.optout)}"
    return f"cap {suppressed.cap}; reachable again {day(suppressed.until)}"
