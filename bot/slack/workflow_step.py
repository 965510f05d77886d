"""A step in Slack's Workflow Builder: *Start a Studio flow* (``start_studio_flow``).

Slack's custom steps for Bolt apps: a workflow runs the step, Slack sends the
``function_executed`` event (HTTP or Socket Mode), and the step ends when the bot calls
``functions.completeSuccess`` (outputs) or ``functions.completeError`` (a message),
with the step's own token from the event.

- ``DEFINITION`` is the step as ``manifest.yml`` declares it (a test holds them equal).
- The inputs are read under the command's rules (``bot.domain.parameters``, the flow and
  sender rules of ``bot.domain.command``), then the start goes through the same use-case and
  guardrails as ``/engage`` (``bot.engage.start``), for the *on behalf of* user: who and
  where, the flow's rules, countries, premium numbers, quiet hours, the per-user
  limit, the duplicate window, the flow checks. A refusal fails the step with what to
  fix; a parameter finding fails it too (a workflow has nobody to click *Start
  anyway*); a start whose outcome is unknown fails it with the Console link, never
  retried.
- *Wait for the end*: the step's execution ID and token are kept with the run
  (``Waiting``, in the state store, expiring when following stops) and whichever
  process records the run's end (``bot.runs.tracker``) completes the step, once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import parameters
from bot.domain.caller import Caller
from bot.domain.command import Defaults, EngageCommand
from bot.domain.errors import (
    CommandError,
    ParameterError,
    PhoneError,
    StateUnavailable,
)
from bot.domain.grammar import resolve_flow, sender_for
from bot.domain.phone import channel_mismatch, parse_address
from bot.domain.policy import SLACK_USER, Policy, unattended_refusal
from bot.domain.record import Record
from bot.domain.results import Failed, Refused, Started, Unknown
from bot.domain.run import console_url, is_already_active
from bot.domain.text import configured_flows, describe_error, refusal_text
from bot.engage.start import Engager, StartRequest
from bot.infra import audit
from bot.infra.tasks import Tasks
from bot.runs.records import FINAL, Records, RunRecord
from bot.slack import messages
from bot.slack.api_errors import slack_refusal
from bot.slack.post import direct_message
from bot.state.store import Durable
from bot.studio.catalog import FlowCatalog

log = logging.getLogger(__name__)

CALLBACK_ID = "start_studio_flow"
USER = "slack#/types/user_id"
CHANNEL = "slack#/types/channel_id"
INTERACTIVITY = "slack#/types/interactivity"


def _parameter(
    kind: str, title: str, description: str, *, required: bool = False
) -> dict[str, Any]:
    return {"type": kind, "title": title, "description": description, "is_required": required}


def _parameters_of(declared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Parameters as Slack's manifest schema declares them: each under ``properties``
    (with its ``name``), the required ones listed in ``required``."""
    return {
        "properties": {name: {**spec, "name": name} for name, spec in declared.items()},
        "required": [name for name, spec in declared.items() if spec["is_required"]],
    }


