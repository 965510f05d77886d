"""The ``/engage`` grammar: text as Slack sends it -> a command (``bot.domain.command``).

Pure: no I/O. ``parse`` either returns a command or raises ``CommandError``,
whose text names the offending token and shows the usage line. Nothing else
ever escapes it, whatever the input.

    /engage <to> [key=value ...] [key:=json ...] [--from <sender>] [--flow <alias|FW sid>]
            [--at <time> | --in <span>]
    /engage <alias> <to> [...]
    /engage <to> {"json": "object"}
    /engage help
    /engage report [flow] [--since 7d] [--csv]
    /engage scheduled
    /engage optout <to> [reason]
    /engage optin <to> <reason>
    /engage optouts
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from bot.domain import parameters
from bot.domain.command import (
    FLOW_SID,
    MAX_REPORT_DAYS,
    RUN_SID,
    BulkCommand,
    Command,
    Defaults,
    EngageCommand,
    FlowsCommand,
    HelpCommand,
    OptInCommand,
    OptOutCommand,
    OptOutsCommand,
    ReportCommand,
    ScheduledCommand,
    StatusCommand,
)
from bot.domain.contact_clock import When, parse_at, parse_in
from bot.domain.durations import parse_span
from bot.domain.errors import CommandError, ParameterError, PhoneError
from bot.domain.phone import (
    channel_mismatch,
    is_messaging_service,
    looks_like_phone,
    normal_sid,
    parse_address,
    parse_sender,
)
from bot.domain.scanner import (
    START_OPTIONS_TEXT,
    Item,
    Object,
    Option,
    Scanner,
    Token,
    Word,
    normalise,
)

USAGE = (
    "/engage [flow] <to> [key=value ...] [key:=json ...] [--from <sender>] [--flow <flow>]"
    " [--at 09:00 | --in 2h]"
)

_START_OPTIONS = ("from", "flow", "at", "in")  # what a start takes


# --- tokens -------------------------------------------------------------------


def parse(text: str, defaults: Defaults) -> Command:
    """Parse the text of a ``/engage`` command. Raises ``CommandError``."""
    try:
        tokens = Scanner(normalise(text)).tokens()
        return _build(tokens, defaults)
    except RecursionError:
        raise CommandError("the JSON is nested too deeply") from None


def argv_to_text(words: Sequence[str]) -> str:
    """Words as the shell split them -> ``/engage`` text, re-quoting what holds spaces."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for typed in words:
        word = typed.replace("&", "&amp;")  # the parser undoes Slack's escaping: &lt; stays
        key, sep, value = word.partition("=")
        if word.startswith("{") or (sep and key.endswith(":")):
            out.append(word)  # JSON: spaces and quotes are its own
        elif sep and (any(c.isspace() or c in "<>" for c in value) or value[:1] in "\"'"):
            out.append(f"{key}={quoted(value)}")  # <…> would read as a Slack link
        elif any(c.isspace() for c in word):
            out.append(quoted(word))
        else:
            out.append(word)
    return " ".join(out)


# --- from tokens to a command ------------------------------------------------

_BARE: dict[str, type[FlowsCommand | ScheduledCommand | OptOutsCommand]] = {
    "flows": FlowsCommand,
    "scheduled": ScheduledCommand,
    "optouts": OptOutsCommand,
}  # the verbs that take nothing more


def _build(tokens: list[Token], defaults: Defaults) -> Command:
    first = tokens[0].text.lower() if tokens and isinstance(tokens[0], Word) else None
    if not tokens or first == "help":
        return _help(tokens[1:], defaults)
    if first in _BARE:
        if len(tokens) > 1:
            raise CommandError(f"/engage {first} takes nothing more", _raw(tokens[1]))
        return _BARE[first]()
    if first == "status":
        return _status(tokens[1:], defaults)
    if first == "report":
        return _report(tokens[1:], defaults)
    if first in ("optout", "optin"):
        return _consent(first, tokens[1:], defaults)
    if other := next(
        (t for t in tokens if isinstance(t, Option) and t.name not in _START_OPTIONS), None
    ):
        raise CommandError(f"unknown option --{other.name}: {START_OPTIONS_TEXT}", other.raw)
    words = [t.text for t in tokens if isinstance(t, Word)]

    options: dict[str, Option] = {}
    for token in tokens:
        if isinstance(token, Option):
            if token.name in options:
                raise CommandError(f"--{token.name} is given twice", token.raw)
            options[token.name] = token

    flow_word: str | None = None
    if words and not all(looks_like_phone(p) for p in words[0].split(",") if p):
        flow_word = words.pop(0)
    flow_sid, alias = _resolve_flow(flow_word, options.get("flow"), defaults)

    _unquoted_spaces(tokens)
    contacts = _contacts(words, defaults.region)
    sender = _sender(options.get("from"), flow_sid, defaults)
    parameters = _parameters(tokens)
    when = _when(options)
    if len(contacts) > 1:
        return BulkCommand(flow_sid, alias, sender, parameters, tuple(contacts), when)
    to = _contact(contacts[0], defaults)
    if mismatch := channel_mismatch(to, sender):
        raise CommandError(mismatch, options["from"].raw if "from" in options else None)
    return EngageCommand(flow_sid, alias, to, sender, parameters, when=when)


