"""The engage use-case: decide whether a parsed command may run, run it, report it.

Every start goes through one of two entries, and both apply the same rules, the
same pacing and the same audit line:

- ``request`` (Slack): the rules and the duplicate window now, for the ack; the
  start itself runs after the ack as a task (``bot.tasks``) and reports through
  its ``Reply``.
- ``start_now`` (the terminal, bulk rows, and any surface that waits for the
  outcome): the rules, then the start, returning a domain result, the ``Outcome``
  or why it was ``Refused``, which each surface renders (text for the terminal and
  the results file, ``messages.refusal`` for Slack).

What the use-cases share (the rules, the limits, the tasks, the flow catalog, who
started which run) is built once in ``bot.services`` and handed to each of them.

Before the create request (after the ack), ``_preflight`` asks the flow catalog:
a flow whose REST API trigger is not connected is refused, and parameters the flow
does not read (or lacks) ask the caller to confirm (``FLOW_PARAMETER_CHECK``).
Under both entries, ``_launch`` paces under STUDIO_RATE_LIMIT, sends the create
request (never twice: ``bot.studio``), audits the outcome and remembers who started
the run.
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

from bot import audit, messages
from bot.audit import Caller
from bot.command import Defaults, EngageCommand, HelpCommand
from bot.config import Settings
from bot.confirmations import Confirmations
from bot.errors import (
    StateUnavailable,
    StudioBusy,
    StudioError,
    StudioNotSent,
    StudioOutcomeUnknown,
)
from bot.flow_catalog import FlowCatalog
from bot.flows import Findings, FlowInfo, findings
from bot.messages import Message
from bot.messages.text import configured_flows, findings_text
from bot.policy import Policy, destination_refusal, may_end, refusal
from bot.records import Records
from bot.runs import RunRegistry, Shown
from bot.store import BestEffort, Durable, Store, open_store
from bot.studio import Engagement, StudioClient, is_already_active
from bot.tasks import LAST_WORD_SECONDS, Reply, Tasks, deliver
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


Publish = Callable[[EngageCommand, Engagement, Caller, Reply], Awaitable[None]]


@dataclass(frozen=True)
class Admission:
    """The ack for a Slack request, and what it stands for: the start was taken, the
    person is asked to confirm, or (neither) it was refused."""

    ack: Message
    taken: bool = False
    asked: bool = False


@dataclass(frozen=True)
class Refused:
    """A start stopped before anything was sent: by the rules (who, where, which contact:
    ``reason``), the per-user limit (``wait`` seconds), a flow whose REST API trigger is
    not connected, or parameters the flow does not fit (``findings``). Each surface says
    it its own way (``messages.refusal`` for Slack, ``refusal_text`` for text)."""

    kind: Literal["rules", "rate_limited", "not_rest_ready", "parameters"]
    reason: str = ""
    wait: float = 0.0
    findings: Findings | None = None


@dataclass(frozen=True)
class Outcome:
    """How a start ended: the run, or the error (and, if Twilio said the contact already
    has one, the active run when it was found)."""

    engagement: Engagement | None = None
    error: StudioError | None = None
    active: Engagement | None = None


class Engager:
    """Starts engagements under the guardrails and reports each one."""

    def __init__(
        self,
        studio: StudioClient,
        *,
        policy: Policy | None = None,
        throttle: Throttle | None = None,
        state: Durable | None = None,
        tasks: Tasks | None = None,
        registry: RunRegistry | None = None,
        records: Records | None = None,
        mask_numbers: bool = False,
        aliases: Mapping[str, str] | None = None,
        catalog: FlowCatalog | None = None,
        parameter_check: str = "confirm",
        publish: Publish | None = None,
    ) -> None:
        self.studio = studio
        self.policy = policy or Policy()
        self.throttle = throttle or Throttle()
        state = state or Durable(self.throttle.state.memory)
        self.confirmations = Confirmations(state)
        self.registry = registry or RunRegistry(state)
        self.records = records  # every start, kept (RUN_RECORD_DAYS); None: not kept
        self.tasks = tasks if tasks is not None else Tasks()  # an empty Tasks is falsy
        self.mask_numbers = mask_numbers
        self.aliases = dict(aliases or {})  # flow SID -> alias
        self.catalog = catalog  # None: flows are not checked (as before the Flows API)
        self.parameter_check = parameter_check  # FLOW_PARAMETER_CHECK: confirm|refuse|off
        self.publish = publish  # shows a started run's card (and follows it); else replies

    # -- the two entries -------------------------------------------------------

    async def request(self, command: EngageCommand, caller: Caller, reply: Reply) -> Message:
        """Slack: apply the guardrails now and return the ack; the start runs after it."""
        return (await self.admit(command, caller, reply)).ack

    async def admit(self, command: EngageCommand, caller: Caller, reply: Reply) -> Admission:
        """``request``, saying also whether the start was taken (a surface that answers
        refusals its own way, like the form, needs to know)."""
        if not self.tasks.accepting:
            return Admission(messages.shutting_down())
        command = self._named(command)
        if no := await self._check(command, caller):
            return Admission(self.refusal(command, no))
        if not await self.throttle.claim(caller.user_id, command):
            try:
                token = await self.confirmations.park(caller.user_id, command)
            except StateUnavailable:
                return Admission(messages.state_unavailable())
            audit.record("duplicate", caller, command)
            prompt = messages.confirm_duplicate(command, token, self.throttle.duplicate_window)
            return Admission(prompt, asked=True)
        self._submit(command, caller, reply)
        return Admission(messages.starting(command), taken=True)

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
            return await self._launch(
                command, caller, bulk=True, paced=paced, origin=(bulk_run, row)
            )
        if no := await self._check(command, caller):
            return no
        command, refused, found = await self._preflight(command, caller, checked=force)
        if refused:
            return refused
        if found:  # no one to ask: refused, unless forced
            audit.record("refused", caller, command, detail=f"parameters: {findings_text(found)}")
            return Refused("parameters", findings=found)
        return await self._launch(command, caller)

    # -- the flows, as Studio knows them -----------------------------------------

    def _named(self, command: EngageCommand) -> EngageCommand:
        """``command`` with Studio's name for its flow, if this process knows it already."""
        info = self.catalog.peek(command.flow_sid) if self.catalog else None
        return replace_fields(command, flow_name=info.name) if info and info.name else command

    async def inspect(self, command: EngageCommand) -> tuple[FlowInfo | None, Findings]:
        """What the flow checks would find (for ``--dry-run``); sends nothing."""
        info = await self.catalog.get(command.flow_sid) if self.catalog else None
        if info is None:
            return None, Findings()
        return info, findings(info.analysis.parameters, command.parameters)

    async def _preflight(
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

    async def describe_flows(self, defaults: Defaults, reply: Reply) -> Message:
        """``/engage flows``: at once from what is known, else after asking Studio."""
        sids = [sid for _, sid in configured_flows(defaults)]
        catalog = self.catalog
        if catalog is None or all(catalog.peek(sid) for sid in sids):
            known = {sid: catalog.peek(sid) if catalog else None for sid in sids}
            return messages.flows_message(defaults, self.policy, known)

        async def work() -> None:
            infos = {sid: await catalog.get(sid) for sid in sids}
            await deliver(reply, messages.flows_message(defaults, self.policy, infos))

        self.tasks.spawn(work(), "flows")
        return messages.reading_flows()

    async def describe_flow(self, command: HelpCommand, name: str, reply: Reply) -> Message:
        """``/engage help <flow>``: the flow as Studio has it, after asking."""
        assert command.flow_sid is not None
        sid, alias, catalog = command.flow_sid, command.flow_alias, self.catalog
        if catalog is None or catalog.peek(sid):
            info = catalog.peek(sid) if catalog else None
            return messages.flow_help(alias, sid, info, name)

        async def work() -> None:
            await deliver(reply, messages.flow_help(alias, sid, await catalog.get(sid), name))

        self.tasks.spawn(work(), f"help:{sid}")
        return messages.reading_flows()

    # -- confirming buttons ----------------------------------------------------

    def confirm(self, token: str, caller: Caller, replace: Reply, reply: Reply) -> None:
        """The "start again" buttons: in the background, replace the prompt with the answer
        and, if it may run, start the parked command (reporting through ``reply``)."""
        if not self.tasks.accepting:
            self.tasks.spawn(deliver(replace, messages.shutting_down()), "confirm")
            return

        async def work() -> None:
            await deliver(replace, await self._confirm(token, caller, reply))

        self.tasks.spawn(work(), f"confirm:{caller.user_id}")

    def cancel(self, token: str, replace: Reply) -> None:
        """The Cancel button: forget the parked command, say so in place of the prompt."""

        async def work() -> None:
            try:
                await self.confirmations.take(token)
            except StateUnavailable:
                await deliver(replace, messages.state_unavailable())
                return
            await deliver(replace, messages.cancelled())

        self.tasks.spawn(work(), "cancel")

    async def _confirm(self, token: str, caller: Caller, reply: Reply) -> Message:
        try:
            parked = await self.confirmations.take(token)
        except StateUnavailable:
            return messages.state_unavailable()
        if parked is None:
            return messages.expired()
        command = parked.command
        if parked.user_id != caller.user_id:
            return messages.refused("only the person who typed the command can confirm it")
        if no := await self._check(command, caller):
            return self.refusal(command, no)
        if parked.active_sid:
            starter = await self.starter_of(parked.active_sid)
            if not may_end(self.policy, caller.user_id, starter):
                audit.record(
                    "refused",
                    caller,
                    command,
                    sid=parked.active_sid,
                    detail="end to start again: not the starter or an admin",
                )
                return messages.not_allowed_to_end(starter)
            try:
                await self.studio.end_engagement(
                    command.flow_sid, parked.active_sid, before_retry=self.throttle.pace
                )
            except StudioError as exc:
                return messages.action_failed(f"end {parked.active_sid}", exc)
            audit.record("ended", caller, command, sid=parked.active_sid, detail="to start again")
        await self.throttle.claim(caller.user_id, command)  # restart the window from now
        self._submit(command, caller, reply, checked=parked.checked)
        return messages.starting(command)

    # -- the rules, the start, the report ---------------------------------------

    def refusal(self, command: EngageCommand, refused: Refused) -> Message:
        """A refusal as Slack shows it, only to the person who asked."""
        return messages.refusal(command, refused, self.throttle.user_rate)

    async def _check(self, command: EngageCommand, caller: Caller) -> Refused | None:
        """The refusal for a command the rules or the user's rate limit forbid (audited);
        counts a use. The terminal has only the destination rules."""
        reason = (
            destination_refusal(self.policy, command)
            if caller.terminal
            else refusal(self.policy, command, caller.user_id, caller.channel_id)
        )
        if reason:
            audit.record("refused", caller, command, detail=reason)
            return Refused("rules", reason)
        if not caller.terminal and (wait := await self.throttle.user_wait(caller.user_id)):
            audit.record("rate_limited", caller, command, detail=self.throttle.user_rate)
            return Refused("rate_limited", wait=wait)
        return None

    async def starter_of(self, sid: str) -> str | None:
        """Who started run ``sid`` from this bot; None if unknown or unreadable now."""
        return await self.registry.starter(sid)

    def _submit(
        self, command: EngageCommand, caller: Caller, reply: Reply, *, checked: bool = False
    ) -> None:
        work = self._run(command, caller, reply, checked=checked)
        self.tasks.spawn(work, f"engage:{caller.user_id}")

    async def _run(
        self, command: EngageCommand, caller: Caller, reply: Reply, *, checked: bool = False
    ) -> None:
        """After the ack: the flow checks, the start, then the outcome through ``reply``."""
        command, refused, found = await self._preflight(command, caller, checked=checked)
        if refused or found:
            await self.throttle.release(caller.user_id, command)  # nothing was sent
            if found:
                said = await self._confirm_parameters(command, caller, found)
            else:
                assert refused is not None
                said = self.refusal(command, refused)
            await deliver(reply, said, command.flow_sid)
            return
        outcome = await self._launch(command, caller, last_word=reply)
        if outcome.engagement is not None and self.publish is not None:
            await self.publish(command, outcome.engagement, caller, reply)
            return
        if outcome.engagement is not None:
            message = messages.engaged(
                command,
                outcome.engagement,
                caller.user_id,
                mask=self.mask_numbers,
                api=self.studio.api,
            )
        elif outcome.error is not None and is_already_active(outcome.error):
            message = await self._already_active(command, caller, outcome)
        else:
            assert outcome.error is not None
            message = messages.engage_failed(command, outcome.error)
        sid = outcome.engagement.sid if outcome.engagement else command.flow_sid
        await deliver(reply, message, sid)

    async def _confirm_parameters(
        self, command: EngageCommand, caller: Caller, found: Findings
    ) -> Message:
        """Ask the caller to start anyway (the same mechanics as the duplicate prompt)."""
        try:
            token = await self.confirmations.park(caller.user_id, command, checked=True)
        except StateUnavailable:
            return messages.state_unavailable()
        audit.record("parameters", caller, command, detail=findings_text(found))
        return messages.confirm_parameters(command, found, token)

    async def _already_active(
        self, command: EngageCommand, caller: Caller, outcome: Outcome
    ) -> Message:
        """Offer to end the active run and start again, if the End rule lets this caller;
        else say who may."""
        assert outcome.error is not None
        active = outcome.active
        starter = await self.starter_of(active.sid) if active else None
        token = None
        if active is not None and may_end(self.policy, caller.user_id, starter):
            try:
                token = await self.confirmations.park(
                    caller.user_id, command, active.sid, checked=True
                )
            except StateUnavailable:
                token = None  # the message then says who may end it, without a button
        return messages.already_active(
            command, outcome.error, active, token, starter=starter, api=self.studio.api
        )

    async def _launch(
        self,
        command: EngageCommand,
        caller: Caller,
        *,
        last_word: Reply | None = None,
        bulk: bool = False,
        paced: bool = False,
        origin: tuple[str, str] = ("", ""),
    ) -> Outcome:
        """Pace, start, audit, remember: every start ends here, whatever happens.

        A claim in the duplicate window is released only when nothing can have reached
        Twilio. If the task is cancelled (shutdown), ``last_word`` tells the user what
        is known before the cancellation goes on.
        """
        started = time.monotonic()
        sent = False  # whether the create request may have left

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
            outcome = "unknown" if stopped.outcome_unknown else "failed"
            audit.record(outcome, caller, command, latency_ms=ms(), detail=stopped.message)
            if last_word is not None:
                farewell = deliver(
                    last_word, messages.engage_failed(command, stopped), within=LAST_WORD_SECONDS
                )
                await asyncio.shield(farewell)
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
        outcome = "unknown" if exc.outcome_unknown else "failed"
        audit.record(outcome, caller, command, code=exc.code, latency_ms=ms, detail=exc.message)
        return Outcome(error=exc)
