"""Working bulk runs: every process takes rows from the runs' queues, sends each at most
once at the account's pace, and finishes a run when every row is settled.

- A row is claimed as *sending* before its request goes out; a job found claimed but
  without an outcome (its process died) becomes *outcome unknown* and is never sent
  again. Rows start through the same use-case as single commands
  (``Engager.start`` with the destination rules only), letting single commands go first.
- A run is listed before its rows are enqueued, and its rows are enqueued in one
  step (``Jobs.put_many``): a run left *starting* by a process that died is taken up
  by another after ``START_GRACE`` seconds (or failed cleanly, if its rows are gone).
- A row whose contact is in quiet hours (``bot.domain.contact_clock``) waits for its window
  as a job for later (``Jobs.later``), on its own clock, while the others go on; a run
  started ``--at`` a time enqueues its rows for then. Each round moves the due ones
  back into the queue (``Jobs.wake``).
- Idle, a worker waits for a wake-up (``bot.state.jobs.Wakeups``) instead of polling; a
  shared-state outage is logged when it starts and when it ends.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from typing import Protocol

from bot.domain.bulk_input import Row
from bot.domain.command import EngageCommand
from bot.domain.contact_clock import opening_text
from bot.domain.errors import StateUnavailable
from bot.domain.results import Refused, Result, Started, Unknown
from bot.domain.run import is_already_active
from bot.domain.text import refusal_text
from bot.engage.bulk.state import (
    KEEP_SECONDS,
    SUPPRESSED,
    BulkState,
    RowResult,
    RunMeta,
)
from bot.engage.start import Engager, StartRequest
from bot.infra import audit
from bot.infra.logs import Outage, about
from bot.infra.workers import Workers
from bot.state.jobs import Jobs, Wakeups, jobs_for
from bot.state.store import Store

log = logging.getLogger(__name__)

CONCURRENCY = 16  # rows in flight per process
RECLAIM_AFTER = 30.0  # a job silent this long belonged to a process that died
START_GRACE = 30.0  # a run still *starting* this long was left by a process that died
IDLE_SECONDS = 5.0  # an idle worker looks again this often, woken or not


class Reporter(Protocol):
    """What a run's progress and end are shown through (``bot.slack.bulk.report``)."""

    async def edit(self, run_id: str, *, force: bool = False) -> None: ...

    async def deliver_final(self, run_id: str) -> bool: ...

    async def all_ended(self, run_id: str) -> bool: ...


