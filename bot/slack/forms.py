"""The same power without the grammar: the form, the message shortcut, the Home tab.

Every start from here goes through ``Engager.request``, exactly as the slash command:
the same checks, the same guardrails, the same card. What differs is only how it is
asked: the form's inputs instead of ``key=value``, and errors shown on their field
(``response_action: errors``) with nothing sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import phonenumbers
from pydantic import TypeAdapter, ValidationError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain import parameters
from bot.domain.caller import Caller
from bot.domain.command import Defaults, EngageCommand
from bot.domain.contact_clock import Instant
from bot.domain.errors import ParameterError, PhoneError, StateUnavailable
from bot.domain.grammar import default_flow
from bot.domain.phone import channel_mismatch, parse_address, pretty
from bot.domain.policy import Policy, access_refusal
from bot.domain.run import Engagement
from bot.domain.text import configured_flows, label
from bot.engage.schedules import Schedules
from bot.slack.api_errors import slack_refusal
from bot.slack.messages.views import FlowChoice, RecentRun, View, form, home, nothing_to_start
from bot.slack.report import Reports
from bot.state.store import BestEffort, Durable, Store
from bot.studio.catalog import FETCH_SECONDS, FlowCatalog

log = logging.getLogger(__name__)

RECENT = 15  # runs kept per person for the Home tab
RECENT_SECONDS = 30 * 24 * 3600
# A start redraws the starter's Home tab only if they opened it this recently: for
# everyone else it is drawn fresh when opened, without a Slack call per start.
HOME_WATCH_SECONDS = 3600
RECENT_RUNS = TypeAdapter(list[RecentRun])  # how a person's recent runs are kept


def numbers_in(text: str, region: str | None) -> list[str]:
    """The phone numbers in a message, found by libphonenumber's matcher (E.164). Pure."""
    found = []
    for match in phonenumbers.PhoneNumberMatcher(text, region or "ZZ"):
        number = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        if number not in found:
            found.append(number)
    return found