def _when(options: Mapping[str, Option]) -> When | None:
    """``--at`` or ``--in`` (not both): when a start is scheduled for."""
    at, after = options.get("at"), options.get("in")
    if at is not None and after is not None:
        raise CommandError("give --at or --in, not both", after.raw)
    try:
        if at is not None:
            return parse_at(at.value)
        if after is not None:
            return parse_in(after.value)
    except ValueError as exc:
        option = at or after
        assert option is not None
        raise CommandError(f"--{option.name} {exc}", option.raw) from None
    return None


def _sender(option: Option | None, flow_sid: str, defaults: Defaults) -> str:
    """The sender: ``--from``, else the flow's own, else STUDIO_FROM."""
    return sender_for(
        flow_sid, option.value if option else None, defaults, option.raw if option else None
    )


def sender_for(flow_sid: str, given: str | None, defaults: Defaults, raw: str | None = None) -> str:
    """The sender a start uses: ``given`` (as ``--from`` takes it), else the flow's own,
    else STUDIO_FROM. Raises ``CommandError``. The one sender rule for every surface."""
    if not given:
        sender = defaults.flow_senders.get(flow_sid) or defaults.sender
        if not sender:
            raise CommandError("no sender: give --from <Twilio number or MG… SID>", None)
        return sender
    try:
        sender = parse_sender(given, defaults.region)
    except PhoneError as exc:
        raise CommandError(f"--from: {exc}", raw or given) from None
    if is_messaging_service(sender) and defaults.api == "v1":
        raise CommandError(
            "--from: a Messaging Service (MG…) sender needs STUDIO_API=v2; Studio's v1"
            " Engagements API takes only a phone number as From",
            raw or given,
        )
    return sender


def _unquoted_spaces(tokens: list[Token]) -> None:
    """``greeting=Hi, how are you?``: the words after a value were meant to be part of it."""
    for i, token in enumerate(tokens):
        if not isinstance(token, Item) or token.is_json or not isinstance(token.value, str):
            continue
        # Once the contact is given, digits after a value are part of it ("at 5 pm").
        contact_given = any(isinstance(t, Word) and looks_like_phone(t.text) for t in tokens[:i])
        rest: list[str] = []
        for after in tokens[i + 1 :]:
            if not isinstance(after, Word) or (looks_like_phone(after.text) and not contact_given):
                break
            rest.append(after.text)
        if rest:
            whole = " ".join([token.value, *rest])
            escaped = whole.replace("\\", "\\\\").replace('"', '\\"')
            fixed = f'{token.key}="{escaped}"'
            raise CommandError(
                f"unexpected {rest[0]!r}: a value with spaces needs quotes, as in {fixed}",
                rest[0],
            )


def _help(tokens: list[Token], defaults: Defaults) -> HelpCommand:
    """``help <flow>`` names a configured flow or a flow SID; anything else is general help."""
    if len(tokens) == 1 and isinstance(tokens[0], Word):
        word = tokens[0].text
        if FLOW_SID.match(word) or any(a.casefold() == word.casefold() for a in defaults.flows):
            sid, alias = _resolve_flow(word, None, defaults)
            return HelpCommand(sid, alias)
    return HelpCommand()


def _raw(token: Token) -> str:
    return token.text if isinstance(token, Word) else token.raw


