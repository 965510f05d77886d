"""Looking at and ending runs: ``/engage status``, the card's Refresh and End.

Each goes the same way: the access rules and a per-user limit (refused privately,
audited, nothing read from Studio), then a ``Snapshot`` paced under
STUDIO_RATE_LIMIT, then a message rendered from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from bot.domain.caller import Caller
from bot.domain.command import StatusCommand
from bot.domain.errors import StudioAPIError, StudioBusy, StudioError
from bot.domain.policy import Policy, may_end, read_refusal
from bot.domain.run import CardRef, Snapshot
from bot.domain.text import label
from bot.engage.throttle import Throttle
from bot.infra import audit
from bot.infra.tasks import Tasks
from bot.runs.registry import SNAPSHOT_REQUESTS, RunRegistry, fetch
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.reply import Reply, deliver
from bot.studio.catalog import FlowCatalog
from bot.studio.client import StudioClient

_ACTIONS = "actions"  # the per-user count of looks at runs, apart from starts


class RunActions:
    """Status, Refresh and End: the same rules, limits and tasks as starts (given by
    ``bot.app.services``), on the same Studio client."""

    def __init__(
        self,
        studio: StudioClient,
        *,
        policy: Policy,
        throttle: Throttle,
        tasks: Tasks,
        registry: RunRegistry,
        catalog: FlowCatalog | None = None,
        aliases: Mapping[str, str] | None = None,
        mask_numbers: bool = False,
    ) -> None:
        self.studio = studio
        self.policy = policy
        self.throttle = throttle
        self.tasks = tasks
        self.registry = registry
        self.catalog = catalog
        self.aliases = dict(aliases or {})  # flow SID -> alias
        self.mask_numbers = mask_numbers

    async def readable(
        self, flow_sids: tuple[str, ...], caller: Caller, what: str, sid: str | None = None
    ) -> tuple[tuple[str, ...], Message | None]:
        """The flows ``caller`` may read among ``flow_sids``, or the refusal: the access
        rules, then the per-user limit on looks at runs. Audited when refused."""
        aliases = self.aliases
        reasons = {
            flow: read_refusal(
                self.policy, flow, aliases.get(flow), caller.user_id, caller.channel_id
            )
            for flow in flow_sids
        }
        allowed = tuple(flow for flow in flow_sids if reasons[flow] is None)
        if not allowed:
            reason = next(r for r in reasons.values() if r)
            audit.record("refused", caller, sid=sid, detail=f"{what}: {reason}")
            return (), messages.not_allowed(reason)
        if limited := await self.limited(caller, what, sid):
            return (), limited
        return allowed, None

    async def limited(self, caller: Caller, what: str, sid: str | None = None) -> Message | None:
        """Count one look at runs for ``caller``; the refusal past USER_RATE_LIMIT."""
        if wait := await self.throttle.user_wait(caller.user_id, _ACTIONS):
            rate = self.throttle.user_rate
            audit.record("rate_limited", caller, sid=sid, detail=f"{what}: {rate}")
            return messages.rate_limited(wait, rate, starting=False)
        return None

    async def _allowed(self, ref: CardRef, caller: Caller, what: str, notify: Reply) -> bool:
        """Whether ``caller`` may act on the card's run; if not, says why, privately. From
        the Home tab (no channel), the channel rules apply to where the run's card is."""
        if not caller.channel_id:
            shown = await self.registry.find(ref.sid)
            caller = replace(caller, channel_id=shown.channel if shown else "")
        _, refused = await self.readable((ref.flow_sid,), caller, what, ref.sid)
        if refused:
            await deliver(notify, refused, ref.sid)
        return refused is None

    async def _snapshot(self, flow_sid: str, sid: str) -> Snapshot:
        """The run now, paced like starts. Raises ``StudioError`` (``StudioBusy``)."""
        if not await self.throttle.pace(SNAPSHOT_REQUESTS):
            raise StudioBusy
        return await fetch(self.studio, flow_sid, sid, before_retry=self.throttle.pace)

    # -- /engage status ----------------------------------------------------------

    async def status(self, command: StatusCommand, caller: Caller, reply: Reply) -> Message:
        """The rules and the limit now (the ack); the run follows through ``reply``."""
        flows, refused = await self.readable(command.flow_sids, caller, "status", command.sid)
        if refused:
            return refused
        self.tasks.spawn(self._status(command.sid, flows, caller, reply), f"status:{command.sid}")
        return messages.looking_up(command.sid)

    async def _status(
        self, sid: str, flow_sids: tuple[str, ...], caller: Caller, reply: Reply
    ) -> None:
        for flow_sid in flow_sids:
            try:
                snapshot = await self._snapshot(flow_sid, sid)
            except StudioAPIError as exc:
                if exc.status == 404:
                    continue  # not in this flow: try the next
                await deliver(reply, messages.lookup_failed(sid, exc), sid)
                return
            except StudioError as exc:
                await deliver(reply, messages.lookup_failed(sid, exc), sid)
                return
            name = label(self.aliases.get(flow_sid), flow_sid, self._name(flow_sid))
            mask = self.mask_numbers and (await self.registry.starter(sid) != caller.user_id)
            await deliver(reply, messages.status_message(snapshot, name, mask=mask), sid)
            return
        await deliver(reply, messages.lookup_failed(sid, None), sid)

    # -- the card's buttons ------------------------------------------------------

    async def look(self, ref: CardRef, caller: Caller, notify: Reply) -> Snapshot | None:
        """The run as it is now, if ``caller`` may look; else None, said through ``notify``."""
        if not await self._allowed(ref, caller, "refresh", notify):
            return None
        try:
            return await self._snapshot(ref.flow_sid, ref.sid)
        except StudioError as exc:
            await deliver(notify, messages.action_failed(f"refresh {ref.sid}", exc), ref.sid)
            return None

    def refresh(self, ref: CardRef, caller: Caller, replace_card: Reply, notify: Reply) -> None:
        """Refresh: replace the card with the run as it is now."""

        async def work() -> None:
            if snapshot := await self.look(ref, caller, notify):
                await deliver(replace_card, self._card(snapshot, ref), ref.sid)

        self.tasks.spawn(work(), f"refresh:{ref.sid}")

    def end(self, ref: CardRef, caller: Caller, replace_card: Reply, notify: Reply) -> None:
        """End: only the starter or an admin; v2 ends the run, v1 deletes it."""

        async def work() -> None:
            if not await self._allowed(ref, caller, "end", notify):
                return
            # Who started it, as the bot recorded it; the button's word only if unrecorded.
            starter = await self.registry.starter(ref.sid) or ref.starter
            if not may_end(self.policy, caller.user_id, starter):
                audit.record(
                    "refused", caller, sid=ref.sid, detail="end: not the starter or an admin"
                )
                await deliver(notify, messages.not_allowed_to_end(starter), ref.sid)
                return
            try:
                snapshot = await self._snapshot(ref.flow_sid, ref.sid)
                if not await self.throttle.pace():
                    raise StudioBusy
                ended = await self.studio.end_engagement(
                    ref.flow_sid, ref.sid, before_retry=self.throttle.pace
                )
            except StudioError as exc:
                await deliver(notify, messages.action_failed(f"end {ref.sid}", exc), ref.sid)
                return
            audit.record("ended", caller, sid=ref.sid, detail=f"started by {starter}")
            card = messages.card_of(
                snapshot, self._alias(ref), starter, self.studio.api, self._name(ref.flow_sid)
            )
            status = (ended.status or "ended") if ended is not None else card.status
            card = replace(card, status=status, ended_by=caller.user_id, deleted=ended is None)
            await deliver(replace_card, messages.run_card(card, mask=self.mask_numbers))

        self.tasks.spawn(work(), f"end:{ref.sid}")

    def _name(self, flow_sid: str) -> str | None:
        """Studio's name for the flow, if known (never waits for Studio)."""
        catalog = self.catalog
        info = catalog.peek(flow_sid) if catalog else None
        return info.name if info else None

    def _alias(self, ref: CardRef) -> str | None:
        return self.aliases.get(ref.flow_sid)

    def _card(self, snapshot: Snapshot, ref: CardRef) -> Message:
        card = messages.card_of(
            snapshot, self._alias(ref), ref.starter, self.studio.api, self._name(ref.flow_sid)
        )
        return messages.run_card(card, mask=self.mask_numbers)
