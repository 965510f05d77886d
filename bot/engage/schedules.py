"""Starts scheduled for later (``--at``, ``--in``, the form's *When*, *Schedule for then*):
kept in the state store, fired once by whichever process finds them due.

- ``plan``: when a command is due, or why it cannot be scheduled (a time past, too far
  ahead: SCHEDULE_MAX_DAYS, or in the contact's quiet hours: then the next allowed time
  is offered). Pure but for the clock.
- ``add``: the schedule kept (a hash, an index for listing, a job for later in
  ``bot.state.jobs``: Redis with ``REDIS_URL``, else this process's memory, lost on restart).
- The ``Scheduler`` loop in every process moves due jobs into the queue (one Lua step),
  takes them and fires each: the rules are checked again (the starter still allowed,
  the flow still configured and REST-ready, the destination, quiet hours); the start
  is *claimed* right before the request goes out, so a schedule found claimed without
  an outcome (its process died) is *outcome unknown*, never resent. A cancel claims
  the same way, so a schedule is either cancelled or fired, never both.
- What happens is told: the card in the schedule's channel with the starter mentioned
  in its thread; a refusal or failure privately, in a DM from the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import replace as replace_fields
from typing import Any

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.contact_clock import ContactClock, Instant, Opening, When, due_at
from bot.domain.durations import duration
from bot.domain.errors import StateUnavailable
from bot.domain.policy import Policy
from bot.domain.results import Refused, Result, Started, Unknown
from bot.domain.schedule import Scheduled, State
from bot.domain.text import refusal_text
from bot.engage.start import Engager, StartRequest
from bot.infra import audit
from bot.infra.logs import Outage, about
from bot.infra.workers import Workers
from bot.state.jobs import Jobs, jobs_for
from bot.state.store import Durable, RedisStore, Store

log = logging.getLogger(__name__)

INDEX = "sched:index"  # sorted set: schedule ID -> due time, for listing (admins)
MAX_LISTED = 200  # the most schedules read for one list


def user_index(user_id: str) -> str:
    """One person's waiting schedules (ID -> due time): their list reads only these."""
    return f"sched:by:{user_id}"


KEEP_AFTER = 7 * 86400  # a schedule's record outlives its due time this long
CONCURRENCY = 32  # schedules being fired at once per process (most of each is waiting)
RECLAIM_AFTER = 30.0  # a fire silent this long belonged to a process that died
HEARTBEAT = 5.0  # how often a process says it is alive and keeps its fires in hand
ALIVE_FOR = 2 * RECLAIM_AFTER  # a process not heard of this long is taken for gone
TICK = 0.5  # how often due schedules are looked for
SETTLE_FOR = 600.0  # how long an outcome waits for the store to be written, at most


@dataclass(frozen=True)
class NotSchedulable:
    """Why a command cannot be scheduled for the time asked: ``reason``, or (quiet) the
    contact's ``opening`` after that time, to offer instead."""

    reason: str = ""
    opening: Opening | None = None


# Says what happened at fire time: the item (its state, run SID and note) and the start's
# outcome or refusal (None: claimed by a process that stopped, outcome unknown).
Tell = Callable[[Scheduled, Result | None], Awaitable[None]]