class Forms:
    def __init__(
        self,
        defaults: Defaults,
        store: Store,
        *,
        policy: Policy,
        catalog: FlowCatalog | None = None,
        api: str = "v1",
        reports: Reports | None = None,
        schedules: Schedules | None = None,
    ) -> None:
        self.defaults = defaults
        self.schedules = schedules  # the Home tab's list of your scheduled starts
        self.policy = policy
        self.catalog = catalog
        self.api = api  # STUDIO_API: the Home tab's links
        self.reports = reports  # the Home tab's counts of the last 7 days
        self.state = Durable(store)
        self.marks = BestEffort(store)  # who opened their Home tab lately

    # -- what the person may choose -------------------------------------------------

    def choices(self, caller: Caller) -> list[FlowChoice]:
        """The configured flows ``caller`` may start here (Studio's names when known)."""
        catalog, policy = self.catalog, self.policy
        allowed = []
        for alias, sid in configured_flows(self.defaults):
            # Where the form was opened without a channel (the Home tab, a global
            # shortcut), the channel is chosen in it and checked on submission.
            where = caller.channel_id or None
            if access_refusal(policy, sid, alias, caller.user_id, where) is None:
                allowed.append(FlowChoice(sid, alias, catalog.peek(sid) if catalog else None))
        return allowed

    def none_because(self, caller: Caller) -> str:
        """Why ``caller`` may start none of the configured flows here."""
        where = caller.channel_id or None
        for alias, sid in configured_flows(self.defaults):
            if no := access_refusal(self.policy, sid, alias, caller.user_id, where):
                return no
        return "no flow is configured (STUDIO_FLOW_SID, STUDIO_FLOWS)"

    def default_choice(self, choices: list[FlowChoice]) -> FlowChoice | None:
        """The flow the form starts on: the default flow (``command.default_flow``, the
        rule every surface uses) if this person may start it, else the only one they may."""
        found = default_flow(self.defaults)
        default = next((c for c in choices if found and c.sid == found[0]), None)
        return default or (choices[0] if len(choices) == 1 else None)

    async def chosen(self, choices: list[FlowChoice], sid: str | None) -> FlowChoice | None:
        """The choice for ``sid`` (or the default flow), with Studio asked if need be."""
        default = self.default_choice(choices)
        wanted = sid or (default.sid if default else "")
        for choice in choices:
            if choice.sid == wanted:
                catalog = self.catalog
                if choice.info is None and catalog is not None:
                    try:
                        info = await asyncio.wait_for(catalog.get(choice.sid), FETCH_SECONDS)
                    except TimeoutError:
                        info = None
                    return FlowChoice(choice.sid, choice.alias, info)
                return choice
        return None

    def senders(self, flow_sid: str | None) -> list[str]:
        own = self.defaults.flow_senders.get(flow_sid or "")
        default = self.defaults.sender
        return [s for s in dict.fromkeys([own, default]) if s]

    def view(
        self, caller: Caller, chosen: FlowChoice | None, contact: str = "", channel: str = ""
    ) -> View:
        choices = self.choices(caller)
        if not choices:
            return nothing_to_start(self.none_because(caller))
        return form(
            choices,
            chosen,
            senders=self.senders(chosen.sid if chosen else None),
            contact=contact,
            channel=channel,
        )

    # -- the submission ----------------------------------------------------------

    def read(self, view: dict[str, Any]) -> tuple[EngageCommand | None, dict[str, str]]:
        """The command the form stands for, or the errors by block (nothing is sent)."""
        values: dict[str, dict[str, Any]] = view.get("state", {}).get("values", {})
        errors: dict[str, str] = {}

        def value(block: str) -> str:
            element: dict[str, Any] = next(iter(values.get(block, {}).values()), {})
            if element.get("type") == "static_select":
                return str((element.get("selected_option") or {}).get("value", ""))
            return str(element.get("value") or "").strip()

        flow_sid = value("flow")
        choice = next((c for c in configured_flows(self.defaults) if c[1] == flow_sid), None)
        if choice is None:
            errors["flow"] = "Choose one of the flows."
        try:
            to = parse_address(value("contact"), self.defaults.region)
        except PhoneError as exc:
            errors["contact"] = str(exc)[:150]
            to = ""
        built = parameters.Builder()
        for block in values:
            if block.startswith("p:") and (given := value(block)):
                try:
                    built.set(block[2:], given)
                except ParameterError as exc:  # a tampered view: the flow's own fields
                    errors["more"] = f"{exc.problem[:140]}."
        try:
            parameters.parse_lines(value("more"), into=built)
        except ParameterError as exc:
            errors["more"] = f"{exc.problem[:1].upper()}{exc.problem[1:140]}."
        found = built.value
        senders = self.senders(flow_sid)
        sender = value("sender") if "sender" in values else (senders[0] if senders else "")
        if to and sender and (mismatch := channel_mismatch(to, sender)):
            errors["contact"] = mismatch[:150]
        if errors or choice is None or not sender:
            if not sender:
                errors.setdefault("flow", "No sender is configured (STUDIO_FROM).")
            return None, errors
        when = (values.get("when") or {}).get("when") or {}
        epoch = when.get("selected_date_time") if isinstance(when, dict) else None
        at = Instant(float(epoch)) if isinstance(epoch, int | float) and epoch > 0 else None
        return EngageCommand(flow_sid, choice[0], to, sender, found, when=at), {}

    # -- the Home tab's record -----------------------------------------------------

    async def remember(self, user_id: str, run: RecentRun) -> None:
        """Keep ``run`` among ``user_id``'s recent runs (best effort)."""
        try:
            recent = await self.recent(user_id)
            fresh = [run] + [r for r in recent if r.sid != run.sid]
            value = RECENT_RUNS.dump_json(fresh[:RECENT]).decode()
            await self.state.use(lambda s: s.set(f"recent:{user_id}", value, RECENT_SECONDS))
        except StateUnavailable:
            return

    async def opened_home(self, user_id: str) -> None:
        """``user_id`` opened their Home tab (``app_home_opened``)."""
        await self.marks.use(lambda s: s.set(f"home:{user_id}", "1", HOME_WATCH_SECONDS))

    async def watches_home(self, user_id: str) -> bool:
        """Whether ``user_id`` opened their Home tab within ``HOME_WATCH_SECONDS``."""
        return await self.marks.use(lambda s: s.get(f"home:{user_id}")) is not None

    async def recent(self, user_id: str) -> list[RecentRun]:
        value = await self.state.use(lambda s: s.get(f"recent:{user_id}"))
        if not value:
            return []
        try:
            return RECENT_RUNS.validate_json(value)
        except ValidationError:
            return []  # kept by an older version in another shape: started afresh

    async def home(self, caller: Caller, note: str = "") -> View:
        try:
            recent = await self.recent(caller.user_id)
        except StateUnavailable:
            recent = []
        choices = self.choices(caller)
        week = None
        if self.reports is not None:
            stats = await self.reports.stats(c.sid for c in choices)
            week = {
                sid: (
                    s.total - dict(s.by_state).get("not_started", 0),
                    dict(s.by_state).get("ended", 0),
                    dict(s.by_state).get("failed", 0),
                    s.answered,
                )
                for sid, s in stats.items()
            }
        scheduled = []
        if self.schedules is not None:
            with contextlib.suppress(StateUnavailable):
                scheduled = await self.schedules.waiting(caller.user_id)
        return home(
            choices,
            recent,
            user_id=caller.user_id,
            api=self.api,
            note=note,
            week=week,
            scheduled=scheduled,
            now=self.schedules.now() if self.schedules is not None else time.time(),
        )

    async def set_status(self, user_id: str, sid: str, status: str) -> None:
        """A recent run's status, as last seen (Refresh, End)."""
        recent = await self.recent(user_id)
        fresh = [replace(r, status=status) if r.sid == sid else r for r in recent]
        value = RECENT_RUNS.dump_json(fresh).decode()
        await self.state.use(lambda s: s.set(f"recent:{user_id}", value, RECENT_SECONDS))

    def recent_run(self, command: EngageCommand, sid: str, status: str) -> RecentRun:
        """A run as the starter's own Home tab lists it (in full: it is theirs)."""
        info = self.catalog.peek(command.flow_sid) if self.catalog else None
        name = info.name if info else command.flow_name
        return RecentRun(
            sid,
            command.flow_sid,
            label(command.flow_alias, command.flow_sid, name),
            pretty(command.to),
            status,
            int(time.time()),
        )


async def publish_home(
    forms: Forms, client: AsyncWebClient, caller: Caller, note: str = ""
) -> None:
    """Draw ``caller``'s Home tab (``views.publish``)."""
    try:
        await client.views_publish(user_id=caller.user_id, view=await forms.home(caller, note))
    except SlackApiError as exc:
        log.info("views.publish refused: %s", slack_refusal(exc))
    except Exception as exc:  # noqa: BLE001 - the network; the Home tab is redrawn when next opened
        log.warning("views.publish failed: %s", type(exc).__name__)


def started_hook(
    forms: Forms, client: AsyncWebClient | None
) -> Callable[[EngageCommand, Engagement, Caller], Awaitable[None]]:
    """After each start: keep it among the starter's recent runs, and redraw their Home
    tab if they have it open lately (see ``HOME_WATCH_SECONDS``)."""

    async def started(command: EngageCommand, engagement: Engagement, caller: Caller) -> None:
        run = forms.recent_run(command, engagement.sid, engagement.status or "unknown")
        await forms.remember(caller.user_id, run)
        if client is not None and await forms.watches_home(caller.user_id):
            await publish_home(forms, client, caller)

    return started
