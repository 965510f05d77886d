"""``python -m bot``: serve Slack (the default) or ``trigger`` one engagement from a terminal.

Exit status: 0 done; 1 Twilio refused or could not be reached (nothing started);
2 bad command or configuration (nothing sent); 3 outcome unknown (the flow may
have started: check the Console before trying again).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from collections.abc import Sequence
from typing import TextIO

import httpx

from bot import __version__
from bot.app.config import Settings, load_settings
from bot.app.factories import state_store, studio_client, throttle
from bot.domain.caller import Caller
from bot.domain.command import Defaults, EngageCommand, HelpCommand
from bot.domain.errors import CommandError, ConfigError
from bot.domain.grammar import USAGE as COMMAND_USAGE
from bot.domain.grammar import argv_to_text, parse
from bot.domain.phone import pretty
from bot.domain.policy import destination_refusal
from bot.domain.results import Refused, Started
from bot.domain.run import console_url
from bot.domain.text import EXAMPLES, configured_flows, findings_text, flow_summary, refusal_text
from bot.engage.start import Engager, StartRequest, engagement_request
from bot.infra.audit import LogFormatter
from bot.runs.records import Records
from bot.slack.messages import describe_error, flow_label, outcome_note
from bot.state.store import BestEffort, Durable
from bot.studio.catalog import FlowCatalog

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNKNOWN = 0, 1, 2, 3

USAGE = """\
usage: python -m bot [serve]                       serve Slack (HTTP on $PORT, or Socket Mode)
       python -m bot trigger [--dry-run] [--force] [flow] <to> [key=value ...] [key:=json ...]
                             [--from <sender>] [--flow <alias|FW sid>]
       python -m bot trigger help [flow]          the grammar with examples, or one flow
       python -m bot flows                        the configured flows, as Studio has them
       python -m bot --version"""

# What /engage does that a terminal does not: said instead of "unknown".
SLACK_ONLY = {
    "status": "/engage status FN… in Slack (or the run's page in the Twilio Console)",
    "report": "/engage report in Slack",
    "scheduled": "/engage scheduled in Slack (the terminal starts now; it keeps no schedules)",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Serving logs to stdout (a PaaS collects it); the tools keep stdout for their result.
    tool = args[:1] in (["trigger"], ["flows"])
    handler = logging.StreamHandler(sys.stderr if tool else sys.stdout)
    handler.setFormatter(LogFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args and args[0] in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK
    if args and args[0] == "--version":
        print(f"studio-engage {__version__}")
        return EXIT_OK
    if args[:1] in (["trigger"], ["flows"]) and any(a in ("-h", "--help") for a in args[1:]):
        print(USAGE)
        return EXIT_OK
    if args and args[0] == "trigger":
        return trigger(args[1:])
    if args == ["flows"]:
        return flows()
    if not args or args == ["serve"]:
        return serve()
    print(f"unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
    return EXIT_USAGE


def serve() -> int:
    from bot.app.server import run  # imported here: `trigger` needs none of Slack's stack

    try:
        settings = load_settings(need_slack=True)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if settings.log_format == "json":
        for handler in logging.getLogger().handlers:
            handler.setFormatter(LogFormatter(json_lines=True))
    return run(settings)


def flows(out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The configured flows with Studio's names, REST-readiness and parameters."""
    try:
        settings = load_settings(need_slack=False)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    return asyncio.run(_flows(settings, out))


async def _flows(settings: Settings, out: TextIO) -> int:
    defaults = settings.command_defaults
    async with studio_client(settings) as studio:
        catalog = FlowCatalog(studio, BestEffort(), ttl=0)
        for alias, sid in configured_flows(defaults):
            info = await catalog.get(sid)
            print(flow_summary(alias, sid, info, default=sid == defaults.flow_sid), file=out)
    return EXIT_OK