def _status(tokens: list[Token], defaults: Defaults) -> StatusCommand:
    usage = "usage: /engage status FN… [--flow <flow>]"
    sids = [t.text for t in tokens if isinstance(t, Word)]
    options = [t for t in tokens if isinstance(t, Option)]
    other = [t for t in tokens if isinstance(t, Item | Object)] + [
        o for o in options if o.name != "flow"
    ]
    if other:
        raise CommandError(f"unexpected {_raw(other[0])!r}; {usage}", _raw(other[0]))
    if len(sids) != 1 or not RUN_SID.match(sids[0]):
        token = sids[0] if sids else None
        raise CommandError(
            f"give one engagement SID (FN followed by 32 hex digits); {usage}", token
        )
    sid = normal_sid(sids[0])
    if len(options) > 1:
        raise CommandError("--flow is given twice", options[1].raw)
    if options:
        flow_sid, _ = _resolve_flow(None, options[0], defaults)
        return StatusCommand(sid, (flow_sid,))
    candidates = [defaults.flow_sid] if defaults.flow_sid else []
    candidates += [sid for sid in defaults.flows.values() if sid not in candidates]
    if not candidates:
        raise CommandError("no flow is configured: ask an admin to set STUDIO_FLOW_SID")
    return StatusCommand(sid, tuple(candidates))


def _report(tokens: list[Token], defaults: Defaults) -> ReportCommand:
    usage = "usage: /engage report [flow] [--since 7d] [--csv]"
    words = [t.text for t in tokens if isinstance(t, Word)]
    options = [t for t in tokens if isinstance(t, Option)]
    other = [t for t in tokens if isinstance(t, Item | Object)] + [
        o for o in options if o.name not in ("since", "csv", "flow")
    ]
    if other:
        raise CommandError(f"unexpected {_raw(other[0])!r}; {usage}", _raw(other[0]))
    named: dict[str, Option] = {}
    for option in options:
        if option.name in named:
            raise CommandError(f"--{option.name} is given twice; {usage}", option.raw)
        named[option.name] = option
    if len(words) > 1:
        raise CommandError(f"name at most one flow; {usage}", words[1])
    since = 7 * 86400.0
    if "since" in named:
        try:
            seconds = parse_span(named["since"].value)
        except ValueError:
            seconds = 0
        if not seconds or seconds > MAX_REPORT_DAYS * 86400:
            raise CommandError(
                f"--since takes a span such as 90m, 24h, 7d or 4w (at most {MAX_REPORT_DAYS}d)",
                named["since"].raw,
            )
        since = float(seconds)
    csv_wanted = "csv" in named
    if words or "flow" in named:
        sid, alias = _resolve_flow(words[0] if words else None, named.get("flow"), defaults)
        return ReportCommand((sid,), since, csv_wanted, alias)
    return ReportCommand((), since, csv_wanted)


def _consent(verb: str, tokens: list[Token], defaults: Defaults) -> OptOutCommand | OptInCommand:
    """``optout <to> [reason]`` or ``optin <to> <reason>``: one number, then free text."""
    usage = f"usage: /engage {verb} +16175551212 " + (
        "[reason]" if verb == "optout" else "<reason>"
    )
    if not tokens or not isinstance(tokens[0], Word):
        raise CommandError(
            f"give the contact's number; {usage}", _raw(tokens[0]) if tokens else None
        )
    words = list(
        itertools.takewhile(
            lambda t: isinstance(t, Word) and bool(_NUMBER_PART.match(t.text)),
            tokens[:MOST_NUMBER_WORDS],
        )
    )
    for count in range(len(words), 0, -1):  # the longest run of words that is a number
        typed = " ".join(_raw(t) for t in words[:count])
        try:
            to = parse_address(typed, defaults.region)
            break
        except PhoneError:
            continue
    else:  # no run of words is a number: the first word's problem
        typed, problem = _raw(tokens[0]), "is not a phone number"
        try:
            parse_address(typed, defaults.region)
        except PhoneError as exc:
            problem = str(exc)
        raise CommandError(f"{problem}; {usage}", typed)
    reason = " ".join(_raw(t) for t in tokens[count:]).strip()
    if len(reason) > MAX_REASON:
        raise CommandError(f"the reason is longer than {MAX_REASON} characters; {usage}")
    if verb == "optout":
        return OptOutCommand(to, reason)
    if not reason:
        raise CommandError(f"say why (it goes in the audit log); {usage}")
    return OptInCommand(to, reason)


MAX_REASON = 200
MOST_NUMBER_WORDS = 5  # "+1 (617) 555 1212": a number typed with spaces
_NUMBER_PART = re.compile(r"^(whatsapp:)?[+\d().\-]+$", re.IGNORECASE)  # not "no", "x"


def _known_flows(defaults: Defaults) -> str:
    if not defaults.flows:
        return "no named flows are configured (STUDIO_FLOWS)"
    return "known flows: " + ", ".join(sorted(defaults.flows))


