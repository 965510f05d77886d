"""The ``/engage`` grammar: text as Slack sends it -> ``EngageCommand``.

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.domain import parameters
from bot.domain.bulk_input import Row, row_for
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

USAGE = (
    "/engage [flow] <to> [key=value ...] [key:=json ...] [--from <sender>] [--flow <flow>]"
    " [--at 09:00 | --in 2h]"
)

FLOW_SID = re.compile(r"^FW[0-9a-fA-F]{32}$")
RUN_SID = re.compile(r"^FN[0-9a-fA-F]{32}$")
RESERVED_WORDS = ("help", "flows", "status", "report", "scheduled")  # never flow aliases
_OPTIONS = ("from", "flow", "since", "csv", "at", "in")
_FLAGS = ("csv",)  # options that take no value
_START_OPTIONS = ("from", "flow", "at", "in")  # what a start takes
_START_OPTIONS_TEXT = "the options are --from, --flow, --at and --in"
MAX_REPORT_DAYS = 366

# What Slack clients (and macOS/iOS autocorrect) do to typed text.
_QUOTES = str.maketrans(
    {
        "\u201c": '"',  # “
        "\u201d": '"',  # ”
        "\u201e": '"',  # „
        "\u201f": '"',  # ‟
        "\u2018": "'",  # ‘
        "\u2019": "'",  # ’
        "\u201a": "'",  # ‚
        "\u201b": "'",  # ‛
        "\u00a0": " ",  # no-break space
    }
)
_LONG_DASH_OPTION = re.compile(r"(?:^|(?<=\s))[\u2012\u2013\u2014\u2015\u2212](?=[A-Za-z])")
# Slack wraps links it recognised: <https://x|label>, <mailto:a@b|a@b>, <tel:+1…|…>.
_SLACK_LINK = re.compile(r"^<(?P<target>(?:https?://|mailto:|tel:)[^|>]*)(?:\|[^>]*)?>$")


@dataclass(frozen=True)
class Defaults:
    """What the configuration supplies when the command does not say."""

    flows: Mapping[str, str] = field(default_factory=dict)  # alias -> FW sid
    flow_sid: str | None = None
    sender: str | None = None
    region: str | None = None  # PHONE_DEFAULT_REGION
    flow_senders: Mapping[str, str] = field(default_factory=dict)  # FW sid -> its own sender
    api: str = "v1"  # STUDIO_API: v1 Engagements take no Messaging Service sender


@dataclass(frozen=True)
class EngageCommand:
    """Start ``flow_sid`` for ``to`` from ``sender`` with ``parameters`` as flow data."""

    flow_sid: str
    flow_alias: str | None
    to: str
    sender: str
    parameters: dict[str, Any]
    flow_name: str | None = None  # Studio's friendly name, once the bot knows it
    when: When | None = None  # --at / --in: scheduled for then, not started now


@dataclass(frozen=True)
class HelpCommand:
    """``/engage help`` (or an empty command); ``/engage help <flow>`` for one flow."""

    flow_sid: str | None = None
    flow_alias: str | None = None


@dataclass(frozen=True)
class FlowsCommand:
    """``/engage flows``: the configured flows."""


@dataclass(frozen=True)
class StatusCommand:
    """``/engage status FN… [--flow <flow>]``: how a run is going.

    ``flow_sids`` are the flows to look in, in order: the one named, else the
    default and then every configured flow (the SID alone does not say which).
    """

    sid: str
    flow_sids: tuple[str, ...]


@dataclass(frozen=True)
class BulkCommand:
    """One flow for several contacts typed in one command (spaces, commas, new lines):
    each becomes a ``Row`` (``bot.domain.bulk_input``), sharing ``parameters``."""

    flow_sid: str
    flow_alias: str | None
    sender: str
    parameters: dict[str, Any]
    contacts: tuple[str, ...]  # as typed, in order
    when: When | None = None  # --at / --in: the whole run starts then

    def rows(self, region: str | None) -> list[Row]:
        return [row_for(i, typed, region, {}) for i, typed in enumerate(self.contacts, 1)]


@dataclass(frozen=True)
class ReportCommand:
    """``/engage report [flow] [--since 7d] [--csv]``: what the runs started in the window
    did. ``flow_sids`` empty: every flow the asker may read."""

    flow_sids: tuple[str, ...]
    since_seconds: float = 7 * 86400
    csv: bool = False
    flow_alias: str | None = None


@dataclass(frozen=True)
class ScheduledCommand:
    """``/engage scheduled``: the starts waiting for their time (yours; admins: all)."""


Command = (
    EngageCommand
    | BulkCommand
    | HelpCommand
    | FlowsCommand
    | StatusCommand
    | ReportCommand
    | ScheduledCommand
)


# --- tokens -------------------------------------------------------------------


@dataclass(frozen=True)
class _Word:
    text: str


@dataclass(frozen=True)
class _Option:
    name: str
    value: str
    raw: str


@dataclass(frozen=True)
class _Item:
    key: str
    value: Any
    raw: str
    is_json: bool = False


@dataclass(frozen=True)
class _Object:
    value: dict[str, Any]
    raw: str


_Token = _Word | _Option | _Item | _Object


def parse(text: str, defaults: Defaults) -> Command:
    """Parse the text of a ``/engage`` command. Raises ``CommandError``."""
    try:
        tokens = _Scanner(normalise(text)).tokens()
        return _build(tokens, defaults)
    except RecursionError:
        raise CommandError("the JSON is nested too deeply") from None


def argv_to_text(words: Sequence[str]) -> str:
    """Words as the shell split them -> ``/engage`` text, re-quoting what holds spaces."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    out = []
    for word in words:
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


