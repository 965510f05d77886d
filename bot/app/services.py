"""What one process serves Slack with, built once from the settings: the use-cases with
their guardrails and state, and the reply poster. Listeners receive it as ``services``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient

from bot.app.config import Settings
from bot.app.factories import state_store, throttle
from bot.domain.command import Defaults
from bot.domain.errors import StateUnavailable
from bot.domain.text import configured_flows
from bot.engage.consent import Consent
from bot.engage.schedules import Schedules
from bot.engage.start import Engager
from bot.engage.throttle import Throttle
from bot.infra import metrics
from bot.infra.metrics import Sampler
from bot.infra.tasks import Tasks
from bot.runs.records import Records
from bot.runs.registry import RunRegistry
from bot.runs.tracker import RunTracker
from bot.slack.bulk import BulkRuns
from bot.slack.consent import SlackConsent
from bot.slack.engage import SlackEngage
from bot.slack.files import CsvFiles
from bot.slack.follow import INDEX as follow_index
from bot.slack.follow import Follower
from bot.slack.forms import Forms, started_hook
from bot.slack.identity import BotIdentity
from bot.slack.pace import PacedWebClient, SlackPace
from bot.slack.report import Reports
from bot.slack.responder import Responder, slack_session
from bot.slack.run_actions import RunActions
from bot.slack.schedules import SlackSchedules
from bot.slack.workflow_step import WorkflowSteps
from bot.state.store import BestEffort, Durable, RedisStore, Store
from bot.studio.catalog import FlowCatalog
from bot.studio.client import StudioClient

log = logging.getLogger(__name__)

READY_TIMEOUT = 1.0  # seconds Redis has to answer /readyz's PING
FILE_BYTES = 5 * 1024 * 1024  # the largest CSV file read: far above any sensible BULK_MAX_ROWS


async def _first(pair: Awaitable[tuple[int, float | None]]) -> float:
    return float((await pair)[0])


@dataclass(frozen=True)
class Services:
    defaults: Defaults  # what the /engage parser falls back on
    engager: Engager  # starts: the rules, the start, the records
    starts: SlackEngage  # starts asked for in Slack: the ack, the prompts, the card
    run_actions: RunActions  # status, Refresh, End
    responder: Responder  # replies through response_url
    store: Store  # shared state (memory or Redis)
    tasks: Tasks  # the work after acks, which shutdown waits for
    studio: StudioClient  # the one Studio client
    catalog: FlowCatalog  # the flows, as Studio describes them
    records: Records  # every start, kept (RUN_RECORD_DAYS)
    tracker: RunTracker  # follows every recorded run to its end
    reports: Reports  # /engage report, the Home tab's counts
    follower: Follower  # cards that follow their runs
    bulk: BulkRuns  # one flow for many contacts
    forms: Forms  # the form, the shortcuts, the Home tab
    schedules: Schedules  # starts kept for later, fired once by any process
    slack_schedules: SlackSchedules  # /engage scheduled, Cancel, what fired
    steps: WorkflowSteps  # Workflow Builder's "Start a Studio flow" step
    consent: SlackConsent  # /engage optout, optin, optouts; importing an opt-out file
    sampler: Sampler  # queue depths for /metrics, sampled in the background
    events_url: str | None = None  # TWILIO_EVENTS_URL: /twilio/events is served when set
    auth_token: str | None = None  # verifies Event Streams deliveries
    slack: AsyncWebClient | None = None  # Slack's Web API (None: no SLACK_BOT_TOKEN)
    identity: BotIdentity | None = None  # auth.test, asked once at start-up (with a token)

    @classmethod
    def build(cls, settings: Settings, studio: StudioClient) -> Services:
        """Every use-case, wired to what they share: one store, one set of rules and
        limits, one task set, one flow catalog. Call on the running loop (the Slack pool
        is opened here)."""
        store = state_store(settings)
        state = Durable(store)
        tasks = Tasks()
        policy = settings.policy
        limits = throttle(settings, store)
        registry = RunRegistry(state)
        aliases = {spec.sid: alias for alias, spec in settings.studio_flows.items()}
        catalog = FlowCatalog(studio, BestEffort(store), settings.flow_cache_seconds)
        session = slack_session()
        responder = Responder(session)  # closes the session in aclose()
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        slack = (  # the bot's own calls, under Slack's tiers (shared through the store)
            PacedWebClient(
                token=token,
                base_url=settings.slack_api_url,
                session=session,
                pace=SlackPace(BestEffort(store)),
                # No blind retry after a dropped connection (slack_sdk's default): Slack may
                # have taken the call (a post, a file, a step's completion). Each caller
                # retries what cannot have landed.
                retry_handlers=[],
            )
            if token
            else None
        )
        reads = Throttle(
            BestEffort(store), studio_rate=settings.studio_read_rate_limit, name="reads"
        )
        consent = Consent(
            state,
            secret=settings.consent_secret,
            words=settings.opt_out_words,
            contact_cap=settings.contact_cap,
            flow_caps=settings.flow_caps,
        )
        records = Records(
            state,
            days=settings.run_record_days,
            follow_hours=settings.bulk_follow_hours,
            first_check=lambda: tracker.interval,  # the sweep's own pace
            keyed=consent.key,  # so that an opt-out answer finds its contact
        )
        engager = Engager(
            studio,
            policy=policy,
            throttle=limits,
            state=state,
            registry=registry,
            records=records,
            aliases=aliases,
            catalog=catalog,
            parameter_check=settings.flow_parameter_check,
            clock=settings.contact_clock,
            consent=consent,
        )
        steps = WorkflowSteps(
            engager,
            settings.command_defaults,
            slack=slack,
            state=state,
            tasks=tasks,
            records=records,
            catalog=catalog,
            follow_hours=settings.bulk_follow_hours,
        )
        schedules = Schedules(
            engager,
            store,
            max_days=settings.schedule_max_days,
            late_minutes=settings.schedule_late_minutes,
            # the Slack surface says what fired; it lists and cancels through schedules
            tell=lambda item, result: slack_schedules.tell(item, result),
        )
        run_actions = RunActions(
            studio,
            policy=policy,
            throttle=limits,
            tasks=tasks,
            registry=registry,
            catalog=catalog,
            aliases=aliases,
            mask_numbers=settings.mask_numbers,
        )
        files = (
            CsvFiles(slack, session, settings.slack_api_url, limit=FILE_BYTES) if slack else None
        )
        bulk = BulkRuns(
            engager,
            store=store,
            slack=slack,
            defaults=settings.command_defaults,
            policy=policy,
            throttle=limits,
            tasks=tasks,
            catalog=catalog,
            bulk_users=settings.bulk_slack_users,
            max_rows=settings.bulk_max_rows,
            files=files,
            records=records,
            # With Event Streams a run's end arrives as it happens; else the sweep's pace.
            checked_every=(lambda: 0.0)
            if settings.twilio_events_url
            else (lambda: tracker.interval),
            max_days=settings.schedule_max_days,
        )
        tracker = RunTracker(
            studio,
            records,
            reads=reads,
            catalog=catalog,
            collect={spec.sid: spec.collect for spec in settings.studio_flows.values()},
            events=bool(settings.twilio_events_url),
            on_bulk=bulk.outcomes_changed,  # a bulk run's second tally moves
            on_end=steps.run_ended,  # a step waiting for its run's end completes
            on_consent=consent.heard,  # an opt-out word or a 21610 joins the list
            followed=lambda sid: follower.follows(sid),  # a card reads its run: no one else
        )
        reports = Reports(
            records,
            run_actions,
            policy=policy,
            tasks=tasks,
            slack=slack,
            names=aliases,
        )
        forms = Forms(
            settings.command_defaults,
            store,
            policy=policy,
            catalog=catalog,
            api=studio.api,
            reports=reports,
            schedules=schedules,
        )
        follower = Follower(
            studio,
            slack=slack,
            responder=responder,
            state=state,
            reads=reads,
            catalog=catalog,
            aliases=aliases,
            mask_numbers=settings.mask_numbers,
            minutes=settings.follow_minutes,
            on_started=started_hook(forms, slack),  # the Home tab's record
            on_ended=tracker.seen_end,  # what a card saw, its record keeps
        )
        starts = SlackEngage(
            engager,
            tasks=tasks,
            state=state,
            mask_numbers=settings.mask_numbers,
            publish=follower.publish,
            schedules=schedules,
        )
        slack_schedules = SlackSchedules(
            schedules,
            slack=slack,
            publish=follower.publish,
            tasks=tasks,
            api=studio.api,
            mask_numbers=settings.mask_numbers,
        )
        slack_consent = SlackConsent(
            consent,
            policy=policy,
            state=state,
            tasks=tasks,
            files=files,
            region=settings.phone_default_region,
        )
        auth = settings.twilio_auth_token
        metrics.configure(settings.configured_flows)
        if not settings.metrics_enabled:
            metrics.disable()
        sampler = Sampler(
            {
                "schedules_waiting": lambda: _first(schedules.jobs.waiting()),
                "schedules_due": lambda: schedules.jobs.due(schedules.now()),
                "runs_followed_for_records": records.active_count,
                "runs_overdue": lambda: records.overdue_count(time.time()),
                "bulk_rows_waiting": bulk.state.rows_left,
                "cards_followed": lambda: state.use(lambda s: s.hlen(follow_index)),
            }
        )
        return cls(
            defaults=settings.command_defaults,
            engager=engager,
            starts=starts,
            run_actions=run_actions,
            responder=responder,
            store=store,
            tasks=tasks,
            studio=studio,
            catalog=catalog,
            records=records,
            tracker=tracker,
            reports=reports,
            follower=follower,
            bulk=bulk,
            forms=forms,
            schedules=schedules,
            slack_schedules=slack_schedules,
            steps=steps,
            consent=slack_consent,
            sampler=sampler,
            events_url=settings.twilio_events_url,
            auth_token=auth.get_secret_value() if auth else None,
            slack=slack,
            identity=BotIdentity(slack) if slack is not None else None,
        )

    def start(self) -> None:
        """In the background, never delaying readiness: read the configured flows from
        Studio, and follow the runs shown (this process's and those left by others)."""
        if self.identity is not None:  # so that no command waits for auth.test
            self.tasks.spawn(self.identity.warm(), "slack:identity")
        sids = [sid for _, sid in configured_flows(self.defaults)]
        self.tasks.spawn(self.catalog.warm(sids), "flows:warm")
        self.tasks.spawn(self._count_old_records(), "records:count")
        self.follower.start()
        self.tracker.start()
        self.bulk.start_worker()  # takes up runs left by a process that stopped
        self.schedules.start()  # fires what is due, whichever process kept it
        self.sampler.start()

    async def _count_old_records(self) -> None:
        """Records kept by a version without the days' counters, counted in (once)."""
        try:
            if counted := await self.records.count_old_once():
                log.info("counted %d run records kept before the report's counters", counted)
        except StateUnavailable:
            log.warning("records kept before the report's counters: not counted yet (Redis)")

    async def readiness(self) -> dict[str, bool]:
        """What ``/readyz`` checks: taking commands (not draining after SIGTERM), Slack's
        identity known (``auth.test`` answered), and Redis answering when configured."""
        checks = {"accepting": self.tasks.accepting}
        if self.identity is not None:
            checks["slack_identity"] = await self.identity.ensure()
        if isinstance(self.store, RedisStore):
            try:
                await asyncio.wait_for(self.store.redis.ping(), READY_TIMEOUT)
                checks["redis"] = True
            except Exception:  # noqa: BLE001 - down, slow or refusing: not ready, whatever the cause
                checks["redis"] = False
        return checks

    async def drain(self, grace: float) -> None:
        """Stop taking work and let what is in flight finish (see ``Tasks.drain``); the
        runs followed are left in the state store for the next process. Nothing new is
        taken from the first moment: ``/healthz`` says 503 and commands are told to try
        again while the follower and the bulk rows in flight wind down."""
        self.tasks.accepting = False
        await self.sampler.stop()
        await self.follower.stop()
        await self.tracker.stop()
        await self.bulk.stop()
        await self.schedules.stop()
        await self.tasks.drain(grace)

    async def aclose(self) -> None:
        """Close every connection pool (after ``drain``)."""
        await self.studio.aclose()
        await self.store.aclose()
        await self.responder.aclose()