def default_flow(defaults: Defaults) -> tuple[str, str | None] | None:
    """The flow used when none is named, with its alias: STUDIO_FLOW_SID, else the only
    configured flow; None when there is no one obvious flow. The one rule for every
    surface (the command, the form, the shortcuts)."""
    if defaults.flow_sid:
        alias = next((a for a, sid in defaults.flows.items() if sid == defaults.flow_sid), None)
        return defaults.flow_sid, alias
    if len(defaults.flows) == 1:
        ((alias, sid),) = defaults.flows.items()
        return sid, alias
    return None


def flow_in_text(text: str, defaults: Defaults) -> tuple[str, str | None] | None:
    """The flow a message names (its first word that is an alias), else the default."""
    for word in text.split():
        for alias, sid in defaults.flows.items():
            if word.strip("*_`:,.").casefold() == alias.casefold():
                return sid, alias
    return default_flow(defaults)


def resolve_flow(name: str | None, defaults: Defaults) -> tuple[str, str | None]:
    """The flow SID and alias ``name`` stands for (a configured alias or a flow SID; None:
    the default flow). Raises ``CommandError``."""
    return _resolve_flow(None, Option("flow", name, name) if name else None, defaults)


def _resolve_flow(
    word: str | None, option: Option | None, defaults: Defaults
) -> tuple[str, str | None]:
    """The flow SID and its alias, from a positional alias, --flow, or the defaults."""
    if word is not None and option is not None:
        raise CommandError(f"the flow is given twice ({word!r} and --flow)", option.raw)
    name = word if word is not None else (option.value if option is not None else None)
    if name is None:
        if found := default_flow(defaults):
            return found
        if defaults.flows:
            raise CommandError(f"which flow? Name one first: {_known_flows(defaults)}")
        raise CommandError("no flow is configured: ask an admin to set STUDIO_FLOW_SID")
    if FLOW_SID.match(name):
        name = normal_sid(name)
        alias = next((a for a, sid in defaults.flows.items() if sid == name), None)
        return name, alias
    for alias, sid in defaults.flows.items():
        if alias.casefold() == name.casefold():
            return sid, alias
    if word is not None:
        raise CommandError(
            f"{word!r} is neither a phone number nor a flow: {_known_flows(defaults)}", word
        )
    raise CommandError(
        f"unknown flow {name!r}: {_known_flows(defaults)}, or give a flow SID (FW…)", name
    )


def _contacts(words: list[str], region: str | None) -> list[str]:
    """The contacts as typed: a comma, ``+`` or ``whatsapp:`` starts the next; words
    between them are one number (``+1 617 555 1212``) unless together they are none and
    each alone is one (numbers on lines of their own)."""
    if not words:
        raise CommandError("no contact number given: whom should the flow reach?")
    groups: list[list[str]] = []
    fresh = True
    for word in words:
        for i, piece in enumerate(word.split(",")):
            if i:
                fresh = True
            if not piece:
                continue
            if not looks_like_phone(piece):
                raise CommandError(
                    f"unexpected {piece!r}: parameters are written key=value or key:=json", piece
                )
            starts = piece.startswith("+") or piece.lower().startswith(("whatsapp:", "<tel:"))
            if fresh or starts:
                groups.append([])
            groups[-1].append(piece)
            fresh = False
    if not groups:
        raise CommandError("no contact number given: whom should the flow reach?")
    contacts: list[str] = []
    for group in groups:
        whole = " ".join(group)
        if (
            len(group) > 1
            and not _is_number(whole, region)
            and all(_is_number(word, region) for word in group)
        ):
            contacts += group
        else:
            contacts.append(whole)
    return contacts


def _is_number(typed: str, region: str | None) -> bool:
    try:
        parse_address(typed, region)
    except PhoneError:
        return False
    return True


def _contact(typed: str, defaults: Defaults) -> str:
    try:
        return parse_address(typed, defaults.region)
    except PhoneError as exc:
        raise CommandError(str(exc), typed) from None


def _parameters(tokens: list[Token]) -> dict[str, Any]:
    """The items and JSON objects, under ``bot.domain.parameters``' rules."""
    built = parameters.Builder()
    try:
        for token in tokens:
            if isinstance(token, Item):
                built.set(token.key, token.value, token.raw)
            elif isinstance(token, Object):
                built.merge(token.value, token.raw)
    except ParameterError as exc:
        raise CommandError(exc.problem, exc.token) from None
    return built.value
