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
from bot.policy import Policy, refusal
from bot.studio import (
    ALREADY_ACTIVE,
    Engagement,
    Step,
    StudioAPIError,
    StudioClient,
    StudioError,
    StudioOutcomeUnknown,
    subobject,
)
from bot.throttle import RedisStore, Throttle

log = logging.getLogger(__name__)

Reply = Callable[[Message], Awaitable[None]]

# How long a reply to Slack may take; shorter when the bot is being stopped.
_REPLY_SECONDS = 15.0
_LAST_WORD_SECONDS = 3.0


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
    store = RedisStore(settings.redis_url.get_secret_value()) if settings.redis_url else None
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
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        self.mask_numbers = mask_numbers
        self.admins = admins
        self.aliases = dict(aliases or {})  # flow SID -> alias
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

    def _submit(self, command: EngageCommand, caller: Caller, reply: Reply) -> None:
        self._spawn(self._run(command, caller, reply), f"engage:{caller.user_id}")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` after the ack, as a task this Engager owns (see ``drain``)."""
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- status, refresh, end ------------------------------------------------

    def lookup(self, command: StatusCommand, reply: Reply) -> Message:
        """``/engage status``: ack now, report the run through ``reply``."""
        self._spawn(self._lookup(command, reply), f"status:{command.sid}")
        return messages.looking_up(command.sid)

    async def _lookup(self, command: StatusCommand, reply: Reply) -> None:
        for flow_sid in command.flow_sids:
            try:
                run, steps, context = await self._snapshot(flow_sid, command.sid)
            except StudioAPIError as exc:
                if exc.status == 404:
                    continue  # not in this flow: try the next
                await _deliver(reply, messages.lookup_failed(command.sid, exc))
                return
            except StudioError as exc:
                await _deliver(reply, messages.lookup_failed(command.sid, exc))
                return
            name = self.aliases.get(flow_sid, flow_sid)
            await _deliver(reply, messages.status_message(run, steps, context, name))
            return
        await _deliver(reply, messages.lookup_failed(command.sid, None))

    async def _snapshot(self, flow_sid: str, sid: str) -> tuple[Engagement, list[Step], Any]:
        """A run as Studio has it now: the resource, its steps and its context."""
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

    def refresh(self, flow_sid: str, sid: str, starter: str, replace: Reply, notify: Reply) -> None:
        """The Refresh button: replace the card with the run as it is now."""

        async def work() -> None:
            try:
                card = await self._card(flow_sid, sid, starter)
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
            if caller.user_id != starter and caller.user_id not in self.admins:
                audit.record("refused", caller, sid=sid, detail="end: not the starter or an admin")
                await _deliver(notify, messages.not_allowed_to_end(starter))
                return
            try:
                card = await self._card(flow_sid, sid, starter)
                ended = await self.studio.end_engagement(flow_sid, sid)
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
        started = time.monotonic()

        def elapsed() -> float:
            return (time.monotonic() - started) * 1000

        try:
            if not await self.throttle.pace():
                raise StudioError(
                    "too many engagements are starting across the account right now"
                    " (STUDIO_RATE_LIMIT); nothing was sent, try again in a moment"
                )
            engagement = await start(self.studio, command)
        except StudioAPIError as exc:
            if exc.code != ALREADY_ACTIVE:
                await self._failed(exc, command, caller, reply, elapsed())
                return
            await self.throttle.release(caller.user_id, command)  # nothing new started
            try:
                active = await self.studio.find_active(command.flow_sid, command.to)
            except StudioError:
                active = None
            token = await self.throttle.park(
                caller.user_id, command, active.sid if active else None
            )
            audit.record(
                "already_active",
                caller,
                command,
                code=exc.code,
                latency_ms=elapsed(),
                sid=active.sid if active else None,
            )
            await _deliver(reply, messages.already_active(command, active, token), command, None)
            return
        except StudioError as exc:
            await self._failed(exc, command, caller, reply, elapsed())
            return
        except asyncio.CancelledError:
            stopped = StudioOutcomeUnknown("the bot was stopped while waiting for Twilio's answer")
            audit.record("unknown", caller, command, latency_ms=elapsed(), detail=stopped.message)
            last_word = messages.engage_failed(command, stopped)
            await asyncio.shield(_deliver(reply, last_word, command, None, _LAST_WORD_SECONDS))
            raise
        audit.record("started", caller, command, sid=engagement.sid, latency_ms=elapsed())
        message = messages.engaged(
            command, engagement, caller.user_id, mask=self.mask_numbers, api=self.studio.api
        )
        await _deliver(reply, message, command, engagement)

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