class Worker:
    def __init__(
        self,
        engager: Engager,
        state: BulkState,
        reporter: Reporter,
        store: Store,
        wakeups: Wakeups,
    ) -> None:
        self.engager = engager  # every row starts through the one use-case for starts
        self.state = state
        self.reporter = reporter
        self.store = store
        self.wakeups = wakeups
        self.me = secrets.token_hex(4)  # this process, as a consumer of the queues
        self.outage = Outage(log, "bulk runs: shared state")
        self._jobs: dict[str, Jobs] = {}
        self.workers = Workers(
            "bulk",
            slots=CONCURRENCY,
            round=self._round,
            idle=lambda: self.wakeups.wait(IDLE_SECONDS),
            busy_wait=IDLE_SECONDS,
            log=log,
            outage=self.outage,
        )

    @property
    def stopping(self) -> bool:
        """SIGTERM: rows not yet sent go back to the queue."""
        return self.workers.stopping

    def queue(self, run_id: str) -> Jobs:
        if run_id not in self._jobs:
            self._jobs[run_id] = jobs_for(self.store, self.me, f"bulk:{run_id}:jobs")
        return self._jobs[run_id]

    # -- starting a run --------------------------------------------------------------

    async def launch(self, run_id: str, meta: RunMeta) -> int:
        """Enqueue a *starting* run's rows (all or none, once) and mark it running; the
        number of rows, 0 if its rows are gone (then it is failed cleanly)."""
        rows = await self.state.row_numbers(run_id)  # the numbers only: not 100,000 rows
        if not rows:
            note = "could not start: its rows were no longer kept; nothing was sent"
            await self.state.update(run_id, status="cancelled", note=note)
            await self.finish(run_id, force=True)
            return 0
        jobs = self.queue(run_id)
        if await jobs.size() == 0:
            now = self.engager.clock.now()
            dues = await self.state.dues(run_id)
            later = {n: dues[n] for n in rows if dues.get(n, 0) > now}
            await jobs.later(later)  # the run's --at: each row at its time
            await jobs.put_many(sorted((n for n in rows if n not in later), key=int))
        await self.state.update(run_id, status="running")
        await self.wakeups.ring()
        self.start()
        return len(rows)

    # -- the loop ---------------------------------------------------------------------

    def start(self) -> None:
        """Work the runs in the background (not once this process is stopping)."""
        self.workers.start()

    async def stop(self) -> None:
        """SIGTERM: take no more rows, let those in flight finish (rows still waiting for
        their turn give it up at once)."""
        await self.workers.stop(10, cancel=True)

    async def _round(self) -> bool:
        """Take what jobs there are room for, from every running run; True if any. Runs
        left *starting* are taken up; finished runs get their last messages delivered."""
        took = False
        for run_id in await self.state.listed():
            meta = await self.state.meta(run_id)
            if meta is None or meta.status in ("previewed", "dropped"):
                await self.state.unlist(run_id)
                continue
            if meta.finished:
                if await self._deliver(run_id):
                    await self.state.unlist(run_id)
                continue
            if meta.status == "starting":
                left = time.time() - meta.began > START_GRACE
                if left and await self.state.claim_once(run_id, "resume", START_GRACE):
                    log.warning("bulk run %s was left starting; taking it up", run_id)
                    await self.launch(run_id, meta)
                continue
            if meta.status == "paused":
                continue
            jobs = self.queue(run_id)
            await jobs.wake(self.engager.clock.now())  # rows whose window (or --at) came
            for job_id, body in await jobs.reclaim(RECLAIM_AFTER):
                await self.workers.spawn(self._row(run_id, jobs, job_id, body))
                took = True
            while not self.workers.full:
                job = await jobs.take()
                if job is None:
                    break
                await self.workers.spawn(self._row(run_id, jobs, *job))
                took = True
        return took

    async def _deliver(self, run_id: str) -> bool:
        """The final message and the results file, by one process at a time."""
        if not await self.state.claim_once(run_id, "delivering", 120):
            return False
        try:
            return await self.reporter.deliver_final(run_id)
        finally:
            await self.state.release(run_id, "delivering")

    # -- one row ------------------------------------------------------------------------

    async def _row(self, run_id: str, jobs: Jobs, job_id: str, number: str) -> None:
        with about(bulk_run=run_id, row=number):
            try:
                if not await self._send_row(run_id, number):
                    await jobs.put_many([number])  # paused: back in the queue, taken on Resume
                await jobs.ack(job_id)
                await self.reporter.edit(run_id)
                await self.finish(run_id)
            except StateUnavailable as exc:
                self.outage.failed(exc)  # the job stays pending: reclaimed when it is back
            except Exception:
                log.exception("bulk run %s row %s failed", run_id, number)

    async def _send_row(self, run_id: str, number: str) -> bool:
        """Send row ``number`` once, or settle it; False if the run is paused (not sent)."""
        if await self.state.settled(run_id, number):
            return True
        meta = await self.state.meta(run_id)
        if meta is None:
            return True  # the run's state is gone: nothing to send it with
        row = await self.state.row(run_id, number)
        if await self._skipped(run_id, number, row):
            return True
        if meta.status == "running" and await self._wait_for_window(run_id, meta, number, row):
            return True  # kept for later: its contact is in quiet hours
        if meta.status == "paused" or self.stopping:
            return False  # not sent: back in the queue, taken on Resume
        if meta.status == "cancelled":
            if await self._claim(run_id, number):
                await self.state.settle(run_id, number, RowResult(outcome="cancelled"))
            return True
        assert row is not None  # every job is a row kept with the run
        command = meta.plan.command(row)
        paused = False

        async def take() -> bool:
            """Its turn came (singles first): still running, and this process's to send.
            A row not sent is settled here, or (paused) goes back to the queue."""
            nonlocal paused
            now = await self.state.meta(run_id) or meta
            if now.status == "paused" or self.stopping:
                paused = True
                return False
            if not await self._claim(run_id, number):
                return False  # settled as unknown
            if now.status == "cancelled":
                await self.state.settle(run_id, number, RowResult(outcome="cancelled"))
                return False
            return True

        outcome = await self.engager.start(
            StartRequest(
                command,
                meta.caller,
                rules="destination",  # previewed and confirmed as a whole
                turn="bulk",
                at_turn=take,
                bulk_run=run_id,
                row=number,
            )
        )
        if paused:
            return False
        await self._settle(run_id, number, command, outcome)
        return True

    async def _settle(
        self, run_id: str, number: str, command: EngageCommand, outcome: Result
    ) -> None:
        """A row's start's outcome kept, unless ``take`` settled it already or the row
        must wait (the opt-out list could not be read: ``StateUnavailable``, unsent)."""
        if isinstance(outcome, Refused) and outcome.kind == "unchecked":
            raise StateUnavailable("the opt-out list")  # the row waits for Redis, unsent
        if isinstance(outcome, Refused) and outcome.kind == "withdrawn":
            return  # settled by take
        if isinstance(outcome, Refused) and not await self._claim(run_id, number):
            return  # refused before its turn, and claimed elsewhere meanwhile
        await self.state.settle(run_id, number, row_outcome(command, outcome))

    async def _skipped(self, run_id: str, number: str, row: Row | None) -> bool:
        """A row the preview skipped (its contact opted out, or was at its cap): settled
        as suppressed, never sent (alike by any process: nothing to claim)."""
        if row is None or not row.problem or not row.problem.startswith(SUPPRESSED):
            return False
        why = row.problem.removeprefix(SUPPRESSED).replace("_", " ")
        skipped = RowResult(outcome="suppressed", message=f"skipped at the preview: {why}")
        await self.state.settle(run_id, number, skipped)
        return True

    async def _claim(self, run_id: str, number: str) -> bool:
        """Claim row ``number`` for this process; a row claimed already belonged to a
        process that stopped before saying what happened: it may have reached Twilio, so
        it is settled as unknown and never sent again."""
        if await self.state.claim_row(run_id, number, self.me):
            return True
        gone = "the process sending it stopped before Twilio answered; not sent again"
        await self.state.settle(run_id, number, RowResult(outcome="unknown", message=gone))
        return False

    async def _wait_for_window(
        self, run_id: str, meta: RunMeta, number: str, row: Row | None
    ) -> bool:
        """True if row ``number``'s contact is in quiet hours now: it waits, as a job for
        later, until their window opens (settled as refused if it never does)."""
        if row is None or row.to is None:
            return False
        opening = self.engager.clock.opens(meta.flow_sid, row.to)
        if opening is None:
            return False
        if opening.at is not None:
            await self.queue(run_id).later({number: opening.at})  # shown by the row's edit
            return True
        if await self.state.claim_row(run_id, number, self.me):
            message = "not started: " + opening_text(opening)
            await self.state.settle(run_id, number, RowResult(outcome="failed", message=message))
        return True

    async def cancel_rest(self, run_id: str) -> None:
        """Cancelled: every row not yet claimed is settled as cancelled (never sent)."""
        for number in await self.state.row_numbers(run_id):
            if await self.state.claim_row(run_id, number, "cancel"):
                await self.state.settle(run_id, number, RowResult(outcome="cancelled"))
        await self.finish(run_id)

    async def finish(self, run_id: str, *, force: bool = False) -> None:
        """Once every row is settled, or ``force`` (and once across processes): the final
        status, the audit line, the results kept, then the last messages delivered."""
        meta = await self.state.meta(run_id)
        if meta is None or meta.finished:
            return
        if not force and await self.state.settled_count(run_id) < meta.total:
            return
        if not await self.state.claim_once(run_id, "finished", 7 * 24 * 3600):
            return  # another process finished it
        with contextlib.suppress(StateUnavailable):  # its queue goes with the run's records
            await self.queue(run_id).expire(KEEP_SECONDS)
        counts = await self.state.counts(run_id)
        final = "cancelled" if meta.status == "cancelled" else "done"
        all_ended = await self.reporter.all_ended(run_id)  # the results file is final
        await self.state.update(
            run_id,
            status=final,
            finished=True,
            finished_at=time.time(),
            final=all_ended,
            started=counts["started"],
        )
        audit.record(
            "bulk_cancelled" if final == "cancelled" else "bulk_done",
            meta.caller,
            detail=(
                f"run {run_id}, flow {meta.flow_sid}: {counts['started']} started,"
                f" {counts['failed']} failed, {counts['unknown']} unknown,"
                f" {counts['cancelled']} cancelled, {counts['suppressed']} suppressed"
                f" of {meta.total}"
            ),
        )
        if await self._deliver(run_id):
            await self.state.unlist(run_id)


def row_outcome(command: EngageCommand, outcome: Result) -> RowResult:
    """A row's outcome for the results file."""
    if isinstance(outcome, Refused) and outcome.suppressed is not None:
        return RowResult(outcome="suppressed", message=refusal_text(command, outcome))
    if isinstance(outcome, Refused):
        reason = refusal_text(command, outcome)
        return RowResult(outcome="failed", message=f"not started: {reason}")
    if isinstance(outcome, Started):
        return RowResult(outcome="started", sid=outcome.engagement.sid)
    error = outcome.error
    message = error.message
    if isinstance(outcome, Unknown):
        return RowResult(outcome="unknown", code=str(error.code or ""), message=message)
    if is_already_active(error):
        active = f" ({outcome.active.sid})" if outcome.active else ""
        message = "already active: " + message + active
    return RowResult(outcome="failed", code=str(error.code or ""), message=message)
