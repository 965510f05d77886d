"""The commands as every layer sees them: what ``/engage`` text, the form, a CSV row,
a schedule or a workflow step asks to do, and the defaults the configuration supplies.
Pure. ``bot.domain.grammar`` reads them from text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain.bulk_input import Row, row_for
from bot.domain.contact_clock import When

FLOW_SID = re.compile(r"^FW[0-9a-fA-F]{32}$")


RUN_SID = re.compile(r"^FN[0-9a-fA-F]{32}$")


RESERVED_WORDS = (  # never flow aliases
    "help",
    "flows",
    "status",
    "report",
    "scheduled",
    "optout",
    "optin",
    "optouts",
)


MAX_REPORT_DAYS = 366


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


@dataclass(frozen=True)
class OptOutCommand:
    """``/engage optout +1… [reason]``: never start a flow for ``to`` again (anyone who may
    start flows; adding is always safe)."""

    to: str
    reason: str = ""


@dataclass(frozen=True)
class OptInCommand:
    """``/engage optin +1… reason``: take ``to`` off the opt-out list (admins, with why)."""

    to: str
    reason: str


@dataclass(frozen=True)
class OptOutsCommand:
    """``/engage optouts``: how many opted out, by source, and the latest (admins)."""


Command = (
    EngageCommand
    | BulkCommand
    | HelpCommand
    | FlowsCommand
    | StatusCommand
    | ReportCommand
    | ScheduledCommand
    | OptOutCommand
    | OptInCommand
    | OptOutsCommand
)
