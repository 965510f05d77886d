"""A scheduled start, as kept and as shown. Pure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.record import Record

State = Literal["waiting", "sending", "started", "failed", "unknown", "refused", "cancelled"]


class Scheduled(Record):
    """One scheduled start: what, for whom, by whom, from where, when; and how it went."""

    id: str
    flow_sid: str
    flow_alias: str = ""
    flow_name: str = ""
    to: str
    sender: str
    parameters: dict[str, Any] = Field(default_factory=dict)  # the flow data
    user: str
    channel: str = ""
    team: str = ""
    due: float
    created: float = 0.0
    zone: str = "UTC"  # the contact's (first) time zone, for saying when
    state: State = "waiting"
    sid: str = ""  # the run, once started
    note: str = ""  # why it was refused, failed or is unknown; who cancelled it
    workflow: str = ""  # the workflow that scheduled it, if one did
    fired: float = 0.0  # when its start went out (epoch seconds)

    @property
    def late(self) -> float:
        """How many seconds after its time it fired (0 if on time or not yet)."""
        return max(0.0, self.fired - self.due) if self.fired else 0.0

    @property
    def command(self) -> EngageCommand:
        return EngageCommand(
            self.flow_sid,
            self.flow_alias or None,
            self.to,
            self.sender,
            dict(self.parameters),
            self.flow_name or None,
        )

    @property
    def caller(self) -> Caller:
        return Caller(self.user, self.channel, self.team, via=f"schedule {self.id}")