def trigger(words: list[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Start one engagement with the same parser and client as the Slack command."""
    dry_run, force = "--dry-run" in words, "--force" in words
    words = [w for w in words if w not in ("--dry-run", "--force")]
    if words[:1] == ["flows"]:
        return flows(out, err)  # what `python -m bot flows` does
    if words and words[0] in SLACK_ONLY:
        print(f"error: {words[0]} is not in the terminal: {SLACK_ONLY[words[0]]}", file=err)
        return EXIT_USAGE
    try:
        settings = load_settings(need_slack=False)
    except ConfigError as exc:
        print(exc, file=err)
        return EXIT_USAGE
    try:
        command = parse(argv_to_text(words), settings.command_defaults)
    except CommandError as exc:
        print(f"error: {exc}\nUsage: {COMMAND_USAGE}", file=err)
        return EXIT_USAGE
    if isinstance(command, HelpCommand):
        if command.flow_sid is not None:
            return asyncio.run(_flow_help(settings, command, out))
        print(terminal_help(settings.command_defaults), file=out)
        return EXIT_OK
    if not isinstance(command, EngageCommand):
        print(
            "error: trigger starts one flow for one contact; see: python -m bot trigger help",
            file=err,
        )
        return EXIT_USAGE
    if command.when is not None:
        print("error: --at and --in schedule starts from Slack; trigger starts now", file=err)
        return EXIT_USAGE
    if dry_run and (reason := destination_refusal(settings.policy, command)):
        print(f"error: not started: {reason}; nothing was sent", file=err)
        return EXIT_USAGE
    return asyncio.run(_trigger(settings, command, out, err, dry_run=dry_run, force=force))


async def _flow_help(settings: Settings, command: HelpCommand, out: TextIO) -> int:
    """``trigger help <flow>``: that flow as Studio has it, and a terminal example."""
    assert command.flow_sid is not None
    async with studio_client(settings) as studio:
        info = await FlowCatalog(studio, BestEffort(), ttl=0).get(command.flow_sid)
    print(flow_summary(command.flow_alias, command.flow_sid, info, default=False), file=out)
    example = ["python -m bot trigger", command.flow_alias or f"--flow {command.flow_sid}"]
    example.append("+16175551212")
    if info is not None:
        example += [f"{key}=…" for key in sorted(info.analysis.parameters.required)]
    print("Example: " + " ".join(example), file=out)
    return EXIT_OK


def terminal_help(defaults: Defaults) -> str:
    """``trigger help``: the grammar with examples quoted for a shell, and what the
    terminal has (and what only Slack has)."""
    run = "python -m bot trigger"
    lines = [
        f"Usage: {run} [--dry-run] [--force] [flow] <to> [key=value ...] [key:=json ...]"
        " [--from <sender>] [--flow <flow>]",
        "",
        "Examples (quoted for a shell):",
        *(f"  {run} {shlex.join(words)}" for words in EXAMPLES),
        f"  {run} --dry-run +16175551212 first_name=Zeke   (the request and the flow checks;"
        " sends nothing)",
    ]
    if defaults.flows:
        first = sorted(defaults.flows)[0]
        lines.append(f"  {run} {first} +16175551212 first_name=Zeke")
    lines += [
        "",
        "key=value sends a string, key:=json a JSON value; dots nest (customer.name=Zeke).",
        "Each key reaches the flow as {{flow.data.key}}. --force starts despite parameter"
        " findings.",
        "",
        f"Also: {run} help <flow> · python -m bot flows",
        "In Slack only: /engage status, /engage report, /engage scheduled, --at and --in.",
        "Quiet hours hold here too: a contact in their night is not started.",
        "",
        "Flows:",
    ]
    for name, sid in configured_flows(defaults):
        marker = " (default)" if sid == defaults.flow_sid else ""
        lines.append(f"  {name or 'default'}: {sid}{marker}")
    if defaults.sender:
        lines.append(f"Sender: {pretty(defaults.sender)} unless --from says otherwise.")
    if not defaults.region:
        lines.append("Write numbers with their country code: +<country code><number>.")
    return "\n".join(lines)


async def _trigger(
    settings: Settings,
    command: EngageCommand,
    out: TextIO,
    err: TextIO,
    *,
    dry_run: bool,
    force: bool,
) -> int:
    async with studio_client(settings) as studio:
        # The same entry as every start: the destination rules, the flow checks, the
        # account's pace (shared with the bot through REDIS_URL), the audit line.
        store = state_store(settings)
        engager = Engager(
            studio,
            policy=settings.policy,
            throttle=throttle(settings, store),
            catalog=FlowCatalog(studio, BestEffort(store), settings.flow_cache_seconds),
            parameter_check="off" if settings.flow_parameter_check == "off" else "refuse",
            clock=settings.contact_clock,  # quiet hours hold here too
            # kept with the bot's records (through REDIS_URL), followed by the bot
            records=Records(
                Durable(store),
                days=settings.run_record_days,
                follow_hours=settings.bulk_follow_hours,
            ),
        )
        try:
            if dry_run:
                print(describe_request(engagement_request(studio, command), settings), file=out)
                print(await describe_checks(engager, command), file=out)
                print("\n(dry run: nothing was sent)", file=out)
                return EXIT_OK
            caller = Caller("terminal", terminal=True)
            outcome = await engager.start(StartRequest(command, caller, confirmed=force))
        finally:
            await store.aclose()
    if isinstance(outcome, Refused):
        print(f"error: not started: {refusal_text(command, outcome)}; nothing was sent", file=err)
        return EXIT_USAGE
    if not isinstance(outcome, Started):
        print(f"error: {describe_error(outcome.error)}", file=err)
        if note := outcome_note(outcome.error):
            print(note, file=err)
            return EXIT_UNKNOWN
        return EXIT_FAILED
    engagement = outcome.engagement
    link = console_url(engagement.flow_sid or command.flow_sid, engagement.sid)
    print(f"{engagement.sid} {engagement.status or 'unknown'} {link}", file=out)
    print(f"  flow:    {flow_label(engager.named(command))}", file=out)  # Studio's name, once read
    print(f"  to:      {pretty(command.to)}", file=out)
    print(f"  from:    {pretty(command.sender)}", file=out)
    if engagement.url:
        print(f"  api:     {engagement.url}", file=out)
    return EXIT_OK


async def describe_checks(engager: Engager, command: EngageCommand) -> str:
    """What the flow checks find, for ``--dry-run``."""
    info, found = await engager.inspect(command)
    if info is None:
        return "\nflow checks: off (Studio's Flows API could not be asked)"
    lines = ["", "flow: " + flow_summary(command.flow_alias, command.flow_sid, info, default=False)]
    if info.analysis.rest_ready is False:
        lines.append("would be refused: the REST API trigger is not connected")
    if found:
        lines.append(f"parameters: {findings_text(found)} (trigger stops unless --force)")
    elif info.analysis.rest_ready is not False:
        lines.append("parameters: as the flow reads them")
    return "\n".join(lines)


def describe_request(request: httpx.Request, settings: Settings) -> str:
    """The request as it would go out, credentials masked."""
    username, _ = settings.twilio_credentials
    user_var, secret_var = settings.credential_names
    lines = [
        f"{request.method} {request.url}",
        f"Authorization: Basic {user_var}:{secret_var} ({username}:********)",
    ]
    lines += [f"{name}: {value}" for name, value in request.headers.items() if name != "host"]
    lines.append("")
    body = request.read().decode()
    lines += [f"{key}={value}" for key, value in httpx.QueryParams(body).multi_items()]
    return "\n".join(lines)
