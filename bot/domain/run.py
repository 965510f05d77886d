"""A Studio run as every layer sees it: the run and its steps (Twilio's fields), a
snapshot of it, what a card's buttons carry, and its page in the Console. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from bot.domain.command import FLOW_SID, RUN_SID
from bot.domain.errors import StudioAPIError, StudioError
from bot.domain.phone import normal_sid


def console_url(flow_sid: str, sid: str | None = None) -> str:
    """The run's page in the Twilio Console (Studio's execution log); without ``sid``,
    the flow's list of executions."""
    page = f"/console/studio/flows/{flow_sid}/executions" + (f"/{sid}" if sid else "")
    frame = quote(page, safe="")
    return f"https://console.twilio.com/us1/develop/studio/flows?frameUrl={frame}"


class Engagement(BaseModel):
    """One run of a flow for a contact: a v1 Engagement or a v2 Execution.

    The fields of ``studio.v1.flow.engagement`` and ``studio.v2.flow.execution``
    in Twilio's specs (v2 adds ``flow_version`` and ``initiated_by``).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    sid: str
    account_sid: str | None = None
    flow_sid: str | None = None
    contact_sid: str | None = None
    contact_channel_address: str | None = None
    context: Any = None
    status: str | None = None
    date_created: datetime | None = None
    date_updated: datetime | None = None
    url: str | None = None
    links: dict[str, str] | None = None
    flow_version: int | None = None
    initiated_by: str | None = None


class Step(BaseModel):
    """One step of a run: the widget, its type (v2) and the transition that led on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sid: str
    name: str | None = None
    type: str | None = None
    transitioned_from: str | None = None
    transitioned_to: str | None = None
    date_created: datetime | None = None


def subobject(value: Any, key: str) -> dict[str, Any]:
    """``value[key]`` when both are JSON objects, else {}: flow contexts are free-form JSON
    (``subobject(context, "flow")`` holds ``data`` and ``channel``)."""
    inner = value.get(key) if isinstance(value, dict) else None
    return inner if isinstance(inner, dict) else {}


Api = Literal["v1", "v2"]


ALREADY_ACTIVE = 20409  # Twilio: an execution is already active for this contact (unconfirmed)


def is_already_active(error: StudioError) -> bool:
    """Whether Twilio refused a start because the contact already has an active run:
    code 20409, or HTTP 409 Conflict on the create request (the code is not confirmed
    against live Twilio, the status is what a conflict is)."""
    return isinstance(error, StudioAPIError) and (
        error.code == ALREADY_ACTIVE or error.status == 409
    )


@dataclass(frozen=True)
class Snapshot:
    """A run as Studio had it at one moment."""

    flow_sid: str
    run: Engagement
    steps: list[Step]
    context: Any

    @property
    def parameters(self) -> Any:
        """``flow.data``: the parameters the run was started with."""
        return subobject(self.context, "flow").get("data")

    @property
    def sender(self) -> str | None:
        """``flow.channel.address``: whom the flow sends from."""
        address = subobject(subobject(self.context, "flow"), "channel").get("address")
        return address if isinstance(address, str) else None

    @property
    def latest_step(self) -> Step | None:
        return self.steps[-1] if self.steps else None

    @property
    def updated(self) -> datetime | None:
        return self.run.date_updated or self.run.date_created


def end_of(steps: list[Step]) -> tuple[str, bool]:
    """Where a run ended, by its last step: (the widget, whether it ended in failure). Pure."""
    last = steps[-1] if steps else None
    if last is None:
        return "", False
    widget = last.transitioned_from or last.name or last.sid
    return widget, "fail" in (last.name or "").lower()


@dataclass(frozen=True)
class CardRef:
    """What a card's Refresh and End buttons carry: no secret, no contact."""

    flow_sid: str
    sid: str
    starter: str

    def encode(self) -> str:
        return f"{self.flow_sid}:{self.sid}:{self.starter}"

    @classmethod
    def decode(cls, value: str) -> CardRef | None:
        """The reference in a button value, or None if it is not one."""
        parts = value.split(":")
        if len(parts) != 3 or not FLOW_SID.match(parts[0]) or not RUN_SID.match(parts[1]):
            return None
        return cls(normal_sid(parts[0]), normal_sid(parts[1]), parts[2])
