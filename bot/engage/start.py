"""The engage use-case: the one way to start a flow, for every surface.

A surface (the slash command, the form, the shortcuts, a bulk row, a schedule, the
workflow step, the terminal) builds a ``StartRequest``, the command and who vouches for
it with the surface's mode, and calls ``Engager.start``; it gets back one of
``Started``, ``Refused``, ``Failed`` or ``Unknown`` and renders it (Block Kit, text,
a step's outputs). ``start`` composes, once:

- ``check``: the rules, the contact's quiet hours, the per-user limit and the
  duplicate window, audited (Slack runs it alone for the ack, then starts ``admitted``);
- the flow catalog's checks: a flow whose REST API trigger is not connected is refused,
  and parameters the flow does not read (or lacks) are found (``FLOW_PARAMETER_CHECK``);
- the turn under STUDIO_RATE_LIMIT, the create request (never twice: ``bot.studio.client``),
  the audit line, who started the run, its record, and the claim released when nothing
  can have been sent.

``vet`` is the same start up to its turn, for a surface that keeps it for later (a
schedule). What the use-cases share (the rules, the limits, the flow catalog, who
started which run, the records) is built once in ``bot.app.services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from dataclasses import replace as replace_fields
from typing import Literal

import httpx

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.consent import UNSUBSCRIBED
from bot.domain.contact_clock import ContactClock, local_time
from bot.domain.errors import (
    StateUnavailable,
    StudioBusy,
    StudioError,
    StudioNotSent,
    StudioOutcomeUnknown,
)
from bot.domain.flows import Findings, FlowInfo, findings
from bot.domain.policy import Policy, destination_refusal, refusal
from bot.domain.results import Failed, Refused, Result, Started, Unknown
from bot.domain.run import is_already_active
from bot.domain.text import consent_detail, findings_text
from bot.engage.consent import Consent
from bot.engage.throttle import Throttle
from bot.infra import audit
from bot.runs.records import Records
from bot.runs.registry import RunRegistry, Shown
from bot.state.store import Durable
from bot.studio.catalog import FlowCatalog
from bot.studio.client import StudioClient

log = logging.getLogger(__name__)


def engagement_request(studio: StudioClient, command: EngageCommand) -> httpx.Request:
    """The request a start would send for ``command`` (for ``--dry-run``)."""
    return studio.engagement_request(
        command.flow_sid, to=command.to, sender=command.sender, parameters=command.parameters
    )


@dataclass(frozen=True)
class StartRequest:
    """One start as a surface asks for it: the command, who vouches for it, and the
    surface's mode. The defaults are a single start typed by a person, judged whole.

    - ``admitted``: the rules, quiet hours and limits were checked already (Slack's ack
      checks them before the start runs as a task); ``claimed``: the duplicate window
      holds this start (released when nothing can have been sent).
    - ``rules``: ``"destination"`` for a bulk row, previewed and confirmed as a whole:
      only the destination rules, no limit, no flow checks, no parameter prompt.
    - ``quiet``/``rate``/``claim``: quiet hours, the per-user limit, the duplicate
      window (``Engager.check``); ``confirmed``: parameter findings were accepted
      (``--force``, *Start anyway*); ``ask``: findings come back to ask about rather
      than as a refusal.
    - ``over_cap``: an admin confirmed this start over the contact's caps (audited by
      the surface); it still counts. No one may start a flow for a contact who opted out.
    - ``turn``: ``"single"`` waits for a turn under STUDIO_RATE_LIMIT before bulk work,
      ``"bulk"`` (rows, schedules) after it, however long.
    - ``at_turn``: called once everything passed and the turn came, just before the
      create request; False withdraws the start (``Refused("withdrawn")``, unaudited).
    - ``on_stopped``: told what is known if the bot stops mid-start.
    - ``bulk_run``/``row``: where a bulk row came from, for its record.
    """

    command: EngageCommand
    caller: Caller
    admitted: bool = False
    claimed: bool = False
    rules: Literal["all", "destination"] = "all"
    quiet: bool = True
    rate: bool = True
    claim: bool = False
    confirmed: bool = False
    ask: bool = False
    turn: Literal["single", "bulk"] = "single"
    over_cap: bool = False
    at_turn: Callable[[], Awaitable[bool]] | None = None
    on_stopped: Callable[[StudioError], Awaitable[None]] | None = None
    bulk_run: str = ""
    row: str = ""


class Engager:
    """Starts engagements under the guardrails, and keeps who started each and how it
    went. Returns domain results; the surfaces (``bot.slack.engage`` for Slack, the
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
        consent: Consent | None = None,
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        state = state or Durable(self.throttle.state.store)
        self.registry = registry or RunRegistry(state)
        self.records = records  # every start, kept (RUN_RECORD_DAYS); None: not kept
        self.aliases = dict(aliases or {})  # flow SID -> alias
        self.catalog = catalog  # None: flows are not checked (as before the Flows API)
        self.parameter_check = parameter_check  # FLOW_PARAMETER_CHECK: confirm|refuse|off
        self.clock = clock or ContactClock()  # quiet hours (off unless configured)
        # the suppression list and the caps, on the store the guardrails use
        self.consent = consent or Consent(state, secret=secrets.token_bytes(32))

    async def start(self, request: StartRequest) -> Result:
        """The one way to start a flow, for every surface: the rules and limits (unless
        ``admitted``), the flow checks, the turn, the create request (never twice), the
        audit line, who started it, the record, and the duplicate claim released when
        nothing can have been sent. The surface renders what comes back."""
        vetted = await self.vet(request)
        if isinstance(vetted, Refused):
            return vetted
        return await self._send(vetted, request)

    async def vet(self, request: StartRequest) -> EngageCommand | Refused:
        """Everything before the turn and the create request, for ``start`` and for a
        surface that keeps the start for later (a schedule): the command, named as
        Studio names its flow, or why not (audited; the claim released)."""
        command, caller = self.named(request.command), request.caller
        if request.rules == "destination":
            if reason := destination_refusal(self.policy, command):
                audit.record("refused", caller, command, detail=reason)
                return Refused("rules", reason)
            return await self._admit(command, caller, rate=False, claim=False) or command
        if not request.admitted and (
            no := await self.check(
                command,
                caller,
                quiet=request.quiet,
                rate=request.rate,
                claim=request.claim,
                over_cap=request.over_cap,
            )
        ):
            return no
        command, refused = await self._flow_checks(command, request)
        if refused is not None:  # nothing was sent: the claim and the hold given back
            await self._release(
                caller.user_id,
                command,
                claim=request.claim or request.claimed,
                hold=command.when is None,
            )
        return refused or command

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

    async def _flow_checks(
        self, command: EngageCommand, request: StartRequest
    ) -> tuple[EngageCommand, Refused | None]:
        """The flow catalog's checks: (the command, named; why not). A flow whose REST API
        trigger is not connected is refused; parameters the flow does not read (or lacks)
        are refused, or returned to ask about (``request.ask``), unless ``confirmed`` or
        FLOW_PARAMETER_CHECK is off. Nothing is checked when Studio cannot be asked."""
        caller = request.caller
        info = await self.catalog.get(command.flow_sid) if self.catalog else None
        if info is None:
            return command, None
        if info.name:
            command = replace_fields(command, flow_name=info.name)
        if info.analysis.rest_ready is False:
            audit.record("refused", caller, command, detail="REST API trigger not connected")
            return command, Refused("not_rest_ready")
        if request.confirmed or self.parameter_check == "off":
            return command, None
        found = findings(info.analysis.parameters, command.parameters)
        if not found:
            return command, None
        ask = request.ask and self.parameter_check != "refuse"
        audit.record(
            "parameters" if ask else "refused",
            caller,
            command,
            detail=(findings_text(found) if ask else f"parameters: {findings_text(found)}"),
        )
        return command, Refused("parameters", findings=found, ask=ask)

    # -- the rules, the start, the report ---------------------------------------

    async def check(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        quiet: bool = True,
        rate: bool = True,
        claim: bool = False,
        over_cap: bool = False,
    ) -> Refused | None:
        """The refusal for a command the rules, the contact's quiet hours (unless
        ``quiet`` is False: an admin's override; a scheduled command is judged at its
        time), consent or the user's rate limit forbid (audited); counts a use unless
        ``rate`` is False. With ``claim``, the duplicate window too (``Refused("duplicate")``:
        the same user, flow and contact just now), in the same round trip to the store as
        the use and consent. The terminal has only the destination rules, quiet hours and
        consent. ``over_cap``: an admin lets this start over the contact's caps."""
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
        return await self._admit(
            command, caller, rate=rate and not caller.terminal, claim=claim, over_cap=over_cap
        )

    async def _admit(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        rate: bool,
        claim: bool,
        over_cap: bool = False,
    ) -> Refused | None:
        """Consent, the user's limit and the duplicate claim: one round trip to the store
        (``Throttle.admit``), audited. A start now (not kept for later) holds its place in
        the contact's caps until ``_release``."""
        check = self.consent.check(
            command, caller.user_id, hold=command.when is None, over=over_cap
        )
        try:
            admitted = await self.throttle.admit(
                caller.user_id, command, rate=rate, claim=claim, consent=check
            )
        except StateUnavailable:
            audit.record("refused", caller, command, detail="the opt-out list could not be read")
            return Refused("unchecked")
        if suppressed := self.consent.refusal(admitted, command.flow_sid):
            audit.record(suppressed.kind, caller, command, detail=consent_detail(suppressed))
            return Refused(suppressed.kind, suppressed=suppressed)
        if admitted.wait:
            audit.record("rate_limited", caller, command, detail=self.throttle.user_rate)
            return Refused("rate_limited", wait=admitted.wait)
        if not admitted.claimed:
            audit.record("duplicate", caller, command)
            return Refused("duplicate")
        return None

    async def _release(
        self, user_id: str, command: EngageCommand, *, claim: bool = True, hold: bool = True
    ) -> None:
        """Nothing reached anyone: the duplicate claim and the hold on the caps given back."""
        if claim:
            await self.throttle.release(user_id, command)
        if hold:
            with contextlib.suppress(StateUnavailable):  # logged; the cap counts one more
                await self.consent.release(user_id, command)

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

    async def _send(self, command: EngageCommand, request: StartRequest) -> Result:
        """The turn, the create request, the audit line, who started it, the record:
        every start that passed its checks ends here, whatever happens.

        A claim in the duplicate window is released only when nothing can have reached
        Twilio. If the task is cancelled (shutdown), ``on_stopped`` is told what is
        known (to tell the user) before the cancellation goes on. A store that fails in
        ``at_turn`` is raised to the surface (nothing was sent).
        """
        caller, origin = request.caller, (request.bulk_run, request.row)
        started = time.monotonic()
        sent = False  # whether the create request may have left
        if request.bulk_run and not caller.via:  # a bulk row: its audit lines say which run
            caller = replace_fields(caller, via=f"bulk run {request.bulk_run}")

        def ms() -> float:
            return (time.monotonic() - started) * 1000

        try:
            if not await self.throttle.pace(bulk=request.turn == "bulk"):
                raise StudioBusy
            if request.at_turn is not None and not await request.at_turn():
                claimed = request.claim or request.claimed
                await self._release(caller.user_id, command, claim=claimed)
                return Refused("withdrawn")
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
        except StateUnavailable:
            if sent:  # not raised once the request left; kept as a defect if it ever is
                return await self._failed(
                    StudioOutcomeUnknown("the bot failed after sending (StateUnavailable)"),
                    command,
                    caller,
                    ms(),
                    origin,
                )
            raise
        except asyncio.CancelledError:
            stopped = self._stopped(sent=sent)
            if not stopped.outcome_unknown:
                await self._release(caller.user_id, command)
            said: audit.Kind = "unknown" if stopped.outcome_unknown else "failed"
            audit.record(said, caller, command, latency_ms=ms(), detail=stopped.message)
            if request.on_stopped is not None:  # said before the cancellation goes on
                await asyncio.shield(request.on_stopped(stopped))
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
        return Started(engagement)

    @staticmethod
    def _stopped(*, sent: bool) -> StudioError:
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
    ) -> Failed | Unknown:
        if self.records is not None and not isinstance(exc, StudioNotSent):
            bulk_run, row = origin  # Twilio refused it, or may have started it: kept
            with contextlib.suppress(StateUnavailable):
                await self.records.not_started(command, caller, exc, bulk_run=bulk_run, row=row)
        active = None
        if exc.code == UNSUBSCRIBED:  # Twilio: the recipient replied STOP to this sender
            await self._opted_out_by_twilio(command, caller)
        if is_already_active(exc):
            await self._release(caller.user_id, command)  # nothing new started
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
            return Failed(exc, active)
        if not exc.outcome_unknown:
            await self._release(caller.user_id, command)  # certainly not started
        said: audit.Kind = "unknown" if exc.outcome_unknown else "failed"
        audit.record(said, caller, command, code=exc.code, latency_ms=ms, detail=exc.message)
        return Unknown(exc) if exc.outcome_unknown else Failed(exc)

    async def _opted_out_by_twilio(self, command: EngageCommand, caller: Caller) -> None:
        """Twilio refused a start with 21610: the contact joins the suppression list."""
        try:
            added = await self.consent.opt_out(command.to, "21610", flow_sid=command.flow_sid)
        except StateUnavailable:
            log.warning("a 21610 could not be added to the opt-out list (shared state)")
            return
        if added:
            audit.record("opt_out_added", caller, command, code=UNSUBSCRIBED, detail="21610")