INPUTS: dict[str, dict[str, Any]] = {
    "flow": _parameter(
        "string",
        "Flow",
        "The flow to start: its alias (STUDIO_FLOWS), its name in Studio, or its SID (FW…)",
        required=True,
    ),
    "contact": _parameter(
        "string",
        "Contact",
        "The number to reach, with its country code (+1 617 555 1212), or whatsapp:+…",
        required=True,
    ),
    "parameters": _parameter(
        "string",
        "Parameters",
        "Flow data, as /engage takes it: key=value one a line (key:=json for JSON), or one"
        " JSON object",
    ),
    "sender": _parameter(
        "string", "Send from", "A Twilio number or Messaging Service (MG…); empty: the flow's"
    ),
    "on_behalf_of": _parameter(
        USER,
        "On behalf of",
        "Empty, or the person who ran the workflow (whose permissions and limits apply); for"
        " a workflow nobody runs by hand, a user WORKFLOW_UNATTENDED_USERS names",
    ),
    "channel": _parameter(
        CHANNEL, "Channel", "Where the start counts as made (ALLOWED_SLACK_CHANNELS, a flow's own)"
    ),
    "wait_for_end": _parameter(
        "boolean",
        "Wait for the end",
        "Complete the step when the run ends, with its final status and answers",
    ),
    "interactivity": _parameter(
        INTERACTIVITY,
        "Who ran it",
        "Set it to the workflow's interactivity (Person who used this workflow): the step"
        " acts for that person, as Slack vouches",
    ),
}
OUTPUTS: dict[str, dict[str, Any]] = {
    "run_sid": _parameter("string", "Run SID", "The run's SID (FN…)", required=True),
    "status": _parameter("string", "Status", "The run's status when it started", required=True),
    "console_link": _parameter(
        "string", "Console link", "The run's page in the Twilio Console", required=True
    ),
    "final_status": _parameter("string", "Final status", "With Wait for the end: ended or failed"),
    "end_widget": _parameter(
        "string", "Ended at", "With Wait for the end: the widget the run ended at"
    ),
    "answers": _parameter(
        "string", "Answers", "With Wait for the end: the answers collected, as a JSON object"
    ),
}
DEFINITION: dict[str, Any] = {
    "title": "Start a Studio flow",
    "description": "Start a Twilio Studio flow for a contact, under the bot's guardrails",
    "input_parameters": _parameters_of(INPUTS),
    "output_parameters": _parameters_of(OUTPUTS),
}


@dataclass(frozen=True)
class StepStart:
    """What the step's inputs ask for: the start, by whom, from where, whether to wait."""

    command: EngageCommand
    caller: Caller
    wait: bool


class Waiting(Record):
    """A step waiting for its run's end: its execution and token (a secret: the token
    completes this one step), kept with the run until following stops."""

    sid: str
    flow_sid: str
    execution: str
    token: SecretStr
    status: str = "active"  # the run's status when it started (an output)
    user: str = ""  # whom the step acted for: told if its completion is refused

    def fields(self, *names: str) -> dict[str, str]:
        kept = super().fields(*names)
        if "token" in kept or not names:
            kept["token"] = self.token.get_secret_value()
        return kept


class _Fix(Exception):
    """What the workflow's builder must fix, said as the step's error."""


def _text(inputs: Mapping[str, Any], name: str, title: str) -> str:
    """An input that must be text (or absent), stripped."""
    value = inputs.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Fix(f"{title}: must be text, not {type(value).__name__}")
    return value.strip()


def _user(inputs: Mapping[str, Any], policy: Policy) -> str:
    """Whom the step acts for: the person Slack says ran the workflow (its
    *interactivity* input's ``interactor``), never a name its builder typed. *On behalf
    of*, where given, must be that person; a workflow nobody ran by hand acts only for
    whom ``policy.unattended_refusal`` lets it."""
    interactivity = inputs.get("interactivity") or {}
    if not isinstance(interactivity, Mapping):
        raise _Fix(
            "Who ran it: must be the workflow's interactivity (Person who used this workflow)"
        )
    interactor = interactivity.get("interactor") or {}
    ran_by = interactor.get("id") if isinstance(interactor, Mapping) else None
    if ran_by is not None and not (isinstance(ran_by, str) and SLACK_USER.match(ran_by)):
        raise _Fix("Who ran it: Slack named no user who ran the workflow")
    named = _text(inputs, "on_behalf_of", "On behalf of")
    if named and not SLACK_USER.match(named):
        raise _Fix("On behalf of: must be a Slack user (U…)")
    if ran_by:
        if named and named != ran_by:
            raise _Fix(
                "On behalf of: a step acts only for the person who ran the workflow; set it to"
                " Person who used this workflow, or leave it empty"
            )
        return ran_by
    if not named:
        raise _Fix(
            "Who ran it: nobody ran this workflow by hand; start it from a form or a button"
            " (Slack then names the person), or set On behalf of to a user that"
            " WORKFLOW_UNATTENDED_USERS names"
        )
    if problem := unattended_refusal(policy, named):
        raise _Fix(f"On behalf of: {problem}")
    return named


