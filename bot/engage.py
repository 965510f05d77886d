"""The engage use-case: decide whether a parsed command may run, run it, report it.

``Engager.request`` applies the guardrails (who, where, how often, no double
trigger) and returns the message for Slack's ack; the engagement itself runs
as a task the Engager owns, so that shutdown can stop taking commands, wait
for the ones in flight and report every one of them (``drain``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import replace as replace_fields
from typing import Any

import httpx

from bot import audit, messages
from bot.audit import Caller
from bot.command import EngageCommand, StatusCommand
from bot.config import Settings
from bot.messages import Message, RunCard
from bot.policy import Policy, access_refusal, refusal
from bot.studio import (
    Engagement,
    Step,
    StudioAPIError,
    StudioClient,
    StudioError,
    StudioOutcomeUnknown,
    is_already_active,
    subobject,
)
from bot.throttle import RedisStore, Throttle

log = logging.getLogger(__name__)

Reply = Callable[[Message], Awaitable[None]]

# How long a reply to Slack may take; shorter when the bot is being stopped.
_REPLY_SECONDS = 15.0
_LAST_WORD_SECONDS = 3.0
_ACTIONS = "actions"  # the per-user count of looks at runs: status, Refresh, End
_SNAPSHOT_REQUESTS = 3  # a run, its steps, its context


class Busy(Exception):
    """No room under STUDIO_RATE_LIMIT in time: nothing was sent."""


def studio_client(settings: Settings) -> StudioClient:
    """The process's one Studio client, as configured."""
    username, password = settings.twilio_credentials
    return StudioClient(
        base_url=settings.twilio_base_url,
        username=username,
        password=password,
        api=settings.studio_api,
    )


def throttle(settings: Settings) -> Throttle:
    """The guardrails' state: Redis when REDIS_URL is set, else this process's memory."""
    store = (
        RedisStore(settings.redis_url.get_secret_value(), verify_tls=settings.redis_tls_verify)
        if settings.redis_url
        else None
    )
    return Throttle(
        store,
        user_rate=settings.user_rate_limit,
        studio_rate=settings.studio_rate_limit,
        max_wait=settings.pacing_max_wait_seconds,
        duplicate_window=settings.duplicate_window_seconds,
    )


def engagement_request(studio: StudioClient, command: EngageCommand) -> httpx.Request:
    """The request ``start`` would send for ``command`` (for ``--dry-run``)."""
    return studio.engagement_request(
        command.flow_sid, to=command.to, sender=command.sender, parameters=command.parameters
    )


async def start(studio: StudioClient, command: EngageCommand) -> Engagement:
    """Start ``command``'s flow for its contact. Raises ``StudioError``."""
    return await studio.create_engagement(
        command.flow_sid, to=command.to, sender=command.sender, parameters=command.parameters
    )


