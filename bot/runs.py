"""One idea of a run (a v1 Engagement or a v2 Execution), whatever shows it.

- ``Snapshot``: the run as Studio has it now, with its steps and flow context,
  read once (``fetch``); the card, ``/engage status`` and whatever follows a run
  render from it.
- ``CardRef``: what a card's buttons carry (flow, run, starter), and its codec.
- ``RunRegistry``: who started a run and where it is shown (channel, message ts),
  kept in ``Durable`` state for ``REMEMBER_SECONDS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.command import FLOW_SID, RUN_SID
from bot.errors import StateUnavailable
from bot.phone import normal_sid
from bot.store import Durable
from bot.studio import Engagement, Pace, Step, StudioClient, subobject

REMEMBER_SECONDS = 30 * 24 * 3600  # how long the bot remembers who started a run
SNAPSHOT_REQUESTS = 3  # a run, its steps, its context


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


async def fetch(
    studio: StudioClient, flow_sid: str, sid: str, *, before_retry: Pace | None = None
) -> Snapshot:
    """The run now: ``SNAPSHOT_REQUESTS`` requests, each 429's retry paced by the caller's
    ``before_retry``. Raises ``StudioError``."""
    run = await studio.fetch_engagement(flow_sid, sid, before_retry=before_retry)
    steps = await studio.steps(flow_sid, sid, before_retry=before_retry)
    context = await studio.context(flow_sid, sid, before_retry=before_retry)
    return Snapshot(flow_sid, run, steps, context)


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


@dataclass(frozen=True)
class Shown:
    """Who started a run, and where its card is (once it is posted)."""

    starter: str
    flow_sid: str
    channel: str = ""
    ts: str = ""


class RunRegistry:
    """Run SID -> ``Shown``, shared by every process with Redis."""

    def __init__(self, state: Durable) -> None:
        self.state = state

    async def remember(self, sid: str, shown: Shown) -> None:
        fields = {k: v for k, v in vars(shown).items() if v}
        await self.state.use(lambda s: s.hset(f"run:{sid}", fields, REMEMBER_SECONDS))

    async def find(self, sid: str) -> Shown | None:
        """``lookup``, or None while the shared state does not answer (best effort)."""
        try:
            return await self.lookup(sid)
        except StateUnavailable:
            return None

    async def starter(self, sid: str) -> str | None:
        """Who started run ``sid`` from this bot; None if unknown or unreadable now."""
        shown = await self.find(sid)
        return shown.starter if shown else None

    async def lookup(self, sid: str) -> Shown | None:
        fields = await self.state.use(lambda s: s.hgetall(f"run:{sid}"))
        if "starter" not in fields or "flow_sid" not in fields:
            return None
        return Shown(**{k: v for k, v in fields.items() if k in Shown.__dataclass_fields__})