def read_inputs(
    inputs: Mapping[str, Any],
    defaults: Defaults,
    names: Mapping[str, str],
    policy: Policy,
    *,
    team: str,
    workflow: str,
) -> StepStart | str:
    """The start the inputs describe, or what to fix (nothing is sent). ``names``: each
    configured flow's Studio name (casefolded) -> its SID. Any input of the wrong type,
    shape or depth is a thing to fix, never an exception."""
    if not isinstance(inputs, Mapping):
        return "Inputs: Slack sent none the step can read"
    try:
        user = _user(inputs, policy)
        flow_text = _text(inputs, "flow", "Flow")
        contact = _text(inputs, "contact", "Contact")
        data_text = _text(inputs, "parameters", "Parameters")
        sender_text = _text(inputs, "sender", "Send from")
        channel = _text(inputs, "channel", "Channel")
    except _Fix as fix:
        return str(fix)
    sid = names.get(flow_text.casefold())
    try:
        flow_sid, alias = resolve_flow(sid or flow_text or None, defaults)
    except CommandError as exc:
        return f"Flow: {exc.problem}"
    try:
        to = parse_address(contact, defaults.region)
    except PhoneError as exc:
        return f"Contact: {exc}"
    try:
        data = _parameters(data_text)
    except ParameterError as exc:
        return f"Parameters: {exc.problem}"
    try:
        sender = sender_for(flow_sid, sender_text or None, defaults)
    except CommandError as exc:
        return f"Send from: {exc.problem.removeprefix('--from: ')}"
    if mismatch := channel_mismatch(to, sender):
        return f"Contact: {mismatch}"
    caller = Caller(user, channel, team, via=f"workflow {workflow}")
    command = EngageCommand(flow_sid, alias, to, sender, data)
    wait = inputs.get("wait_for_end")
    return StepStart(command, caller, wait is True or wait == "true")


def _parameters(text: str) -> dict[str, Any]:
    """``key=value`` lines, or one JSON object, under the command's rules (depth
    included). Raises ``ParameterError``."""
    built = parameters.Builder()
    if text.startswith("{"):
        try:
            value = parameters.loads(text)
        except ValueError as exc:
            raise ParameterError(f"bad JSON: {exc}", text) from None
        if not isinstance(value, dict):
            raise ParameterError("give one JSON object, or key=value lines", text)
        built.merge(value, text)
        return built.value
    return parameters.parse_lines(text, into=built)


