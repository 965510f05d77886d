"""The engage use-case: decide whether a parsed command may run, run it, keep it.

``start_now`` is the whole of a start for a surface that waits for the outcome (the
terminal, bulk rows): the rules, the flow checks, then the start, returning a domain
result, the ``Outcome`` or why it was ``Refused``, which each surface renders (text
for the terminal and the results file, ``messages.refusal`` for Slack). Slack's
conversation around a start (the ack, prompts to confirm, the card) is
``bot.slack_engage``, on the steps this module exposes:

- ``check``: the rules, the contact's quiet hours and the per-user limit (audited);
- ``preflight``: the flow catalog's checks: a flow whose REST API trigger is not
  connected is refused, and parameters the flow does not read (or lacks) are found
  (``FLOW_PARAMETER_CHECK``);
- ``launch``: paces under STUDIO_RATE_LIMIT, sends the create request (never twice:
  ``bot.studio``), audits the outcome, remembers who started the run and records it.

What the use-cases share (the rules, the limits, the flow catalog, who started which
run, the records) is built once in ``bot.services`` and handed to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from dataclasses import replace as replace_fields
from typing import Literal

import httpx

from bot import audit
from bot.audit import Caller
from bot.command import EngageCommand
from bot.config import Settings
from bot.contact_clock import ContactClock, Opening, local_time
from bot.errors import (
    StateUnavailable,
    StudioBusy,
    StudioError,
    StudioNotSent,
    StudioOutcomeUnknown,
)
from bot.flow_catalog import FlowCatalog
from bot.flows import Findings, FlowInfo, findings
from bot.messages.text import findings_text
from bot.policy import Policy, destination_refusal, refusal
from bot.records import Records
from bot.runs import RunRegistry, Shown
from bot.store import BestEffort, Durable, Store, open_store
from bot.studio import Engagement, StudioClient, is_already_active
from bot.throttle import Throttle

log = logging.getLogger(__name__)


def studio_client(settings: Settings) -> StudioClient:
    """The process's one Studio client, as configured."""
    username, password = settings.twilio_credentials
    return StudioClient(
        base_url=settings.twilio_base_url,
        username=username,
        password=password,
        api=settings.studio_api,
    )


