"""Starts asked for in Slack: the ack, the prompts to confirm, and the report of each.

The conversation around the engage use-case (``bot.engage.start``), for the slash command,
the form and the buttons:

- ``request``/``admit``: the rules and the duplicate window now, for the ack; the
  start itself runs after the ack as a task (``bot.infra.tasks``) and reports through its
  ``Reply``: the card (``publish``), or why not.
- A second start of the same flow for the same contact within the duplicate window,
  parameters the flow does not fit, or a contact with a run already active, ask the
  person first: the command is parked behind a button (``bot.engage.confirmations``), and
  ``confirm`` or ``cancel`` answer it.
- A contact in quiet hours (``bot.domain.contact_clock``) is not reached: the starter is
  offered *Schedule for then* (and admins *Start now anyway*, audited).
- A command with ``--at``/``--in`` is checked now and kept for its time
  (``bot.engage.schedules``) instead of started.
- ``describe_flows``/``describe_flow``: ``/engage flows`` and ``/engage help <flow>``.

Every message is Block Kit from ``bot.slack.messages``; the use-case itself returns domain
results.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from dataclasses import replace as replace_fields

from bot.domain.caller import Caller
from bot.domain.command import Defaults, EngageCommand, HelpCommand
from bot.domain.consent import Suppressed
from bot.domain.contact_clock import Instant, Opening, local_time
from bot.domain.errors import StateUnavailable, StudioError
from bot.domain.flows import Findings
from bot.domain.policy import may_end
from bot.domain.results import Failed, Refused, Result, Started
from bot.domain.run import Engagement, is_already_active
from bot.domain.schedule import Scheduled
from bot.domain.text import configured_flows
from bot.engage.confirmations import Confirmations
from bot.engage.schedules import NotSchedulable, Schedules
from bot.engage.start import Engager, StartRequest
from bot.infra import audit
from bot.infra.tasks import LAST_WORD_SECONDS, Tasks
from bot.slack import messages
from bot.slack.messages import Message
from bot.slack.messages import consent as consent_messages
from bot.slack.messages import schedules as schedule_messages
from bot.slack.reply import Reply, deliver
from bot.state.store import Durable

# Shows a started run's card in the caller's channel, following it: the card's ts when it
# was posted there (else it went through the reply).
Publish = Callable[[EngageCommand, Engagement, Caller, Reply], Awaitable[str | None]]


@dataclass(frozen=True)
class Admission:
    """The ack for a Slack request, and what it stands for: the start was taken, the
    person is asked to confirm, or (neither) it was refused."""

    ack: Message
    taken: bool = False
    asked: bool = False


class SlackEngage:
    """Starts from Slack, over the use-case ``engager``."""

    def __init__(
        self,
        engager: Engager,
        *,
        tasks: Tasks | None = None,
        state: Durable | None = None,
        mask_numbers: bool = False,
        publish: Publish | None = None,
        schedules: Schedules | None = None,
    ) -> None:
        self.engager = engager
        self.schedules = schedules  # --at/--in, *Schedule for then*
        self.studio = engager.studio
        self.policy = engager.policy
        self.throttle = engager.throttle  # the duplicate window and the pace
        self.catalog = engager.catalog
        self.tasks = tasks if tasks is not None else Tasks()  # an empty Tasks is falsy
        self.confirmations = Confirmations(state or Durable(self.throttle.state.memory))
        self.mask_numbers = mask_numbers
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
        command = self.engager.named(command)
        # the rules, the user's limit and (for a start now) the duplicate window: one trip
        if no := await self.engager.check(command, caller, claim=command.when is None):
            if no.kind == "quiet_hours" and no.opening is not None:
                return Admission(await self._quiet_prompt(command, caller, no.opening), asked=True)
            if no.kind == "duplicate":
                return Admission(await self._duplicate_prompt(command, caller), asked=True)
            if no.kind == "capped" and no.suppressed and caller.user_id in self.policy.admins:
                prompt = await self._over_cap_prompt(command, caller, no.suppressed)
                return Admission(prompt, asked=True)
            return Admission(self.refusal(command, no))
        if command.when is not None:
            return await self._schedule(command, caller, reply)
        self._submit(command, caller, reply)
        return Admission(messages.starting(command), taken=True)

    async def _duplicate_prompt(self, command: EngageCommand, caller: Caller) -> Message:
        """The same start just now: park it behind *Start again*."""
        try:
            token = await self.confirmations.park(caller.user_id, command)
        except StateUnavailable:
            return messages.state_unavailable()
        return messages.confirm_duplicate(command, token, self.throttle.duplicate_window)

    async def _over_cap_prompt(
        self, command: EngageCommand, caller: Caller, why: Suppressed
    ) -> Message:
        """An admin's start to a contact at its cap: park it behind *Start anyway*."""
        try:
            token = await self.confirmations.park(caller.user_id, command)
        except StateUnavailable:
            return messages.state_unavailable()
        return consent_messages.over_cap_prompt(command, why, token, time.time())

    async def _schedule(self, command: EngageCommand, caller: Caller, reply: Reply) -> Admission:
        """``--at``/``--in``: the time checked now; the flow checks and the keeping after
        the ack (``_run``)."""
        assert command.when is not None
        if self.schedules is None:
            return Admission(messages.refused("scheduling is not available here"))
        planned = self.schedules.plan(command, command.when)
        if isinstance(planned, NotSchedulable):
            if planned.opening is None:
                return Admission(schedule_messages.not_schedulable(planned.reason))
            asked = local_time(planned.opening.since, planned.opening.zone)
            prompt = await self._quiet_prompt(command, caller, planned.opening, asked)
            return Admission(prompt, asked=True)
        command = replace_fields(command, when=Instant(planned))
        self._submit(command, caller, reply)
        return Admission(schedule_messages.scheduling(command), taken=True)

    async def _quiet_prompt(
        self, command: EngageCommand, caller: Caller, opening: Opening, asked_for: str = ""
    ) -> Message:
        """Park the command for *Schedule for then* (at the window's opening) or an admin's
        *Start now anyway*."""
        later = replace_fields(command, when=Instant(opening.at)) if opening.at else command
        try:
            token = await self.confirmations.park(caller.user_id, later)
        except StateUnavailable:
            return messages.state_unavailable()
        admin = caller.user_id in self.policy.admins
        return schedule_messages.quiet_hours(
            command, opening, token, admin=admin, asked_for=asked_for
        )

    async def _keep_schedule(
        self, command: EngageCommand, caller: Caller, reply: Reply, *, again: bool = False
    ) -> None:
        """After the flow checks: keep the schedule (its time judged again: a *Schedule
        for then* clicked late), and tell the starter when it fires. The same flow for
        the same contact already scheduled by this person is asked about first, as the
        duplicate window asks about a start (unless ``again``: the answer was yes)."""
        assert command.when is not None
        assert self.schedules is not None
        planned = self.schedules.plan(command, command.when)
        if isinstance(planned, NotSchedulable):
            reason = planned.reason or "that time is in the contact's quiet hours"
            await deliver(reply, schedule_messages.not_schedulable(reason), command.flow_sid)
            return
        try:
            if not again and (twin := await self._scheduled_twin(command, caller)):
                token = await self.confirmations.park(caller.user_id, command, checked=True)
                now = self.schedules.now()
                asked = schedule_messages.confirm_second(command, twin, token, now)
                await deliver(reply, asked, command.flow_sid)
                return
            item = await self.schedules.add(replace_fields(command, when=None), caller, planned)
        except StateUnavailable:
            await deliver(reply, messages.state_unavailable(), command.flow_sid)
            return
        said = schedule_messages.scheduled(
            item, self.schedules.now(), durable=self.schedules.durable
        )
        await deliver(reply, said, command.flow_sid)

    async def _scheduled_twin(self, command: EngageCommand, caller: Caller) -> Scheduled | None:
        """This person's waiting schedule of the same flow for the same contact, if any."""
        assert self.schedules is not None
        for item in await self.schedules.waiting(caller.user_id):
            if item.flow_sid == command.flow_sid and item.to == command.to:
                return item
        return None

    def refusal(self, command: EngageCommand, refused: Refused) -> Message:
        """A refusal as Slack shows it, only to the person who asked."""
        return messages.refusal(command, refused, self.throttle.user_rate, time.time())

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

    def confirm(
        self,
        token: str,
        caller: Caller,
        replace: Reply,
        reply: Reply,
        *,
        now: bool = False,
        over_cap: bool = False,
    ) -> None:
        """The confirming buttons ("start again", "start anyway", "schedule for then"; with
        ``now``, an admin's "start now anyway" in quiet hours; with ``over_cap``, an
        admin's "start anyway" over a contact's cap): in the background, replace the
        prompt with the answer and, if it may run, start (or schedule) the parked command
        (reporting through ``reply``)."""
        if not self.tasks.accepting:
            self.tasks.spawn(deliver(replace, messages.shutting_down()), "confirm")
            return

        async def work() -> None:
            answer = await self._confirm(token, caller, reply, now=now, over_cap=over_cap)
            await deliver(replace, answer)

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

    async def _confirm(
        self, token: str, caller: Caller, reply: Reply, *, now: bool = False, over_cap: bool = False
    ) -> Message:
        try:
            parked = await self.confirmations.take(token)
        except StateUnavailable:
            return messages.state_unavailable()
        if parked is None:
            return messages.expired()
        command = parked.command
        if parked.user_id != caller.user_id:
            return messages.refused("only the person who typed the command can confirm it")
        if now:  # an admin starts it in the contact's quiet hours
            if caller.user_id not in self.policy.admins:
                return messages.refused("only admins (ADMIN_SLACK_USERS) can start in quiet hours")
            command = replace_fields(command, when=None)
        if over_cap and caller.user_id not in self.policy.admins:
            return messages.refused(
                "only admins (ADMIN_SLACK_USERS) can start over a contact's cap"
            )
        if no := await self.engager.check(command, caller, quiet=not now, over_cap=over_cap):
            return self.refusal(command, no)
        if over_cap:
            cap = self.engager.consent.cap_text(command.flow_sid)
            audit.record("cap_overridden", caller, command, detail=f"over the cap: {cap}")
        if now:
            opens = self.engager.clock.opens(command.flow_sid, command.to)
            detail = "in quiet hours" + (
                f"; window opens {local_time(opens.at, opens.zone)}" if opens and opens.at else ""
            )
            audit.record("quiet_hours_overridden", caller, command, detail=detail)
        if parked.active_sid:
            starter = await self.engager.starter_of(parked.active_sid)
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
        if command.when is not None:  # *Schedule for then* / *Schedule again*: nothing sent
            self._submit(command, caller, reply, checked=parked.checked, again=True)
            return schedule_messages.scheduling(command)
        await self.throttle.restart_window(caller.user_id, command)
        self._submit(command, caller, reply, checked=parked.checked)
        return messages.starting(command)

    def _submit(
        self,
        command: EngageCommand,
        caller: Caller,
        reply: Reply,
        *,
        checked: bool = False,
        again: bool = False,
    ) -> None:
        work = self._run(command, caller, reply, checked=checked, again=again)
        self.tasks.spawn(work, f"engage:{caller.user_id}")

    async def _run(
        self,
        command: EngageCommand,
        caller: Caller,
        reply: Reply,
        *,
        checked: bool = False,
        again: bool = False,
    ) -> None:
        """After the ack: the start (admitted at the ack), or, for a command with a time,
        its flow checks and the keeping; the outcome through ``reply``."""

        async def stopped(error: StudioError) -> None:  # the bot stops mid-start
            await deliver(reply, messages.engage_failed(command, error), within=LAST_WORD_SECONDS)

        request = StartRequest(
            command,
            caller,
            admitted=True,
            claimed=command.when is None,  # the duplicate window, claimed at the ack
            confirmed=checked,
            ask=True,
            on_stopped=stopped,
        )
        if command.when is not None:
            vetted = await self.engager.vet(request)
            if not isinstance(vetted, Refused):
                await self._keep_schedule(vetted, caller, reply, again=again)
                return
            outcome: Result = vetted
        else:
            outcome = await self.engager.start(request)
        command = self.engager.named(command)  # Studio's name, once the flow was read
        if isinstance(outcome, Started) and self.publish is not None:
            await self.publish(command, outcome.engagement, caller, reply)
            return
        await deliver(reply, await self._said(command, caller, outcome), _sid(outcome, command))

    async def _said(self, command: EngageCommand, caller: Caller, outcome: Result) -> Message:
        """A start's result as Slack says it to the person who asked."""
        if isinstance(outcome, Refused) and outcome.ask and outcome.findings:
            return await self._confirm_parameters(command, caller, outcome.findings)
        if isinstance(outcome, Refused):
            return self.refusal(command, outcome)
        if isinstance(outcome, Started):
            return messages.engaged(
                command,
                outcome.engagement,
                caller.user_id,
                mask=self.mask_numbers,
                api=self.studio.api,
            )
        if isinstance(outcome, Failed) and is_already_active(outcome.error):
            return await self._already_active(command, caller, outcome)
        return messages.engage_failed(command, outcome.error)

    async def _confirm_parameters(
        self, command: EngageCommand, caller: Caller, found: Findings
    ) -> Message:
        """Ask the caller to start anyway (the same mechanics as the duplicate prompt)."""
        try:
            token = await self.confirmations.park(caller.user_id, command, checked=True)
        except StateUnavailable:
            return messages.state_unavailable()
        return messages.confirm_parameters(command, found, token)

    async def _already_active(
        self, command: EngageCommand, caller: Caller, outcome: Failed
    ) -> Message:
        """Offer to end the active run and start again, if the End rule lets this caller;
        else say who may."""
        active = outcome.active
        starter = await self.engager.starter_of(active.sid) if active else None
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


def _sid(outcome: Result, command: EngageCommand) -> str:
    """What a reply is about: the run, else the flow."""
    return outcome.engagement.sid if isinstance(outcome, Started) else command.flow_sid