def normalise(text: str) -> str:
    """Undo what Slack clients do to typed text: curly quotes, long dashes before options."""
    return _LONG_DASH_OPTION.sub("--", text.translate(_QUOTES)).strip()


def unescape(text: str) -> str:
    """Undo Slack's HTML escaping of ``&``, ``<`` and ``>``."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class _Scanner:
    """Splits the command into words, options, ``key=value`` items and JSON objects."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def tokens(self) -> list[_Token]:
        out: list[_Token] = []
        while True:
            self._skip_space()
            if self.i >= len(self.s):
                return out
            out.append(self._token())

    def _skip_space(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _at_end_of_token(self) -> bool:
        return self.i >= len(self.s) or self.s[self.i].isspace()

    def _rest_of_token(self, start: int) -> str:
        end = start
        while end < len(self.s) and not self.s[end].isspace():
            end += 1
        return self.s[start:end]

    def _token(self) -> _Token:
        start, ch = self.i, self.s[self.i]
        if ch == "{":
            obj = self._json(start)
            if not isinstance(obj, dict):  # pragma: no cover - JSON starting with "{" is a dict
                raise CommandError("expected a JSON object", self.s[start : self.i])
            return _Object(obj, self.s[start : self.i])
        if ch in "\"'<":
            return _Word(self._value(start))
        if self.s.startswith("--", start):
            return self._option(start)
        j = start
        while j < len(self.s) and not self.s[j].isspace() and self.s[j] != "=":
            j += 1
        if j >= len(self.s) or self.s[j] != "=":
            self.i = j
            return _Word(unescape(self.s[start:j]))
        is_json = j > start and self.s[j - 1] == ":"
        key = unescape(self.s[start : j - 1 if is_json else j])
        self.i = j + 1
        if is_json:
            if self._at_end_of_token():
                raise CommandError(f"{key}:= needs a JSON value after :=", self.s[start : j + 1])
            value: Any = self._json(start)
        else:
            value = self._value(start)
        return _Item(key, value, self.s[start : self.i], is_json)

    def _option(self, start: int) -> _Option:
        j = start + 2
        while j < len(self.s) and not self.s[j].isspace() and self.s[j] != "=":
            j += 1
        name = self.s[start + 2 : j]
        if name not in _OPTIONS:
            raise CommandError(
                f"unknown option --{name}: {_START_OPTIONS_TEXT}",
                self._rest_of_token(start),
            )
        if name in _FLAGS:
            self.i = j
            if not self._at_end_of_token():
                raise CommandError(f"--{name} takes no value", self._rest_of_token(start))
            return _Option(name, "", self.s[start:j])
        if j < len(self.s) and self.s[j] == "=":
            self.i = j + 1
        else:
            self.i = j
            self._skip_space()
        if self.i >= len(self.s):
            raise CommandError(f"--{name} needs a value", f"--{name}")
        value = self._value(self.i)
        return _Option(name, value, self.s[start : self.i])

    def _value(self, start: int) -> str:
        """A value at ``self.i``: quoted, a Slack ``<link>``, or up to the next space."""
        ch = self.s[self.i] if self.i < len(self.s) else " "
        if ch in "\"'":
            value = self._quoted(start)
        elif ch == "<":
            end = self.s.find(">", self.i)
            if end < 0:
                end = self.i + len(self._rest_of_token(self.i)) - 1
            raw = self.s[self.i : end + 1]
            self.i = end + 1
            link = _SLACK_LINK.match(raw)
            if link:
                target = link.group("target")
                value = unescape(target.removeprefix("mailto:").removeprefix("tel:"))
            else:
                value = unescape(raw)
        else:
            token = self._rest_of_token(self.i)
            self.i += len(token)
            return unescape(token)
        if not self._at_end_of_token():
            raise CommandError(
                "unexpected text right after a closing quote or link; put a space after it",
                self._rest_of_token(start),
            )
        return value

    def _quoted(self, start: int) -> str:
        quote = self.s[self.i]
        out: list[str] = []
        j = self.i + 1
        while j < len(self.s):
            ch = self.s[j]
            if ch == "\\" and j + 1 < len(self.s) and self.s[j + 1] in (quote, "\\"):
                out.append(self.s[j + 1])
                j += 2
                continue
            if ch == quote:
                self.i = j + 1
                return unescape("".join(out))
            out.append(ch)
            j += 1
        raise CommandError(f"unterminated quote: add the closing {quote}", self.s[start:])

    def _json(self, token_start: int) -> Any:
        """Decode the JSON value at ``self.i``; it may contain spaces, quotes, brackets."""
        try:
            _, end = json.JSONDecoder().raw_decode(self.s, self.i)
            value = parameters.loads(unescape(self.s[self.i : end]))
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise CommandError(f"bad JSON: {detail}", self._rest_of_token(token_start)) from None
        self.i = end
        if not self._at_end_of_token():
            raise CommandError(
                "unexpected text right after the JSON value; put a space after it",
                self._rest_of_token(token_start),
            )
        return value


# --- from tokens to a command ------------------------------------------------


def _build(tokens: list[_Token], defaults: Defaults) -> Command:
    first = tokens[0].text.lower() if tokens and isinstance(tokens[0], _Word) else None
    if not tokens or first == "help":
        return _help(tokens[1:], defaults)
    if first == "flows":
        if len(tokens) > 1:
            raise CommandError("/engage flows takes nothing more", _raw(tokens[1]))
        return FlowsCommand()
    if first == "status":
        return _status(tokens[1:], defaults)
    if first == "report":
        return _report(tokens[1:], defaults)
    if first == "scheduled":
        if len(tokens) > 1:
            raise CommandError("/engage scheduled takes nothing more", _raw(tokens[1]))
        return ScheduledCommand()
    if other := next(
        (t for t in tokens if isinstance(t, _Option) and t.name not in _START_OPTIONS), None
    ):
        raise CommandError(f"unknown option --{other.name}: {_START_OPTIONS_TEXT}", other.raw)
    words = [t.text for t in tokens if isinstance(t, _Word)]

    options: dict[str, _Option] = {}
    for token in tokens:
        if isinstance(token, _Option):
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


def _when(options: Mapping[str, _Option]) -> When | None:
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


def _sender(option: _Option | None, flow_sid: str, defaults: Defaults) -> str:
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


def _unquoted_spaces(tokens: list[_Token]) -> None:
    """``greeting=Hi, how are you?``: the words after a value were meant to be part of it."""
    for i, token in enumerate(tokens):
        if not isinstance(token, _Item) or token.is_json or not isinstance(token.value, str):
            continue
        # Once the contact is given, digits after a value are part of it ("at 5 pm").
        contact_given = any(isinstance(t, _Word) and looks_like_phone(t.text) for t in tokens[:i])
        rest: list[str] = []
        for after in tokens[i + 1 :]:
            if not isinstance(after, _Word) or (looks_like_phone(after.text) and not contact_given):
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


def _help(tokens: list[_Token], defaults: Defaults) -> HelpCommand:
    """``help <flow>`` names a configured flow or a flow SID; anything else is general help."""
    if len(tokens) == 1 and isinstance(tokens[0], _Word):
        word = tokens[0].text
        if FLOW_SID.match(word) or any(a.casefold() == word.casefold() for a in defaults.flows):
            sid, alias = _resolve_flow(word, None, defaults)
            return HelpCommand(sid, alias)
    return HelpCommand()


def _raw(token: _Token) -> str:
    return token.text if isinstance(token, _Word) else token.raw


def _status(tokens: list[_Token], defaults: Defaults) -> StatusCommand:
    usage = "usage: /engage status FN… [--flow <flow>]"
    sids = [t.text for t in tokens if isinstance(t, _Word)]
    options = [t for t in tokens if isinstance(t, _Option)]
    other = [t for t in tokens if isinstance(t, _Item | _Object)] + [
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


def _report(tokens: list[_Token], defaults: Defaults) -> ReportCommand:
    usage = "usage: /engage report [flow] [--since 7d] [--csv]"
    words = [t.text for t in tokens if isinstance(t, _Word)]
    options = [t for t in tokens if isinstance(t, _Option)]
    other = [t for t in tokens if isinstance(t, _Item | _Object)] + [
        o for o in options if o.name not in ("since", "csv", "flow")
    ]
    if other:
        raise CommandError(f"unexpected {_raw(other[0])!r}; {usage}", _raw(other[0]))
    named: dict[str, _Option] = {}
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
    return _resolve_flow(None, _Option("flow", name, name) if name else None, defaults)


def _resolve_flow(
    word: str | None, option: _Option | None, defaults: Defaults
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


def _parameters(tokens: list[_Token]) -> dict[str, Any]:
    """The items and JSON objects, under ``bot.domain.parameters``' rules."""
    built = parameters.Builder()
    try:
        for token in tokens:
            if isinstance(token, _Item):
                built.set(token.key, token.value, token.raw)
            elif isinstance(token, _Object):
                built.merge(token.value, token.raw)
    except ParameterError as exc:
        raise CommandError(exc.problem, exc.token) from None
    return built.value