def state_store(settings: Settings) -> Store:
    """Redis when REDIS_URL is set, else this process's memory."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    return open_store(url, verify_tls=settings.redis_tls_verify)


def throttle(settings: Settings, store: Store) -> Throttle:
    """The "how often" guardrails over ``store``, falling back to memory while it fails."""
    return Throttle(
        BestEffort(store),
        user_rate=settings.user_rate_limit,
        studio_rate=settings.studio_rate_limit,
        max_wait=settings.pacing_max_wait_seconds,
        duplicate_window=settings.duplicate_window_seconds,
    )


def engagement_request(studio: StudioClient, command: EngageCommand) -> httpx.Request:
    """The request a start would send for ``command`` (for ``--dry-run``)."""
    return studio.engagement_request(
        command.flow_sid, to=command.to, sender=command.sender, parameters=command.parameters
    )


@dataclass(frozen=True)
class Refused:
    """A start stopped before anything was sent: by the rules (who, where, which contact:
    ``reason``), the contact's quiet hours (``opening``: when their window opens), the
    per-user limit (``wait`` seconds), the duplicate window (the same user, flow and
    contact just now), a flow whose REST API trigger is not connected, or
    parameters the flow does not fit (``findings``). Each surface says it its own way
    (``messages.refusal`` for Slack, ``refusal_text`` for text)."""

    kind: Literal[
        "rules", "quiet_hours", "rate_limited", "duplicate", "not_rest_ready", "parameters"
    ]
    reason: str = ""
    wait: float = 0.0
    findings: Findings | None = None
    opening: Opening | None = None


@dataclass(frozen=True)
class Outcome:
    """How a start ended: the run, or the error (and, if Twilio said the contact already
    has one, the active run when it was found)."""

    engagement: Engagement | None = None
    error: StudioError | None = None
    active: Engagement | None = None


class Engager:
    """Starts engagements under the guardrails, and keeps who started each and how it
    went. Returns domain results; the surfaces (``bot.slack_engage`` for Slack, the
    terminal, bulk rows) say them their own way."""

    def __init__(
        self,
        studio: StudioClient,
        *,
        policy: Policy | None = None,
        throttle: Throttle | None = None,
        state: Durable | None = None,
        registry: RunRegistry | None = None,
        records: Records | None = None,
        aliases: Mapping[str, str] | None = None,
        catalog: FlowCatalog | None = None,
        parameter_check: str = "confirm",
        clock: ContactClock | None = None,
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        state = state or Durable(self.throttle.state.memory)
        self.registry = registry or RunRegistry(state)
        self.records = records  # every start, kept (RUN_RECORD_DAYS); None: not kept
        self.aliases = dict(aliases or {})  # flow SID -> alias
        self.catalog = catalog  # None: flows are not checked (as before the Flows API)
        self.parameter_check = parameter_check  # FLOW_PARAMETER_CHECK: confirm|refuse|off
        self.clock = clock or ContactClock()  # quiet hours (off unless configured)

    async def start_now(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        force: bool = False,
        bulk: bool = False,
        paced: bool = False,
        bulk_run: str = "",
        row: str = "",
    ) -> Outcome | Refused:
        """Apply the guardrails and the flow checks, then start and wait for the outcome;
        or why not. With ``force``, parameter findings do not stop it. A ``bulk`` row
        (previewed and confirmed as a whole, counted as one use when it started) skips
        the per-user limit and the parameter prompt, and lets single commands go first;
        ``paced``: its slot under STUDIO_RATE_LIMIT was taken already (``Throttle.pace``)."""
        if bulk:
            if reason := destination_refusal(self.policy, command):
                audit.record("refused", caller, command, detail=reason)
                return Refused("rules", reason)
            return await self.launch(
                command, caller, bulk=True, paced=paced, origin=(bulk_run, row)
            )
        if no := await self.check(command, caller):
            return no
        command, refused, found = await self.preflight(command, caller, checked=force)
        if refused:
            return refused
        if found:  # no one to ask: refused, unless forced
            audit.record("refused", caller, command, detail=f"parameters: {findings_text(found)}")
            return Refused("parameters", findings=found)
        return await self.launch(command, caller)

    # -- the flows, as Studio knows them -----------------------------------------

    def named(self, command: EngageCommand) -> EngageCommand:
        """``command`` with Studio's name for its flow, if this process knows it already."""
        info = self.catalog.peek(command.flow_sid) if self.catalog else None
        return replace_fields(command, flow_name=info.name) if info and info.name else command

    async def inspect(self, command: EngageCommand) -> tuple[FlowInfo | None, Findings]:
        """What the flow checks would find (for ``--dry-run``); sends nothing."""
        info = await self.catalog.get(command.flow_sid) if self.catalog else None
        if info is None:
            return None, Findings()
        return info, findings(info.analysis.parameters, command.parameters)

    async def preflight(
        self, command: EngageCommand, caller: Caller, *, checked: bool
    ) -> tuple[EngageCommand, Refused | None, Findings | None]:
        """The flow checks before the create request: (the command, named; a refusal;
        findings to confirm). Nothing is checked when Studio cannot be asked."""
        info = await self.catalog.get(command.flow_sid) if self.catalog else None
        if info is None:
            return command, None, None
        if info.name:
            command = replace_fields(command, flow_name=info.name)
        if info.analysis.rest_ready is False:
            audit.record("refused", caller, command, detail="REST API trigger not connected")
            return command, Refused("not_rest_ready"), None
        if checked or self.parameter_check == "off":
            return command, None, None
        found = findings(info.analysis.parameters, command.parameters)
        if found and self.parameter_check == "refuse":
            audit.record("refused", caller, command, detail=f"parameters: {findings_text(found)}")
            return command, Refused("parameters", findings=found), None
        return command, None, found or None

    # -- the rules, the start, the report ---------------------------------------

    async def check(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        quiet: bool = True,
        rate: bool = True,
        claim: bool = False,
    ) -> Refused | None:
        """The refusal for a command the rules, the contact's quiet hours (unless
        ``quiet`` is False: an admin's override; a scheduled command is judged at its
        time) or the user's rate limit forbid (audited); counts a use unless ``rate`` is
        False. With ``claim``, the duplicate window too (``Refused("duplicate")``: the
        same user, flow and contact just now), in the same round trip to the store as
        the use. The terminal has only the destination rules and quiet hours."""
        reason = (
            destination_refusal(self.policy, command)
            if caller.terminal
            else refusal(self.policy, command, caller.user_id, caller.channel_id)
        )
        if reason:
            audit.record("refused", caller, command, detail=reason)
            return Refused("rules", reason)
        if quiet and command.when is None and (no := self.quiet_now(command, caller)):
            return no
        rate = rate and not caller.terminal
        if not (rate or claim):
            return None
        wait, claimed = await self.throttle.admit(caller.user_id, command, rate=rate, claim=claim)
        if wait:
            audit.record("rate_limited", caller, command, detail=self.throttle.user_rate)
            return Refused("rate_limited", wait=wait)
        if not claimed:
            audit.record("duplicate", caller, command)
            return Refused("duplicate")
        return None

    def quiet_now(
        self, command: EngageCommand, caller: Caller, at: float | None = None
    ) -> Refused | None:
        """The refusal for a contact in quiet hours at ``at`` (default now), audited."""
        opening = self.clock.opens(command.flow_sid, command.to, at)
        if opening is None:
            return None
        opens = local_time(opening.at, opening.zone) if opening.at else "no time soon"
        audit.record("refused", caller, command, detail=f"quiet hours; window opens {opens}")
        return Refused("quiet_hours", opening=opening)

    async def starter_of(self, sid: str) -> str | None:
        """Who started run ``sid`` from this bot; None if unknown or unreadable now."""
        return await self.registry.starter(sid)

    async def launch(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        on_stopped: Callable[[StudioError], Awaitable[None]] | None = None,
        bulk: bool = False,
        paced: bool = False,
        origin: tuple[str, str] = ("", ""),
    ) -> Outcome:
        """Pace, start, audit, remember: every start ends here, whatever happens.

        A claim in the duplicate window is released only when nothing can have reached
        Twilio. If the task is cancelled (shutdown), ``on_stopped`` is told what is
        known (to tell the user) before the cancellation goes on.
        """
        started = time.monotonic()
        sent = False  # whether the create request may have left
        if origin[0] and not caller.via:  # a bulk row: its audit lines say which run
            caller = replace_fields(caller, via=f"bulk run {origin[0]}")

        def ms() -> float:
            return (time.monotonic() - started) * 1000

        try:
            if not paced and not await self.throttle.pace(bulk=bulk):
                raise StudioBusy
            sent = True
            engagement = await self.studio.create_engagement(
                command.flow_sid,
                to=command.to,
                sender=command.sender,
                parameters=command.parameters,
                before_retry=self.throttle.pace,  # a 429's retry takes its turn too
            )
        except StudioError as exc:
            return await self._failed(exc, command, caller, ms(), origin)
        except asyncio.CancelledError:
            stopped = self._stopped(sent)
            if not stopped.outcome_unknown:
                await self.throttle.release(caller.user_id, command)
            said: audit.Outcome = "unknown" if stopped.outcome_unknown else "failed"
            audit.record(said, caller, command, latency_ms=ms(), detail=stopped.message)
            if on_stopped is not None:  # what is known, said before the cancellation goes on
                await asyncio.shield(on_stopped(stopped))
            raise
        except Exception as exc:  # a defect: still an outcome, an audit line, the right claim
            log.exception("engagement start failed (%s)", type(exc).__name__)
            defect = (
                StudioOutcomeUnknown(f"the bot failed after sending ({type(exc).__name__})")
                if sent
                else StudioNotSent(f"the bot failed before sending ({type(exc).__name__})")
            )
            return await self._failed(defect, command, caller, ms(), origin)
        try:
            shown = Shown(caller.user_id, command.flow_sid, caller.channel_id)
            await self.registry.remember(engagement.sid, shown)
        except StateUnavailable:
            pass  # logged by the store; the End rule then falls back to admins and the card
        audit.record("started", caller, command, sid=engagement.sid, latency_ms=ms())
        if self.records is not None:
            bulk_run, row = origin
            with contextlib.suppress(StateUnavailable):  # logged; the start stands
                await self.records.started(
                    engagement.sid, command, caller, bulk_run=bulk_run, row=row
                )
        return Outcome(engagement=engagement)

    @staticmethod
    def _stopped(sent: bool) -> StudioError:
        if sent:
            return StudioOutcomeUnknown("the bot was stopped while waiting for Twilio's answer")
        return StudioNotSent(
            "the bot was restarting before the request was sent (it was waiting for its turn"
            " under STUDIO_RATE_LIMIT); nothing was sent, try again in a minute"
        )

    async def _failed(
        self,
        exc: StudioError,
        command: EngageCommand,
        caller: Caller,
        ms: float,
        origin: tuple[str, str] = ("", ""),
    ) -> Outcome:
        if self.records is not None and not isinstance(exc, StudioNotSent):
            bulk_run, row = origin  # Twilio refused it, or may have started it: kept
            with contextlib.suppress(StateUnavailable):
                await self.records.not_started(command, caller, exc, bulk_run=bulk_run, row=row)
        active = None
        if is_already_active(exc):
            await self.throttle.release(caller.user_id, command)  # nothing new started
            try:
                active = await self.studio.find_active(command.flow_sid, command.to)
            except StudioError:
                active = None
            audit.record(
                "already_active",
                caller,
                command,
                code=exc.code,
                latency_ms=ms,
                sid=active.sid if active else None,
            )
            return Outcome(error=exc, active=active)
        if not exc.outcome_unknown:
            await self.throttle.release(caller.user_id, command)  # certainly not started
        said: audit.Outcome = "unknown" if exc.outcome_unknown else "failed"
        audit.record(said, caller, command, code=exc.code, latency_ms=ms, detail=exc.message)
        return Outcome(error=exc)