class Engager:
    """Runs engagements after the ack and reports each one through its ``Reply``."""

    def __init__(
        self,
        studio: StudioClient,
        *,
        policy: Policy | None = None,
        throttle: Throttle | None = None,
        mask_numbers: bool = False,
        admins: frozenset[str] = frozenset(),
        aliases: Mapping[str, str] | None = None,
        configured: frozenset[str] | None = None,
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        self.mask_numbers = mask_numbers
        self.admins = admins
        self.aliases = dict(aliases or {})  # flow SID -> alias
        # The flows whose runs people may read (admins: any flow of the account).
        self.configured = configured if configured is not None else frozenset(self.aliases)
        self.accepting = True
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    async def request(self, command: EngageCommand, caller: Caller, reply: Reply) -> Message:
        """Apply the guardrails; start the engagement or say why not. Returns the ack."""
        if not self.accepting:
            return messages.shutting_down()
        if no := await self._refuse(command, caller):
            return no
        if not await self.throttle.claim(caller.user_id, command):
            token = await self.throttle.park(caller.user_id, command)
            audit.record("duplicate", caller, command)
            return messages.confirm_duplicate(command, token, self.throttle.duplicate_window)
        self._submit(command, caller, reply)
        return messages.starting(command)

    def confirm(self, token: str, caller: Caller, replace: Reply, reply: Reply) -> None:
        """The "start again" buttons: in the background, replace the prompt with the answer
        and, if it may run, start the parked command (reporting through ``reply``)."""
        if not self.accepting:
            self._spawn(_deliver(replace, messages.shutting_down()), "confirm")
            return

        async def work() -> None:
            await _deliver(replace, await self._confirm(token, caller, reply))

        self._spawn(work(), f"confirm:{caller.user_id}")

    def cancel(self, token: str, replace: Reply) -> None:
        """The Cancel button: forget the parked command, say so in place of the prompt."""

        async def work() -> None:
            await self.throttle.unpark(token)
            await _deliver(replace, messages.cancelled())

        self._spawn(work(), "cancel")

    async def _confirm(self, token: str, caller: Caller, reply: Reply) -> Message:
        parked = await self.throttle.unpark(token)
        if parked is None:
            return messages.expired()
        command = parked.command
        if parked.user_id != caller.user_id:
            return messages.refused("only the person who typed the command can confirm it")
        if no := await self._refuse(command, caller):
            return no
        if parked.active_sid:
            starter = await self.throttle.starter_of(parked.active_sid)
            if not self._may_end(caller, starter):
                audit.record(
                    "refused",
                    caller,
                    command,
                    sid=parked.active_sid,
                    detail="end to start again: not the starter or an admin",
                )
                return messages.not_allowed_to_end(starter)
            try:
                await self.studio.end_engagement(command.flow_sid, parked.active_sid)
            except StudioError as exc:
                return messages.action_failed(f"end {parked.active_sid}", exc)
            audit.record("ended", caller, command, sid=parked.active_sid, detail="to start again")
        await self.throttle.claim(caller.user_id, command)  # restart the window from now
        self._submit(command, caller, reply)
        return messages.starting(command)

    async def _refuse(self, command: EngageCommand, caller: Caller) -> Message | None:
        """The refusal for a command the rules or the user's rate limit forbid; counts a use."""
        if reason := refusal(self.policy, command, caller.user_id, caller.channel_id):
            audit.record("refused", caller, command, detail=reason)
            return messages.refused(reason)
        if wait := await self.throttle.user_wait(caller.user_id):
            audit.record("rate_limited", caller, command, detail=self.throttle.user_rate)
            return messages.rate_limited(wait, self.throttle.user_rate)
        return None

    def _may_end(self, caller: Caller, starter: str | None) -> bool:
        """The End rule: the person who started the run, or an admin."""
        return caller.user_id in self.admins or (starter is not None and caller.user_id == starter)

    def _submit(self, command: EngageCommand, caller: Caller, reply: Reply) -> None:
        self._spawn(self._run(command, caller, reply), f"engage:{caller.user_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` after the ack, as a task this Engager owns (see ``drain``)."""
        task = asyncio.get_running_loop().create_task(_logged(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- who may read or end runs ---------------------------------------------

    def _read_refusal(self, flow_sid: str, caller: Caller) -> str | None:
        """Why ``caller`` may not read (or end) runs of ``flow_sid``: the same access rules
        as starting it; a flow not configured here is for admins only."""
        if flow_sid not in self.configured and caller.user_id not in self.admins:
            return (
                "that flow is not configured here (STUDIO_FLOW_SID, STUDIO_FLOWS); only admins"
                " (ADMIN_SLACK_USERS) can look at its runs"
            )
        name = self.aliases.get(flow_sid)
        return access_refusal(self.policy, flow_sid, name, caller.user_id, caller.channel_id)

    async def _action_refusal(
        self, flow_sids: tuple[str, ...], caller: Caller, sid: str, what: str
    ) -> tuple[tuple[str, ...], Message | None]:
        """The flows ``caller`` may act on among ``flow_sids``, or the refusal: the access
        rules, then the per-user limit on looks at runs. Audited when refused."""
        reasons = {flow: self._read_refusal(flow, caller) for flow in flow_sids}
        allowed = tuple(flow for flow in flow_sids if reasons[flow] is None)
        if not allowed:
            reason = next(r for r in reasons.values() if r)
            audit.record("refused", caller, sid=sid, detail=f"{what}: {reason}")
            return (), messages.not_allowed(reason)
        if wait := await self.throttle.user_wait(caller.user_id, _ACTIONS):
            audit.record(
                "rate_limited", caller, sid=sid, detail=f"{what}: {self.throttle.user_rate}"
            )
            return (), messages.rate_limited(wait, self.throttle.user_rate, starting=False)
        return allowed, None

    # -- status, refresh, end ------------------------------------------------

    async def lookup(self, command: StatusCommand, caller: Caller, reply: Reply) -> Message:
        """``/engage status``: the access rules and the limit now (the ack); the run
        follows through ``reply``."""
        flows, refused = await self._action_refusal(
            command.flow_sids, caller, command.sid, "status"
        )
        if refused:
            return refused
        self._spawn(self._lookup(command.sid, flows, caller, reply), f"status:{command.sid}")
        return messages.looking_up(command.sid)

    async def _lookup(
        self, sid: str, flow_sids: tuple[str, ...], caller: Caller, reply: Reply
    ) -> None:
        for flow_sid in flow_sids:
            try:
                run, steps, context = await self._snapshot(flow_sid, sid)
            except Busy:
                await _deliver(reply, messages.studio_busy())
                return
            except StudioAPIError as exc:
                if exc.status == 404:
                    continue  # not in this flow: try the next
                await _deliver(reply, messages.lookup_failed(sid, exc))
                return
            except StudioError as exc:
                await _deliver(reply, messages.lookup_failed(sid, exc))
                return
            name = self.aliases.get(flow_sid, flow_sid)
            mask = self.mask_numbers and await self.throttle.starter_of(sid) != caller.user_id
            await _deliver(reply, messages.status_message(run, steps, context, name, mask=mask))
            return
        await _deliver(reply, messages.lookup_failed(sid, None))

    async def _snapshot(self, flow_sid: str, sid: str) -> tuple[Engagement, list[Step], Any]:
        """A run as Studio has it now: the resource, its steps and its context.

        Paced under STUDIO_RATE_LIMIT like starts; raises ``Busy`` if there is no room.
        """
        if not await self.throttle.pace(_SNAPSHOT_REQUESTS):
            raise Busy
        run = await self.studio.fetch_engagement(flow_sid, sid)
        steps = await self.studio.steps(flow_sid, sid)
        context = await self.studio.context(flow_sid, sid)
        return run, steps, context

    async def _card(self, flow_sid: str, sid: str, starter: str) -> RunCard:
        """The card of a run as Studio has it now (status, latest step, data, sender)."""
        run, steps, context = await self._snapshot(flow_sid, sid)
        flow = subobject(context, "flow")
        channel = subobject(flow, "channel")
        return RunCard(
            sid=run.sid,
            status=run.status or "unknown",
            flow_sid=flow_sid,
            flow_alias=self.aliases.get(flow_sid),
            contact=run.contact_channel_address or "",
            sender=channel.get("address") if isinstance(channel.get("address"), str) else None,
            starter=starter,
            parameters=flow.get("data"),
            url=run.url,
            api=self.studio.api,
            latest_step=steps[-1] if steps else None,
            updated=run.date_updated or run.date_created,
        )

    def refresh(
        self,
        flow_sid: str,
        sid: str,
        starter: str,
        caller: Caller,
        replace: Reply,
        notify: Reply,
    ) -> None:
        """The Refresh button: replace the card with the run as it is now."""

        async def work() -> None:
            _, refused = await self._action_refusal((flow_sid,), caller, sid, "refresh")
            if refused:
                await _deliver(notify, refused)
                return
            try:
                card = await self._card(flow_sid, sid, starter)
            except Busy:
                await _deliver(notify, messages.studio_busy())
                return
            except StudioError as exc:
                await _deliver(notify, messages.action_failed(f"refresh {sid}", exc))
                return
            await _deliver(replace, messages.run_card(card, mask=self.mask_numbers))

        self._spawn(work(), f"refresh:{sid}")

    def end(
        self, flow_sid: str, sid: str, starter: str, caller: Caller, replace: Reply, notify: Reply
    ) -> None:
        """The End button: only the starter or an admin; v2 ends, v1 deletes."""

        async def work() -> None:
            _, refused = await self._action_refusal((flow_sid,), caller, sid, "end")
            if refused:
                await _deliver(notify, refused)
                return
            if not self._may_end(caller, starter):
                audit.record("refused", caller, sid=sid, detail="end: not the starter or an admin")
                await _deliver(notify, messages.not_allowed_to_end(starter))
                return
            try:
                card = await self._card(flow_sid, sid, starter)
                if not await self.throttle.pace():
                    raise Busy
                ended = await self.studio.end_engagement(flow_sid, sid)
            except Busy:
                await _deliver(notify, messages.studio_busy())
                return
            except StudioError as exc:
                await _deliver(notify, messages.action_failed(f"end {sid}", exc))
                return
            audit.record("ended", caller, sid=sid, detail=f"started by {starter}")
            status = (ended.status or "ended") if ended is not None else card.status
            card = replace_fields(
                card, status=status, ended_by=caller.user_id, deleted=ended is None
            )
            await _deliver(replace, messages.run_card(card, mask=self.mask_numbers))

        self._spawn(work(), f"end:{sid}")

    async def _run(self, command: EngageCommand, caller: Caller, reply: Reply) -> None:
        """Start the engagement and report it. Whatever happens ends in a reply and an
        audit line; a claim is released only when nothing can have reached Twilio."""
        started = time.monotonic()
        sent = False  # whether the create request may have left

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        try:
            if not await self.throttle.pace():
                raise StudioError(
                    "too many engagements are starting across the account right now"
                    " (STUDIO_RATE_LIMIT); nothing was sent, try again in a moment"
                )
            sent = True
            engagement = await start(self.studio, command)
        except StudioError as exc:
            if is_already_active(exc):
                await self._already_active(exc, command, caller, reply, elapsed())
            else:
                await self._failed(exc, command, caller, reply, elapsed())
            return
        except asyncio.CancelledError:
            stopped: StudioError
            if sent:
                stopped = StudioOutcomeUnknown(
                    "the bot was stopped while waiting for Twilio's answer"
                )
                audit.record(
                    "unknown", caller, command, latency_ms=elapsed(), detail=stopped.message
                )
            else:
                stopped = StudioError(
                    "the bot was restarting before the request was sent (it was waiting for"
                    " its turn under STUDIO_RATE_LIMIT); nothing was sent, try again in a minute"
                )
                await self.throttle.release(caller.user_id, command)
                audit.record(
                    "failed", caller, command, latency_ms=elapsed(), detail=stopped.message
                )
            last_word = messages.engage_failed(command, stopped)
            await asyncio.shield(_deliver(reply, last_word, command, None, _LAST_WORD_SECONDS))
            raise
        except Exception as exc:  # a defect: still a reply, an audit line, the right claim
            log.exception("engagement task failed (%s)", type(exc).__name__)
            error = (
                StudioOutcomeUnknown(f"the bot failed after sending ({type(exc).__name__})")
                if sent
                else StudioError(f"the bot failed before sending ({type(exc).__name__})")
            )
            await self._failed(error, command, caller, reply, elapsed())
            return
        await self.throttle.remember_starter(engagement.sid, caller.user_id)
        audit.record("started", caller, command, sid=engagement.sid, latency_ms=elapsed())
        message = messages.engaged(
            command, engagement, caller.user_id, mask=self.mask_numbers, api=self.studio.api
        )
        await _deliver(reply, message, command, engagement)

    async def _already_active(
        self, exc: StudioError, command: EngageCommand, caller: Caller, reply: Reply, ms: float
    ) -> None:
        """Twilio refused: the contact has an active run. Offer to end it, if the End rule
        lets this caller; else say who may."""
        await self.throttle.release(caller.user_id, command)  # nothing new started
        try:
            active = await self.studio.find_active(command.flow_sid, command.to)
        except StudioError:
            active = None
        starter = await self.throttle.starter_of(active.sid) if active else None
        token = None
        if active is not None and self._may_end(caller, starter):
            token = await self.throttle.park(caller.user_id, command, active.sid)
        audit.record(
            "already_active",
            caller,
            command,
            code=exc.code,
            latency_ms=ms,
            sid=active.sid if active else None,
        )
        message = messages.already_active(
            command, exc, active, token, starter=starter, api=self.studio.api
        )
        await _deliver(reply, message, command, None)

    async def _failed(
        self, exc: StudioError, command: EngageCommand, caller: Caller, reply: Reply, ms: float
    ) -> None:
        outcome = "unknown" if exc.outcome_unknown else "failed"
        if not exc.outcome_unknown:
            await self.throttle.release(caller.user_id, command)  # certainly not started
        audit.record(outcome, caller, command, code=exc.code, latency_ms=ms, detail=exc.message)
        await _deliver(reply, messages.engage_failed(command, exc), command, None)

    async def drain(self, grace: float) -> None:
        """Stop taking commands, wait up to ``grace`` seconds for the work in flight
        (and whatever it starts meanwhile).

        Any still running then are cancelled; an engagement cut short tells its user
        the outcome is unknown.
        """
        self.accepting = False
        if not self._tasks:
            return
        log.info("shutting down: waiting up to %.0f s for %d task(s)", grace, len(self._tasks))
        deadline = time.monotonic() + grace
        while self._tasks and (left := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        if still_running := set(self._tasks):
            log.warning("grace period over: %d task(s) cut short", len(still_running))
            for task in still_running:
                task.cancel()
            await asyncio.wait(still_running, timeout=_LAST_WORD_SECONDS + 1)


async def _logged(work: Coroutine[Any, Any, None], name: str) -> None:
    """Await ``work``; a defect that escapes it is logged, never lost silently."""
    try:
        await work
    except Exception:
        log.exception("task %s failed", name)


async def _deliver(
    reply: Reply,
    message: Message,
    command: EngageCommand | None = None,
    engagement: Engagement | None = None,
    within: float = _REPLY_SECONDS,
) -> None:
    """Send the reply; if Slack cannot take it, the log keeps what the user missed."""
    try:
        await asyncio.wait_for(reply(message), timeout=within)
    except Exception as exc:  # the reply is best effort; the log line is the record
        log.error(
            "could not deliver the reply for %s (%s): %s",
            engagement.sid if engagement else "a failed or informational reply",
            command.flow_sid if command else "-",
            type(exc).__name__,
        )
