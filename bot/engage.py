"""The engage use-case: start a parsed command's engagement and report the outcome.

``Engager`` owns the work that continues after Slack's ack: each engagement
runs as a tracked task, so that shutdown can stop taking commands, wait for the
ones in flight and report every one of them (``drain``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import httpx

from bot import messages
from bot.command import EngageCommand
from bot.config import Settings
from bot.messages import Message
from bot.studio import Engagement, StudioClient, StudioError, StudioOutcomeUnknown

log = logging.getLogger(__name__)

Reply = Callable[[Message], Awaitable[None]]

# How long a reply to Slack may take; shorter when the bot is being stopped.
_REPLY_SECONDS = 15.0
_LAST_WORD_SECONDS = 3.0


def studio_client(settings: Settings) -> StudioClient:
    """The process's one Studio client, as configured."""
    username, password = settings.twilio_credentials
    return StudioClient(base_url=settings.twilio_base_url, username=username, password=password)


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

    def __init__(self, studio: StudioClient) -> None:
        self.studio = studio
        self.accepting = True
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, command: EngageCommand, user_id: str, reply: Reply) -> bool:
        """Start ``command`` in the background; False (and nothing sent) when shutting down."""
        if not self.accepting:
            return False
        task = asyncio.get_running_loop().create_task(
            self._run(command, user_id, reply), name=f"engage:{user_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(self, command: EngageCommand, user_id: str, reply: Reply) -> None:
        started = time.monotonic()
        try:
            engagement = await start(self.studio, command)
        except StudioError as exc:
            outcome = "unknown" if exc.outcome_unknown else "failed"
            _log_outcome(outcome, command, user_id, started, code=exc.code, error=exc.message)
            await _deliver(reply, messages.engage_failed(command, exc), command, None)
            return
        except asyncio.CancelledError:
            _log_outcome("unknown", command, user_id, started, error="bot stopped while waiting")
            stopped = StudioOutcomeUnknown("the bot was stopped while waiting for Twilio's answer")
            last_word = messages.engage_failed(command, stopped)
            await asyncio.shield(_deliver(reply, last_word, command, None, _LAST_WORD_SECONDS))
            raise
        _log_outcome("started", command, user_id, started, sid=engagement.sid)
        await _deliver(reply, messages.engaged(command, engagement, user_id), command, engagement)

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


def _log_outcome(
    outcome: str,
    command: EngageCommand,
    user_id: str,
    started: float,
    *,
    sid: str | None = None,
    code: int | None = None,
    error: str | None = None,
) -> None:
    log.info(
        "engage outcome=%s sid=%s flow=%s user=%s to=…%s code=%s latency_ms=%d%s",
        outcome,
        sid or "-",
        command.flow_sid,
        user_id,
        command.to[-4:],
        code if code is not None else "-",
        (time.monotonic() - started) * 1000,
        f" error={error!r}" if error else "",
    )
