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

from bot.domain.errors import StateUnavailable
from bot.domain.run import Snapshot
from bot.state.store import Durable
from bot.studio.client import Pace, StudioClient

REMEMBER_SECONDS = 30 * 24 * 3600  # how long the bot remembers who started a run
SNAPSHOT_REQUESTS = 3  # a run, its steps, its context


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
