"""One flow for many contacts: preview, start, pace, pause, resume, cancel, report.

One module per job:

- ``preview``: what would be sent and what would not, only to whoever asked, from a
  command's list, a message's numbers or a CSV file shared in Slack; kept, not sent.
- ``controls``: who may start and steer a run; Start, Cancel, Pause, Resume.
- ``worker``: every process takes rows from the runs' queues (``bot.state.jobs``: a Redis
  Stream with a consumer group, or memory) and sends each at most once, at the
  account's pace, singles first.
- ``report``: the progress message in the channel and the results file in its
  thread; their final state always reaches Slack, or the starter is told.
- ``state``: the run's record, rows, outcomes and claims, in ``Durable`` state.

**Restarts.** With Redis the run lives there: SIGTERM stops this process's worker after
the rows in flight, and any process carries on. Without Redis, SIGTERM pauses the run
and says so in its progress message: it ends with the process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.caller import Caller
from bot.domain.command import BulkCommand, Defaults
from bot.domain.errors import StateUnavailable
from bot.domain.policy import Policy
from bot.engage.bulk.state import KEEP_SECONDS, BulkState
from bot.engage.bulk.worker import Worker
from bot.engage.start import Engager
from bot.engage.throttle import Throttle
from bot.infra.tasks import Tasks
from bot.runs.records import Records, RunRecord
from bot.slack.bulk.controls import Controls
from bot.slack.bulk.preview import Previews
from bot.slack.bulk.report import Reporter
from bot.slack.engage import Admission
from bot.slack.files import CsvFiles
from bot.slack.reply import Reply
from bot.state.jobs import Wakeups
from bot.state.store import Durable, RedisStore, Store
from bot.studio.catalog import FlowCatalog


class BulkRuns:
    """The bulk-run use-cases, as the listeners and the services see them; each row
    starts through ``engager`` (the one use-case for every start)."""

    def __init__(
        self,
        engager: Engager,
        *,
        store: Store,
        slack: AsyncWebClient | None,
        defaults: Defaults,
        policy: Policy,
        throttle: Throttle,
        tasks: Tasks,
        catalog: FlowCatalog | None = None,
        bulk_users: frozenset[str] | None = None,
        max_rows: int = 5000,
        files: CsvFiles | None = None,
        records: Records | None = None,
        checked_every: Callable[[], float] | None = None,
        max_days: float = 30.0,
    ) -> None:
        self.store = store
        self.state = BulkState(Durable(store))
        self.reporter = Reporter(self.state, slack, records, checked_every)
        self.worker = Worker(engager, self.state, self.reporter, store, Wakeups(store))
        self.reporter.waiting = lambda run_id: self.worker.queue(run_id).waiting()
        self.controls = Controls(policy, self.state, self.worker, self.reporter)
        self.previews = Previews(
            self.state,
            defaults,
            policy=policy,
            throttle=throttle,
            tasks=tasks,
            catalog=catalog,
            bulk_users=bulk_users,
            max_rows=max_rows,
            files=files,
            clock=engager.clock,
            max_days=max_days,
            consent=engager.consent,
        )

    @property
    def max_rows(self) -> int:
        return self.previews.max_rows

    # -- previews -------------------------------------------------------------------

    async def preview_command(
        self, command: BulkCommand, caller: Caller, reply: Reply
    ) -> Admission:
        return await self.previews.from_command(command, caller, reply)

    async def preview_numbers(self, numbers: list[str], caller: Caller, reply: Reply) -> Admission:
        return await self.previews.from_numbers(numbers, caller, reply)

    async def preview_file(
        self, file_ids: list[str], text: str, caller: Caller, reply: Reply
    ) -> Admission:
        return await self.previews.from_file(file_ids, text, caller, reply)

    # -- controls -------------------------------------------------------------------

    async def start(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        await self.controls.start(run_id, caller, replace_preview)

    async def drop(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        await self.controls.drop(run_id, caller, replace_preview)

    async def control(self, run_id: str, action: str, caller: Caller, notify: Reply) -> None:
        await self.controls.control(run_id, action, caller, notify)

    # -- how the started runs end ----------------------------------------------------

    async def outcomes_changed(self, record: RunRecord) -> None:
        """A run of this bulk run ended (``bot.runs.tracker``): the second tally moves, and
        once every started run has ended (or is no longer followed) after the starts
        finished, the results file is uploaded again, marked final."""
        run_id = record.bulk_run
        try:
            await self.state.run_ended(run_id, record.id, record.state, record.widget)
            await self.reporter.edit(run_id)
            meta = await self.state.meta(run_id)
            if meta is None or not meta.finished or meta.final:
                return
            if await self.state.run_ends_count(run_id) < meta.started:
                return  # runs still active: the results file waits for the last
            if not await self.reporter.all_ended(run_id):
                return
            if not await self.state.claim_once(run_id, "final", KEEP_SECONDS):
                return
            await self.state.update(
                run_id,
                final=True,
                shown_final=False,
                uploaded=False,
                deliver_tries=0,
                deliver_after=0.0,
                finished_at=time.time(),
            )
            await self.state.enlist(run_id)  # the worker delivers it
            await self.worker.wakeups.ring()
        except StateUnavailable:
            return  # logged by the store; the next run to end tries again

    # -- the process's worker ---------------------------------------------------------

    def start_worker(self) -> None:
        """Work the runs in the background (takes up runs left by a process that stopped)."""
        self.worker.start()

    async def stop(self) -> None:
        """SIGTERM: take no more rows, let those in flight finish. With Redis the run stays
        for the next process; without it, it is paused and says so."""
        await self.worker.stop()
        if isinstance(self.store, RedisStore):
            return
        note = "paused: the bot restarted, and without Redis this run lived in its memory"
        for run_id in await self.state.listed():
            meta = await self.state.meta(run_id)
            if meta is not None and meta.status == "running" and not meta.finished:
                await self.state.update(run_id, status="paused", note=note)
                await self.reporter.edit(run_id, force=True)
