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
from collections.abc import Awaitable, Callable

import httpx

from bot import audit, messages
from bot.audit import Caller
from bot.command import EngageCommand
from bot.config import Settings
from bot.messages import Message
from bot.policy import Policy, refusal
from bot.studio import Engagement, StudioClient, StudioError, StudioOutcomeUnknown
from bot.throttle import RedisStore, Throttle

log = logging.getLogger(__name__)

Reply = Callable[[Message], Awaitable[None]]

# How long a reply to Slack may take; shorter when the bot is being stopped.
_REPLY_SECONDS = 15.0
_LAST_WORD_SECONDS = 3.0


def studio_client(settings: Settings) -> StudioClient:
    """The process's one Studio client, as configured."""
    username, password = settings.twilio_credentials
    return StudioClient(base_url=settings.twilio_base_url, username=username, password=password)


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
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        self.mask_numbers = mask_numbers
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

    async def confirm(self, token: str, caller: Caller, reply: Reply) -> Message:
        """The "start again" button: run the parked command. Returns what replaces the prompt."""
        if not self.accepting:
            return messages.shutting_down()
        parked = await self.throttle.unpark(token)
        if parked is None:
            return messages.expired()
        user_id, command = parked
        if user_id != caller.user_id:
            return messages.refused("only the person who typed the command can confirm it")
        if no := await self._refuse(command, caller):
            return no
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
        task = asyncio.get_running_loop().create_task(
            self._run(command, caller, reply), name=f"engage:{caller.user_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        except StudioError as exc:
            outcome = "unknown" if exc.outcome_unknown else "failed"
            if not exc.outcome_unknown:
                await self.throttle.release(caller.user_id, command)
            audit.record(
                outcome, caller, command, code=exc.code, latency_ms=elapsed(), detail=exc.message
            )
            await _deliver(reply, messages.engage_failed(command, exc), command, None)
            return
        except asyncio.CancelledError:
            stopped = StudioOutcomeUnknown("the bot was stopped while waiting for Twilio's answer")
            audit.record("unknown", caller, command, latency_ms=elapsed(), detail=stopped.message)
            last_word = messages.engage_failed(command, stopped)
            await asyncio.shield(_deliver(reply, last_word, command, None, _LAST_WORD_SECONDS))
            raise
        audit.record("started", caller, command, sid=engagement.sid, latency_ms=elapsed())
        message = messages.engaged(command, engagement, caller.user_id, mask=self.mask_numbers)
        await _deliver(reply, message, command, engagement)

    async def drain(self, grace: float) -> None:
        """Stop taking commands, wait up to ``grace`` seconds for those in flight.

        Any still running then are cancelled; each tells its user the outcome is unknown.
        """
        self.accepting = False
        pending = set(self._tasks)
        if not pending:
            return
        log.info("shutting down: waiting up to %.0f s for %d engagement(s)", grace, len(pending))
        _, still_running = await asyncio.wait(pending, timeout=grace)
        if still_running:
            log.warning("grace period over: %d engagement(s) cut short", len(still_running))
            for task in still_running:
                task.cancel()
            await asyncio.wait(still_running, timeout=_LAST_WORD_SECONDS + 1)


async def _deliver(
    reply: Reply,
    message: Message,
    command: EngageCommand,
    engagement: Engagement | None,
    within: float = _REPLY_SECONDS,
) -> None:
    """Send the reply; if Slack cannot take it, the log keeps what the user missed."""
    try:
        await asyncio.wait_for(reply(message), timeout=within)
    except Exception as exc:  # the reply is best effort; the log line is the record
        log.error(
            "could not deliver the reply for %s (%s): %s",
            engagement.sid if engagement else "a failed engagement",
            command.flow_sid,
            type(exc).__name__,
        )
