"""The flows as Studio knows them (names, REST-readiness, parameters), cached.

Each flow's definition is fetched with the Flows API (``GET /v2/Flows/{Sid}``),
analysed (``bot.domain.flows``) and kept for ``FLOW_CACHE_SECONDS``; after that it is
fetched again and re-analysed only if its revision changed. With ``REDIS_URL`` the
analysis is shared by every process (best effort: a cache). If the Flows API fails
(an API key without that permission, a timeout, a 5xx), the flow's checks are off:
commands run as they did before, and one log line says why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from pydantic import TypeAdapter, ValidationError

from bot.domain.errors import StudioError
from bot.domain.flows import FlowInfo, analyse
from bot.state.store import BestEffort
from bot.studio.client import StudioClient

log = logging.getLogger(__name__)

FETCH_SECONDS = 5.0  # a start waits at most this long for a definition, then goes unchecked
RETRY_FAILED_SECONDS = 60.0  # after a failure, Studio is not asked again for this long


# How a flow is kept in the shared store: pydantic's reading of the dataclass, so the
# shape is checked on the way back in.
STORED_FLOW = TypeAdapter(FlowInfo)


def stored_flow(value: str) -> FlowInfo | None:
    """A flow as kept in the store, or None if it does not read as one (an older shape)."""
    try:
        return STORED_FLOW.validate_json(value)
    except ValidationError:
        return None


class FlowCatalog:
    def __init__(self, studio: StudioClient, state: BestEffort, ttl: float = 300.0) -> None:
        self.studio = studio
        self.state = state
        self.ttl = ttl
        self._known: dict[str, tuple[FlowInfo, float]] = {}  # sid -> (info, when checked)
        self._locks: dict[str, asyncio.Lock] = {}
        self._off: dict[str, tuple[str, float]] = {}  # sid -> (why checks are off, since)

    def peek(self, sid: str) -> FlowInfo | None:
        """What this process knows of ``sid`` now, without asking anyone (for acks)."""
        known = self._known.get(sid)
        return known[0] if known else None

    async def get(self, sid: str) -> FlowInfo | None:
        """``sid`` as Studio has it (cached); None if Studio cannot be asked."""
        known = self._known.get(sid)
        if known and time.monotonic() - known[1] < self.ttl:
            return known[0]
        async with self._locks.setdefault(sid, asyncio.Lock()):  # one fetch per flow at once
            known = self._known.get(sid)
            if known and time.monotonic() - known[1] < self.ttl:
                return known[0]
            return await self._refresh(sid, known[0] if known else None)

    async def _refresh(self, sid: str, stale: FlowInfo | None) -> FlowInfo | None:
        off = self._off.get(sid)
        if off and time.monotonic() - off[1] < min(self.ttl, RETRY_FAILED_SECONDS):
            return stale  # failed a moment ago: do not make every command wait for it
        shared = await self.state.use(lambda s: s.get(f"flow:{sid}"))
        if shared is not None and (info := stored_flow(shared)) is not None:
            self._known[sid] = (info, time.monotonic())
            return info
        try:
            flow = await asyncio.wait_for(self.studio.fetch_flow(sid), FETCH_SECONDS)
        except (StudioError, TimeoutError) as exc:
            reason = exc.message if isinstance(exc, StudioError) else "timed out"
            if off is None or off[0] != reason:
                log.warning("flow checks are off for %s: the Flows API failed (%s)", sid, reason)
            self._off[sid] = (reason, time.monotonic())
            return stale
        if sid in self._off:
            log.info("flow checks are back on for %s", sid)
            del self._off[sid]
        if stale is not None and stale.revision == flow.revision:
            analysis = stale.analysis  # the same definition: no need to read it again
        else:
            analysis = analyse(flow.definition)
        info = FlowInfo(sid, flow.friendly_name, flow.status, flow.revision, analysis)
        self._known[sid] = (info, time.monotonic())
        value = STORED_FLOW.dump_json(info).decode()
        await self.state.use(lambda s: s.set(f"flow:{sid}", value, self.ttl))
        return info

    async def warm(self, sids: Iterable[str]) -> None:
        """Read ``sids`` now (at start-up, in the background)."""
        for sid in sids:
            await self.get(sid)