class WorkflowSteps:
    """The step's executions: each started through ``engager`` and completed once."""

    def __init__(
        self,
        engager: Engager,
        defaults: Defaults,
        *,
        slack: AsyncWebClient | None,
        state: Durable,
        tasks: Tasks,
        records: Records | None,
        catalog: FlowCatalog | None = None,
        follow_hours: float = 48.0,
    ) -> None:
        self.engager = engager
        self.defaults = defaults
        self.slack = slack  # completes with each step's own token, on the shared pool
        self.state = state
        self.tasks = tasks
        self.records = records
        self.catalog = catalog
        self.follow_hours = follow_hours

    # -- an execution -------------------------------------------------------------

    def executed(self, event: Mapping[str, Any], team: str) -> None:
        """``function_executed``: the start as a task (the event is acked at once)."""
        execution = str(event.get("function_execution_id") or "")
        token = str(event.get("bot_access_token") or "")
        if not execution or not token:
            log.warning("a function_executed event without its execution or token: ignored")
            return
        self.tasks.spawn(self._execute(event, team, execution, token), f"step:{execution}")

    async def _execute(
        self, event: Mapping[str, Any], team: str, execution: str, token: str
    ) -> None:
        try:  # Slack delivers an event again when unsure it arrived: one start per execution
            first = await self.state.use(lambda s: s.add(f"step:run:{execution}", "1", 86400))
        except StateUnavailable:
            await self._fail(
                execution, token, "the bot's shared state is unavailable; nothing was sent"
            )
            return
        if not first:
            log.info("step %s delivered again: already taken", execution)
            return
        try:
            await self._start(event, team, execution, token)
        except Exception as exc:  # the claim is taken: the step must still end
            log.exception("step %s failed inside the bot", execution)
            await self._fail(
                execution,
                token,
                f"the bot failed while running the step ({type(exc).__name__}); the flow may"
                " have started: check its runs in the Twilio Console before running the"
                " workflow again",
            )

    async def _start(self, event: Mapping[str, Any], team: str, execution: str, token: str) -> None:
        """Read the inputs, apply the rules, start, and complete the step (or wait)."""
        inputs = event.get("inputs") or {}
        workflow = str(event.get("workflow_execution_id") or "")
        read = read_inputs(
            inputs,
            self.defaults,
            await self._names(),
            self.engager.policy,
            team=team,
            workflow=workflow,
        )
        if isinstance(read, str):
            audit.record("invalid", Caller("", "", team, via=f"workflow {workflow}"), detail=read)
            await self._fail(execution, token, read)
            return
        command, caller = self.engager.named(read.command), read.caller
        if not self.tasks.accepting:
            await self._fail(execution, token, "the bot is restarting; run the workflow again")
            return
        if problem := self._channel_needed(command, caller):
            audit.record("refused", caller, command, detail=problem)
            await self._fail(execution, token, problem, caller.user_id)
            return
        # a workflow has nobody to click *Start anyway*: parameter findings refuse it
        outcome = await self.engager.start(StartRequest(command, caller, claim=True))
        if isinstance(outcome, Refused):
            throttle = self.engager.throttle
            said = _refusal_text(command, outcome, throttle.user_rate, throttle.duplicate_window)
            await self._fail(execution, token, said, caller.user_id)
            return
        if not isinstance(outcome, Started):
            error = outcome.error
            said = describe_error(error)
            if isinstance(outcome, Failed) and is_already_active(error) and outcome.active:
                said += f" The active run: {console_url(command.flow_sid, outcome.active.sid)}"
            elif isinstance(outcome, Unknown):
                said += (
                    " It may have started: check the flow's runs before running the workflow"
                    f" again: {console_url(command.flow_sid)}"
                )
            await self._fail(execution, token, said, caller.user_id)
            return
        run = outcome.engagement
        waiting = Waiting(
            sid=run.sid,
            flow_sid=run.flow_sid or command.flow_sid,
            execution=execution,
            token=SecretStr(token),
            status=run.status or "active",
            user=caller.user_id,
        )
        if not read.wait:
            await self._complete(execution, token, _started(waiting), caller.user_id)
            return
        await self._wait(waiting)

    def _channel_needed(self, command: EngageCommand, caller: Caller) -> str | None:
        """A step without a channel where channels are restricted: what to fix."""
        policy = self.engager.policy
        restricted = policy.per_flow.get(command.flow_sid)
        if caller.channel_id or (
            policy.everywhere.channels is None and not (restricted and restricted.channels)
        ):
            return None
        return "Channel: channels are restricted here (ALLOWED_SLACK_CHANNELS); give the step one"

    async def _names(self) -> dict[str, str]:
        """Each configured flow's Studio name, casefolded -> its SID (as known)."""
        names: dict[str, str] = {}
        if self.catalog is None:
            return names
        for _, sid in configured_flows(self.defaults):
            info = self.catalog.peek(sid) or await self.catalog.get(sid)
            if info is not None and info.name:
                names.setdefault(info.name.casefold(), sid)
        return names

    # -- waiting for the end ---------------------------------------------------------

    async def _wait(self, waiting: Waiting) -> None:
        sid, ttl = waiting.sid, self.follow_hours * 3600 + 3600
        try:
            await self.state.use(lambda s: s.hset(f"step:{sid}", waiting.fields(), ttl))
        except StateUnavailable:
            await self._fail(
                waiting.execution,
                waiting.token.get_secret_value(),
                f"the run started ({_started(waiting)['console_link']}) but its end cannot be"
                " waited for: the bot's shared state is unavailable",
            )
            return
        if self.records is not None:  # it may have ended already
            record = await self.records.get(sid)
            if record is not None and record.state in FINAL:
                await self.run_ended(record)

    async def run_ended(self, record: RunRecord) -> None:
        """A recorded run ended (``bot.runs.tracker``): complete the step waiting for it, once."""
        sid = record.sid or record.id
        try:
            stored = await self.state.use(lambda s: s.hgetall(f"step:{sid}"))
            if not stored:
                return
            waiting = Waiting.of(stored)
            if waiting is None or not await self.state.use(
                lambda s: s.add(f"step:{sid}:done", "1", self.follow_hours * 3600 + 3600)
            ):
                return  # another process completes it
        except StateUnavailable:
            return  # logged by the store; the record's end is kept
        token = waiting.token.get_secret_value()
        if record.state == "unfollowed":
            hours = f"{self.follow_hours:g}"
            await self._fail(
                waiting.execution,
                token,
                f"following stopped before the run ended (BULK_FOLLOW_HOURS={hours}); it may"
                f" still be active: {_started(waiting)['console_link']}",
                waiting.user,
            )
        else:
            outputs = {
                **_started(waiting),
                "final_status": record.state,
                "end_widget": record.widget,
                "answers": json.dumps(record.answers, ensure_ascii=False),
            }
            await self._complete(waiting.execution, token, outputs, waiting.user)
        await self.state.use(lambda s: s.delete(f"step:{sid}"))

    # -- telling Slack ------------------------------------------------------------------

    async def _complete(
        self, execution: str, token: str, outputs: Mapping[str, str], user: str = ""
    ) -> None:
        if self.slack is None:
            return
        try:
            await self.slack.functions_completeSuccess(
                function_execution_id=execution, outputs=dict(outputs), token=token
            )
        except SlackApiError as exc:
            await self._not_told(execution, user, "its outputs", exc, outputs.get("console_link"))

    async def _fail(self, execution: str, token: str, error: str, user: str = "") -> None:
        if self.slack is None:
            return
        try:
            await self.slack.functions_completeError(
                function_execution_id=execution, error=error[:1000], token=token
            )
        except SlackApiError as exc:
            await self._not_told(execution, user, f"its error ({error[:300]})", exc, None)

    async def _not_told(
        self, execution: str, user: str, what: str, exc: SlackApiError, link: str | None
    ) -> None:
        """Slack refused the step's completion (a step token revoked during a long wait,
        say): the workflow shows the step running for ever, so the person it acted for
        is told, and the audit keeps it."""
        reason = slack_refusal(exc)
        log.error("step %s not completed: %s", execution, reason)
        audit.record("step_incomplete", Caller(user, "", ""), detail=f"step {execution}: {reason}")
        if not user:
            return
        run = f" The run: {link}" if link else ""
        text = (
            f"A workflow's *Start a Studio flow* step that ran for you ({execution}) could not"
            f" be completed with {what}: Slack answered {reason}. The workflow shows the step"
            f" still running; cancel that workflow run in Workflow Builder's activity.{run}"
        )
        await direct_message(self.slack, user, messages.notice_message(":warning:", text))


def _started(waiting: Waiting) -> dict[str, str]:
    """The step's outputs once its run started: its SID, status and Console link."""
    return {
        "run_sid": waiting.sid,
        "status": waiting.status,
        "console_link": console_url(waiting.flow_sid, waiting.sid),
    }


def _refusal_text(command: EngageCommand, refused: Refused, rate: str, window: float = 0.0) -> str:
    text = refusal_text(command, refused, rate, window)
    return text[:1].upper() + text[1:] + "; nothing was sent"