class Schedules:
    """Scheduled starts over ``engager`` (the one use-case for every start)."""

    def __init__(
        self,
        engager: Engager,
        store: Store,
        *,
        max_days: float = 30.0,
        late_minutes: float = 60.0,
        tell: Tell | None = None,
    ) -> None:
        self.engager = engager
        self.late_seconds = late_minutes * 60  # SCHEDULE_LATE_MINUTES: missed past this
        self.policy: Policy = engager.policy
        self.clock: ContactClock = engager.clock
        self.store = store
        self.state = Durable(store)
        self.durable = isinstance(store, RedisStore)  # else lost when the process ends
        self.max_days = max_days
        self.me = secrets.token_hex(4)
        self.jobs: Jobs = jobs_for(store, self.me, "sched:jobs", delete_done=True)
        self.tell = tell  # the Slack surface: the card, or a DM
        self.outage = Outage(log, "schedules: shared state")
        self.workers = Workers(
            "schedules",
            slots=CONCURRENCY,
            round=self._took,
            idle=lambda: asyncio.sleep(TICK),
            busy_wait=TICK,
            log=log,
            outage=self.outage,
        )
        self._beat: asyncio.Task[None] | None = None
        self._in_hand: dict[str, str] = {}  # job ID -> schedule ID, while being fired
        self._telling: set[asyncio.Task[None]] = set()  # cards and DMs on their way

    @property
    def stopping(self) -> bool:
        """SIGTERM: nothing more is taken."""
        return self.workers.stopping

    def now(self) -> float:
        """The wall clock (the contact clock's, which tests control)."""
        return self.clock.now()

    # -- planning and keeping ----------------------------------------------------

    def plan(self, command: EngageCommand, when: When) -> float | NotSchedulable:
        """The epoch second ``command`` is due at ``when``, or why it cannot be."""
        now = self.now()
        zones = self.clock.zones(command.to)
        try:
            due = due_at(when, zones, now)
        except ValueError as exc:
            return NotSchedulable(f"{exc}; give a time to come")
        if due - now > self.max_days * 86400:
            return NotSchedulable(
                f"that is more than {self.max_days:g} days ahead (SCHEDULE_MAX_DAYS)"
            )
        opening = self.clock.opens(command.flow_sid, command.to, due)
        if opening is not None:
            return NotSchedulable(opening=opening)
        return due

    async def add(
        self, command: EngageCommand, caller: Caller, due: float, *, workflow: str = ""
    ) -> Scheduled:
        """Keep ``command`` for ``due`` (audited ``scheduled``). Raises ``StateUnavailable``."""
        now = self.now()
        item = Scheduled(
            id=secrets.token_hex(8),
            flow_sid=command.flow_sid,
            flow_alias=command.flow_alias or "",
            flow_name=command.flow_name or "",
            to=command.to,
            sender=command.sender,
            parameters=command.parameters,
            user=caller.user_id,
            channel=caller.channel_id,
            team=caller.team_id,
            due=due,
            created=now,
            zone=self.clock.zones(command.to)[0],
            workflow=workflow,
        )
        ttl = max(due - now, 0) + KEEP_AFTER
        indexes = {INDEX: {item.id: due}, user_index(item.user): {item.id: due}}
        if self.jobs.later_index is not None:  # the job for later in the same write
            indexes[self.jobs.later_index] = {item.id: due}
        await self.state.use(
            lambda s: s.hset_indexed(f"sched:{item.id}", item.fields(), ttl, indexes)
        )
        if self.jobs.later_index is None:  # this process's memory: nothing to crash between
            await self.jobs.later({item.id: due})
        audit.record("scheduled", caller, command, detail=f"schedule {item.id} due {due:.0f}")
        return item

    async def get(self, schedule_id: str) -> Scheduled | None:
        return Scheduled.of(await self.state.use(lambda s: s.hgetall(f"sched:{schedule_id}")))

    async def waiting(self, user_id: str | None = None) -> list[Scheduled]:
        """The schedules not yet fired, soonest first: ``user_id``'s, or everyone's."""
        index = INDEX if user_id is None else user_index(user_id)
        ids = await self.state.use(
            lambda s: s.zrange(index, float("-inf"), float("inf"), MAX_LISTED)
        )
        found = []
        for schedule_id in ids:
            item = await self.get(schedule_id)
            if item is None or item.state != "waiting":
                continue
            if user_id is None or item.user == user_id:
                found.append(item)
        return found

    async def visible_to(self, user_id: str) -> list[Scheduled]:
        """``/engage scheduled``: yours; an admin's: everyone's."""
        return await self.waiting(None if user_id in self.policy.admins else user_id)

    async def cancel(self, schedule_id: str, caller: Caller) -> tuple[str, Scheduled | None]:
        """Cancel a schedule (its starter or an admin): ``cancelled``, ``not_yours``,
        ``too_late`` (it fired or is firing) or ``gone``. Raises ``StateUnavailable``."""
        item = await self.get(schedule_id)
        if item is None:
            return "gone", None
        if caller.user_id != item.user and caller.user_id not in self.policy.admins:
            return "not_yours", item
        if item.state != "waiting" or not await self._claim(schedule_id, "cancel"):
            return "too_late", item
        note = f"cancelled by <@{caller.user_id}>"
        await self._set(item, state="cancelled", note=note)
        await self.state.use(lambda _: self.jobs.unlater(schedule_id))
        await self._unlist(item)
        audit.record("schedule_cancelled", caller, item.command, detail=f"schedule {item.id}")
        return "cancelled", item

    async def _unlist(self, item: Scheduled) -> None:
        await self.state.use(lambda s: s.zrem(INDEX, item.id))
        await self.state.use(lambda s: s.zrem(user_index(item.user), item.id))

    async def _claim(self, schedule_id: str, who: str) -> bool:
        """The one claim on a schedule (firing it, or cancelling it): atomic, once."""
        key = f"sched:{schedule_id}:claim"
        return await self.state.use(lambda s: s.add(key, who, KEEP_AFTER))

    async def _claimer(self, schedule_id: str) -> str | None:
        return await self.state.use(lambda s: s.get(f"sched:{schedule_id}:claim"))

    async def _set(self, item: Scheduled, **changes: Any) -> Scheduled:
        changed = item.model_copy(update=changes)
        fields = changed.fields(*changes)
        ttl = max(item.due - self.now(), 0) + KEEP_AFTER
        await self.state.use(lambda s: s.hset(f"sched:{item.id}", fields, ttl))
        return changed

    # -- the loop in every process ---------------------------------------------------

    def start(self) -> None:
        if self._beat is None and not self.stopping:
            self.workers.start()
            loop = asyncio.get_running_loop()
            self._beat = loop.create_task(self._heartbeat(), name="schedules:heartbeat")

    async def _heartbeat(self) -> None:
        """Say this process is alive, and keep the fires in hand from being reclaimed: a
        start waiting for its turn, or for Studio, is not a process that died."""
        while True:
            with contextlib.suppress(StateUnavailable):
                await self.state.use(lambda s: s.set(f"sched:alive:{self.me}", "1", ALIVE_FOR))
                await self.jobs.keep(list(self._in_hand))
            await asyncio.sleep(HEARTBEAT)

    async def _alive(self, process: str) -> bool:
        return await self.state.use(lambda s: s.get(f"sched:alive:{process}")) is not None

    async def stop(self) -> None:
        """SIGTERM: take no more; let the fires in flight finish (briefly)."""
        await self.workers.stop(10)
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.wait({self._beat}, timeout=1)
            self._beat = None
        if self._telling:
            await asyncio.wait(set(self._telling), timeout=10)

    async def _took(self) -> bool:
        return await self.round() > 0

    async def round(self) -> int:
        """Move what is due into the queue, and fire what there is room for; how many."""
        await self.jobs.wake(self.now())
        taken = 0
        for job_id, schedule_id in await self.jobs.reclaim(RECLAIM_AFTER):
            if job_id in self._in_hand:
                continue  # this process is still firing it (the store was out a while)
            await self.workers.spawn(self._fire_job(job_id, schedule_id))
            taken += 1
        while not self.workers.full and not self.stopping:
            job = await self.jobs.take()
            if job is None:
                break
            await self.workers.spawn(self._fire_job(*job))
            taken += 1
        return taken

    async def _fire_job(self, job_id: str, schedule_id: str) -> None:
        with about(schedule=schedule_id):
            self._in_hand[job_id] = schedule_id
            try:
                if await self.fire(schedule_id):
                    await self.jobs.ack(job_id)
            except StateUnavailable as exc:
                self.outage.failed(exc)  # the job stays pending: reclaimed when it is back
            except Exception:
                log.exception("schedule %s failed", schedule_id)
            finally:
                self._in_hand.pop(job_id, None)

    # -- one schedule ------------------------------------------------------------------

    async def fire(self, schedule_id: str) -> bool:
        """Start schedule ``schedule_id`` once, under the rules as they are now, and say
        what happened; whether its job is done (False: another live process has it).

        A schedule due with many others waits for its turn under STUDIO_RATE_LIMIT, as a
        bulk row does, however long. One missed by more than SCHEDULE_LATE_MINUTES (every
        process was down) is cancelled, not fired, and its starter told. What Twilio
        answered wins over the store: the card and the DM go out from what this process
        knows, and the state is written when the store is back."""
        found = await self.get(schedule_id)
        if found is None or found.state not in ("waiting", "sending"):
            return True  # cancelled, or settled by the process that fired it
        item: Scheduled = found
        if item.state == "sending":  # taken up from a process that stopped mid-start?
            return await self._claimed_elsewhere(item)
        command, caller, sid = item.command, item.caller, item.id
        if self.now() - item.due > self.late_seconds:
            return await self._missed(item)
        taken: dict[str, float] = {}

        async def take() -> bool:
            """Its turn came: claim it, so no other process fires it too."""
            nonlocal item
            if not await self._claim(sid, self.me):
                return False
            await self._unlist(item)
            item = await self._set(item, state="sending")
            audit.record("schedule_fired", caller, command, detail=f"schedule {item.id}")
            taken["at"] = self.now()
            return True

        if (no := self._unconfigured(command, caller)) is None:
            result = await self.engager.start(
                StartRequest(
                    command,
                    caller,
                    rate=False,  # counted when it was scheduled
                    confirmed=True,  # its parameters were accepted then
                    turn="bulk",  # its turn, single commands first
                    at_turn=take,
                )
            )
        else:
            result = no
        if isinstance(result, Refused) and result.kind == "withdrawn":
            return await self._claimed_elsewhere(item)
        if isinstance(result, Refused) and result.kind == "unchecked":
            raise StateUnavailable("the opt-out list")  # fired again once Redis is back
        if isinstance(result, Refused):
            if not await self._claim(sid, self.me):
                return await self._claimed_elsewhere(item)
            await self._unlist(item)
            item = await self._set(item, state="refused", note=refusal_text(command, result))
            await self._tell(item, result)
            return True
        if "at" not in taken and not isinstance(result, Started):  # failed before its turn
            log.error("schedule %s: not fired (%s); tried again", sid, result.error.message)
            return False
        changes: dict[str, Any] = {"fired": taken["at"]}
        if isinstance(result, Started):
            changes |= {"state": "started", "sid": result.engagement.sid}
        else:
            state: State = "unknown" if isinstance(result, Unknown) else "failed"
            changes |= {"state": state, "note": result.error.message}
        await self._tell(item.model_copy(update=changes), result)
        await self._settle(item, changes)
        return True

    async def _settle(self, item: Scheduled, changes: dict[str, Any]) -> None:
        """Write an outcome, waiting for the store if it is out (``SETTLE_FOR`` at most):
        a start Twilio answered is never left to be taken for one that died."""
        waited, pause = 0.0, 0.5
        while True:
            try:
                await self._set(item, **changes)
                return
            except StateUnavailable:
                if waited >= SETTLE_FOR or self.stopping:
                    log.error("schedule %s: its outcome could not be kept", item.id)
                    raise
                await asyncio.sleep(pause)
                waited, pause = waited + pause, min(pause * 2, 5.0)

    async def _missed(self, item: Scheduled) -> bool:
        """Every process was down past the schedule's time by more than
        SCHEDULE_LATE_MINUTES: cancelled, nothing sent, the starter told."""
        if not await self._claim(item.id, self.me):
            return await self._claimed_elsewhere(item)
        await self._unlist(item)
        late = duration(self.now() - item.due, smallest="min")
        note = (
            f"it was missed: the bot was not running at its time and came back {late}"
            f" later, past SCHEDULE_LATE_MINUTES ({self.late_seconds / 60:g}); nothing was"
            " sent, schedule it again if it is still wanted"
        )
        item = await self._set(item, state="cancelled", note=note)
        audit.record(
            "schedule_cancelled", item.caller, item.command, detail=f"schedule {item.id}: {note}"
        )
        await self._tell(item)
        return True

    def _unconfigured(self, command: EngageCommand, caller: Caller) -> Refused | None:
        """A flow removed from the configuration since it was scheduled (audited)."""
        configured = self.policy.configured
        if configured is None or command.flow_sid in configured:
            return None
        reason = "the flow is no longer configured here (STUDIO_FLOW_SID, STUDIO_FLOWS)"
        audit.record("refused", caller, command, detail=reason)
        return Refused("rules", reason)

    async def _claimed_elsewhere(self, item: Scheduled) -> bool:
        """The claim is taken: by a cancel (nothing to do), by a process still alive that
        is firing it (its job is left to it: False), or by a process that stopped before
        saying what happened: outcome unknown, never sent again."""
        claimer = await self._claimer(item.id)
        if claimer == "cancel":
            return True
        fresh = await self.get(item.id)
        if fresh is None or fresh.state not in ("waiting", "sending"):
            return True  # settled meanwhile by the process that fired it
        if claimer is not None and claimer != self.me and await self._alive(claimer):
            return False  # still firing it (a slow start, or the store was out a while)
        note = (
            "the process starting it stopped before Twilio answered; it may have started:"
            " check the Console before starting it again"
        )
        fresh = await self._set(fresh, state="unknown", note=note)
        await self._unlist(fresh)
        audit.record("unknown", fresh.caller, fresh.command, detail=f"schedule {item.id}: {note}")
        await self._tell(fresh)
        return True

    async def _tell(self, item: Scheduled, result: Result | None = None) -> None:
        """Say what happened, in a task of its own: a card waiting for its channel's turn
        under Slack's tier never holds a slot the next due schedule needs."""
        if self.tell is None:
            return
        task = asyncio.get_running_loop().create_task(self._told(self.tell, item, result))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    @staticmethod
    async def _told(tell: Tell, item: Scheduled, result: Result | None) -> None:
        try:
            await tell(item, result)
        except Exception:  # the outcome is kept and audited; the log says who missed it
            log.exception("could not tell %s about schedule %s", item.user, item.id)


def scheduled_command(command: EngageCommand, due: float) -> EngageCommand:
    """``command`` with its time resolved to the epoch second ``due`` (so that a prompt
    parked on the way keeps the same time)."""
    return replace_fields(command, when=Instant(due))
