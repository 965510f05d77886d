"""The STUDIO_FLOWS mini-language (``alias=FW…;users=U1|U2;channels=C1;from=+…;
collect=flow.variables.x;quiet=off;cap=1/7d``, comma-separated) and the values it shares with
the other settings (senders, lists of Slack IDs). Pure: raises ValueError saying what
is wrong, without echoing values."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.domain.command import FLOW_SID, RESERVED_WORDS
from bot.domain.consent import Cap, parse_cap
from bot.domain.errors import PhoneError
from bot.domain.phone import normal_sid, parse_sender
from bot.domain.policy import SLACK_USER

_ALIAS = re.compile(r"^[A-Za-z][\w-]*$")


SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class FlowSpec:
    """A named flow: its SID and, optionally, who may start it from where."""

    sid: str
    users: frozenset[str] | None = None  # Slack user IDs; None: whoever ALLOWED_SLACK_USERS lets in
    channels: frozenset[str] | None = None  # Slack channel IDs; likewise
    sender: str | None = None  # the flow's own default sender; None: STUDIO_FROM
    collect: tuple[str, ...] = ()  # context paths kept as answers when a run ends
    quiet: bool = True  # ;quiet=off: exempt from QUIET_HOURS (one-time codes and the like)
    cap: Cap | None = None  # ;cap=1/7d: at most so many starts of this flow to one contact


_FLOW_OPTIONS = {"users": SLACK_USER, "channels": SLACK_CHANNEL}


_CONTEXT_PATH = re.compile(r"^(flow|widgets|trigger)(\.[\w-]+)+$")


def parse_studio_sender(value: str) -> str:
    """A configured sender: ``+E164``, ``whatsapp:+E164`` or a Messaging Service ``MG…``.

    Raises ValueError without echoing the value.
    """
    if not value.lstrip().startswith(("+", "whatsapp:+", "MG")):
        raise ValueError(
            "must be a Twilio number in E.164 (+…), whatsapp:+…, or a Messaging Service SID (MG…)"
        )
    try:
        return parse_sender(value)
    except PhoneError:
        raise ValueError(
            "is not a valid number in E.164 (+…) or Messaging Service SID (MG + 32 hex digits)"
        ) from None


def parse_flows(text: str) -> dict[str, FlowSpec]:
    """``onboarding=FW…;users=U1|U2;channels=C1,survey=FW…`` -> ``{alias: FlowSpec}``.

    Raises ValueError saying what is wrong, without echoing values.
    """
    flows: dict[str, FlowSpec] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        head, *options = (part.strip() for part in entry.split(";"))
        alias, sep, sid = (part.strip() for part in head.partition("="))
        if not sep or not _ALIAS.match(alias) or not FLOW_SID.match(sid):
            raise ValueError(
                "must be alias=FW…(32 hex digits), comma-separated; aliases start with a letter"
            )
        if alias.casefold() in (a.casefold() for a in flows) or alias.lower() in RESERVED_WORDS:
            raise ValueError(f"alias {alias!r} is used twice or is reserved")
        narrowed: dict[str, frozenset[str]] = {}
        sender: str | None = None
        collect: tuple[str, ...] = ()
        quiet = True
        cap: Cap | None = None
        for option in options:
            name, _, value = (part.strip() for part in option.partition("="))
            if name == "quiet":
                if value.lower() not in ("off", "on"):
                    raise ValueError(f"flow {alias!r} quiet: must be off (or on, the default)")
                quiet = value.lower() == "on"
                continue
            if name == "cap":
                try:
                    cap = parse_cap(value)
                except ValueError as exc:
                    raise ValueError(f"flow {alias!r} cap: {exc}") from None
                continue
            if name == "collect":
                paths = tuple(p.strip() for p in value.split("|") if p.strip())
                if not paths or not all(_CONTEXT_PATH.match(p) for p in paths):
                    raise ValueError(
                        f"flow {alias!r} collect: context paths such as flow.variables.score,"
                        " separated by |"
                    )
                collect = paths
                continue
            if name == "from":
                try:
                    sender = parse_studio_sender(value)
                except ValueError as exc:
                    raise ValueError(f"flow {alias!r} from: {exc}") from None
                continue
            pattern = _FLOW_OPTIONS.get(name)
            if pattern is None:
                raise ValueError(
                    f"flow {alias!r}: unknown option; use ;users=U…|U…, ;channels=C…|C…,"
                    " ;from=+…, ;collect=flow.variables.x|…, ;quiet=off or ;cap=1/7d"
                )
            narrowed[name] = parse_ids(value.replace("|", ","), pattern, f"flow {alias!r} {name}")
        flows[alias] = FlowSpec(
            normal_sid(sid),
            narrowed.get("users"),
            narrowed.get("channels"),
            sender,
            collect,
            quiet,
            cap,
        )
    return flows


def parse_ids(text: str, pattern: re.Pattern[str], what: str) -> frozenset[str]:
    """A comma-separated list of IDs of one shape; raises ValueError naming ``what``."""
    ids = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not ids or any(not pattern.match(i) for i in ids):
        raise ValueError(f"{what}: must be Slack IDs such as U012AB3CD or C012AB3CD, not names")
    return ids
