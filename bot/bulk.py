"""One flow for many contacts: preview, start, pace, pause, resume, cancel, report.

- **Preview** (only to whoever asked): ``bot.bulk_plan`` says what would be sent and
  what would not; the run is kept, not started. Only that person can start it, and
  ``BULK_SLACK_USERS`` may narrow who can start bulk runs at all.
- **Running.** Each row is a job on the run's own queue (``bot.jobs``: a Redis Stream
  with a consumer group, or memory). A row is claimed as *sending* before its request
  goes out; a job found claimed but without an outcome (its process died) becomes
  *outcome unknown* and is never sent again. Rows start through the same use-case as
  single commands (``Engager.start_now(bulk=True)``), at the account's pace, letting
  single commands go first. Several processes may work one run.
- **Progress**: one message in the channel, edited in place (at most every
  ``EDIT_SECONDS``), with Pause, Resume and Cancel for the starter and admins. At the
  end: the totals, and a results CSV in its thread (``files.uploadV2``).
- **Restarts.** With Redis the run lives there: SIGTERM stops this process's worker
  after the rows in flight, and any process carries on. Without Redis, SIGTERM pauses
  the run and says so in its progress message: it ends with the process.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import secrets
import time
from dataclasses import asdict
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import audit, messages
from bot.audit import Caller
from bot.bulk_input import Row
from bot.bulk_plan import Plan, Progress, plan
from bot.command import BulkCommand, Defaults
from bot.engage import Engager, Outcome
from bot.errors import StateUnavailable
from bot.jobs import Jobs, MemoryJobs, RedisJobs
from bot.messages import Message
from bot.messages.bulk import bulk_preview, bulk_progress
from bot.messages.text import label
from bot.policy import access_refusal
from bot.store import Durable, RedisStore, Store
from bot.studio import is_already_active
from bot.tasks import Reply, deliver

log = logging.getLogger(__name__)

ACTIVE = "bulk:active"  # hash: run ID -> "1", every run running or paused
KEEP_SECONDS = 7 * 24 * 3600
PREVIEW_SECONDS = 3600  # a preview's Start button stays valid this long
EDIT_SECONDS = 2.0
CONCURRENCY = 16  # rows in flight per process
RECLAIM_AFTER = 30.0  # a job silent this long belonged to a process that died


class BulkRuns:
    def __init__(
        self,
        engager: Engager,
        *,
        store: Store,
        slack: AsyncWebClient | None,
        defaults: Defaults,
        bulk_users: frozenset[str] | None = None,
        max_rows: int = 5000,
    ) -> None:
        self.engager = engager
        self.store = store
        self.state = Durable(store)
        self.slack = slack
        self.defaults = defaults
        self.bulk_users = bulk_users
        self.max_rows = max_rows
        self.me = secrets.token_hex(4)
        self._jobs: dict[str, Jobs] = {}
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._loop: asyncio.Task[None] | None = None
        self._rows: set[asyncio.Task[None]] = set()
        self._stopping = False  # SIGTERM: rows not yet sent go back to the queue

    # -- preview ---------------------------------------------------------------

    def _may_start(self, caller: Caller, flow_sid: str, alias: str | None) -> str | None:
        if self.bulk_users is not None and caller.user_id not in self.bulk_users:
            return "you are not allowed to start bulk runs (BULK_SLACK_USERS); ask an admin"
        policy = self.engager.policy
        return access_refusal(policy, flow_sid, alias, caller.user_id, caller.channel_id)

    async def preview_command(self, command: BulkCommand, caller: Caller, reply: Reply) -> Message:
        """``/engage survey +1… +1…``: the preview follows through ``reply``."""
        rows = command.rows(self.defaults.region)
        return await self.preview(
            rows,
            command.flow_sid,
            command.flow_alias,
            command.sender,
            command.parameters,
            caller,
            reply,
        )

    async def preview(
        self,
        rows: list[Row],
        flow_sid: str,
        alias: str | None,
        sender: str,
        shared: dict[str, Any],
        caller: Caller,
        reply: Reply,
    ) -> Message:
        """The rules now (the ack); the preview, after asking Studio about the flow."""
        if reason := self._may_start(caller, flow_sid, alias):
            audit.record("refused", caller, detail=f"bulk: {reason}")
            return messages.refused(reason)
        if len(rows) > self.max_rows:
            return messages.refused(
                f"{len(rows)} contacts is more than BULK_MAX_ROWS={self.max_rows}"
            )

        async def work() -> None:
            catalog = self.engager.catalog
            info = await catalog.get(flow_sid) if catalog else None
            per_second = self.engager.throttle.per_second
            made = plan(
                rows,
                flow_sid=flow_sid,
                flow_alias=alias,
                sender=sender,
                shared=shared,
                policy=self.engager.policy,
                info=info,
                per_second=per_second,
            )
            run_id = secrets.token_hex(6)
            try:
                await self._keep(run_id, made, caller)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            pace = self.engager.throttle.studio_rate
            await deliver(reply, bulk_preview(made, run_id, pace))

        self.engager.tasks.spawn(work(), "bulk:preview")
        return messages.notice_message(":hourglass_flowing_sand:", "Preparing the preview…")

    async def _keep(self, run_id: str, made: Plan, caller: Caller) -> None:
        meta = {
            "flow_sid": made.flow_sid,
            "flow_alias": made.flow_alias or "",
            "flow_name": made.flow_name or "",
            "sender": made.sender,
            "requester": caller.user_id,
            "channel": caller.channel_id,
            "team": caller.team_id,
            "status": "previewed",
            "total": str(len(made.valid)),
        }
        rows = {str(r.number): json.dumps(asdict(r)) for r in made.valid}
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}", meta, PREVIEW_SECONDS))
        if rows:
            await self.state.use(lambda s: s.hset(f"bulk:{run_id}:rows", rows, KEEP_SECONDS))

    # -- controls ----------------------------------------------------------------

    async def _meta(self, run_id: str) -> dict[str, str]:
        return await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}"))

    def _caller(self, meta: dict[str, str]) -> Caller:
        return Caller(meta.get("requester", ""), meta.get("channel", ""), meta.get("team", ""))

    def _progress(self, run_id: str, meta: dict[str, str], outcomes: dict[str, str]) -> Progress:
        counts = {"started": 0, "failed": 0, "unknown": 0, "cancelled": 0}
        for value in outcomes.values():
            kind = json.loads(value).get("outcome", "failed")
            counts[kind if kind in counts else "failed"] += 1
        began = float(meta.get("began") or time.time())
        flow = label(
            meta.get("flow_alias") or None, meta["flow_sid"], meta.get("flow_name") or None
        )
        return Progress(
            run_id,
            flow,
            meta.get("requester", ""),
            int(meta.get("total", "0")),
            status=meta.get("status", "running"),
            elapsed=time.time() - began,
            note=meta.get("note", ""),
            **counts,
        )

    async def start(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        """Start: only the person who asked for the preview; posts the progress message."""
        try:
            meta = await self._meta(run_id)
            if not meta or meta.get("status") != "previewed":
                await deliver(replace_preview, messages.expired())
                return
            if meta["requester"] != caller.user_id:
                await deliver(
                    replace_preview,
                    messages.refused("only the person who asked for the preview can start it"),
                )
                return
            if not await self.state.use(lambda s: s.add(f"bulk:{run_id}:go", "1", KEEP_SECONDS)):
                return  # a double click
            rows = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:rows"))
            begun = {"status": "running", "began": str(time.time())}
            meta.update(begun)
            await self.state.use(lambda s: s.hset(f"bulk:{run_id}", begun, KEEP_SECONDS))
            message = bulk_progress(self._progress(run_id, meta, {}))
            ts = await self._post(meta["channel"], message)
            if ts:
                where = {"ts": ts}
                await self.state.use(lambda s: s.hset(f"bulk:{run_id}", where, KEEP_SECONDS))
            jobs = self._queue(run_id)
            for number in sorted(rows, key=int):
                await jobs.put(number)
            await self.state.use(lambda s: s.hset(ACTIVE, {run_id: "1"}, KEEP_SECONDS))
        except StateUnavailable:
            await deliver(replace_preview, messages.state_unavailable())
            return
        audit.record("bulk_started", caller, detail=f"run {run_id}: {len(rows)} rows")
        await deliver(
            replace_preview, messages.notice_message(":rocket:", f"Started {len(rows)} rows.")
        )
        self.start_worker()

    async def drop(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        """Cancel a preview: nothing was sent."""
        meta = await self._meta(run_id)
        if meta.get("status") == "previewed" and meta.get("requester") == caller.user_id:
            await self.state.use(lambda s: s.hset(f"bulk:{run_id}", {"status": "dropped"}, 60))
        await deliver(replace_preview, messages.cancelled())

    async def control(self, run_id: str, action: str, caller: Caller, notify: Reply) -> None:
        """Pause, Resume or Cancel: the starter or an admin."""
        try:
            meta = await self._meta(run_id)
            if not meta:
                await deliver(notify, messages.expired())
                return
            allowed = caller.user_id == meta.get("requester") or caller.user_id in (
                self.engager.policy.admins
            )
            if not allowed:
                reason = "only the person who started this bulk run, or an admin, can change it"
                await deliver(notify, messages.not_allowed(reason))
                return
            status = {"pause": "paused", "resume": "running", "cancel": "cancelled"}[action]
            if meta.get("status") not in ("running", "paused"):
                return
            note = {"note": f"{action}d by <@{caller.user_id}>".replace("canceld", "cancelled")}
            await self.state.use(
                lambda s: s.hset(f"bulk:{run_id}", {"status": status, **note}, KEEP_SECONDS)
            )
        except StateUnavailable:
            await deliver(notify, messages.state_unavailable())
            return
        audit.record(f"bulk_{action}", caller, detail=f"run {run_id}")
        await self._edit(run_id, force=True)
        if status == "cancelled":
            await self._cancel_rest(run_id)

    # -- the worker ----------------------------------------------------------------

    def _queue(self, run_id: str) -> Jobs:
        if run_id not in self._jobs:
            self._jobs[run_id] = (
                RedisJobs(self.store, self.me, f"bulk:{run_id}:jobs")
                if isinstance(self.store, RedisStore)
                else MemoryJobs()
            )
        return self._jobs[run_id]

    def start_worker(self) -> None:
        """Work the runs in the background (not once this process is stopping)."""
        if self._loop is None and not self._stopping:
            self._loop = asyncio.get_running_loop().create_task(self._work(), name="bulk")

    async def stop(self) -> None:
        """SIGTERM: take no more rows, let those in flight finish. With Redis the run stays
        for the next process; without it, it is paused and says so."""
        self._stopping = True
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.wait({self._loop}, timeout=5)
            self._loop = None
        if self._rows:  # rows still waiting for their turn give it up at once
            await asyncio.wait(set(self._rows), timeout=10)
            for task in set(self._rows):
                task.cancel()
        if isinstance(self.store, RedisStore):
            return
        active = await self.state.use(lambda s: s.hgetall(ACTIVE))
        for run_id in active:
            meta = await self._meta(run_id)
            if meta.get("status") == "running":
                note = "paused: the bot restarted, and without Redis this run lived in its memory"
                await self._set(run_id, {"status": "paused", "note": note})
                await self._edit(run_id, force=True)

    async def _work(self) -> None:
        while not self._stopping:
            try:
                took = await self._round()
            except Exception:
                log.exception("bulk worker round failed")
                took = False
            if not took:
                await asyncio.sleep(0.1)

    async def _round(self) -> bool:
        """Take what jobs there are room for, from every running run; True if any."""
        took = False
        active = await self.state.use(lambda s: s.hgetall(ACTIVE))
        for run_id in active:
            meta = await self._meta(run_id)
            if meta.get("status") not in ("running", "paused", "cancelled"):
                await self._unlist(run_id)
                continue
            if meta.get("status") == "paused":
                continue
            jobs = self._queue(run_id)
            for job_id, body in await jobs.reclaim(RECLAIM_AFTER):
                await self._slots.acquire()
                self._spawn(run_id, jobs, job_id, body)
                took = True
            while not self._slots.locked():
                job = await jobs.take()
                if job is None:
                    break
                await self._slots.acquire()
                self._spawn(run_id, jobs, *job)
                took = True
        return took

    def _spawn(self, run_id: str, jobs: Jobs, job_id: str, body: str) -> None:
        task = asyncio.get_running_loop().create_task(self._row(run_id, jobs, job_id, body))
        self._rows.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._rows.discard(t)
            self._slots.release()

        task.add_done_callback(done)

    async def _row(self, run_id: str, jobs: Jobs, job_id: str, number: str) -> None:
        try:
            if not await self._send_row(run_id, number):
                await jobs.put(number)  # paused: back in the queue, taken again on Resume
            await jobs.ack(job_id)
            await self._edit(run_id)
            await self._maybe_finish(run_id)
        except StateUnavailable:
            log.error(
                "bulk run %s row %s: shared state unavailable; left for later", run_id, number
            )
        except Exception:
            log.exception("bulk run %s row %s failed", run_id, number)

    async def _set(self, run_id: str, fields: dict[str, str]) -> None:
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}", fields, KEEP_SECONDS))

    async def _unlist(self, run_id: str) -> None:
        await self.state.use(lambda s: s.hdel(ACTIVE, run_id))

    async def _claim(self, run_id: str, number: str, who: str) -> bool:
        """Mark row ``number`` as being sent (or settled) before anything goes out: the
        claim is atomic, so a row is claimed once, whoever tries."""
        key = f"bulk:{run_id}:sending:{number}"
        return await self.state.use(lambda s: s.add(key, who, KEEP_SECONDS))

    async def _record(self, run_id: str, number: str, result: dict[str, Any]) -> None:
        value = json.dumps(result)
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}:out", {number: value}, KEEP_SECONDS))

    async def _send_row(self, run_id: str, number: str) -> bool:
        """Send row ``number`` once, or settle it; False if the run is paused (not sent)."""
        if await self.state.use(lambda s: s.hget(f"bulk:{run_id}:out", number)) is not None:
            return True  # already settled
        meta = await self._meta(run_id)
        if meta.get("status") == "running":  # wait for the row's turn, singles first
            await self.engager.throttle.pace(bulk=True)
            meta = await self._meta(run_id)  # paused meanwhile? then not sent
        if meta.get("status") == "paused" or self._stopping:
            return False
        if not await self._claim(run_id, number, self.me):
            # Claimed by a process that stopped before saying what happened: it may
            # have reached Twilio, so it is never sent again.
            gone = "the process sending it stopped before Twilio answered; not sent again"
            await self._record(run_id, number, {"outcome": "unknown", "message": gone})
            return True
        if meta.get("status") == "cancelled":
            await self._record(run_id, number, {"outcome": "cancelled"})
            return True
        stored = await self.state.use(lambda s: s.hget(f"bulk:{run_id}:rows", number))
        assert stored is not None  # every job is a row kept with the run
        row = Row(**json.loads(stored))
        made = Plan(
            meta["flow_sid"],
            meta.get("flow_alias") or None,
            meta.get("flow_name") or None,
            meta["sender"],
        )
        outcome = await self.engager.start_now(
            made.command(row), self._caller(meta), bulk=True, paced=True
        )
        await self._record(run_id, number, _result(outcome))
        return True

    async def _cancel_rest(self, run_id: str) -> None:
        """Cancelled: every row not yet claimed is settled as cancelled (never sent)."""
        rows = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:rows"))
        for number in rows:
            if await self._claim(run_id, number, "cancel"):
                await self._record(run_id, number, {"outcome": "cancelled"})
        await self._maybe_finish(run_id)

    # -- showing -------------------------------------------------------------------

    async def _post(self, channel: str, message: Message, **extra: Any) -> str | None:
        if self.slack is None:
            return None
        try:
            answer = await self.slack.chat_postMessage(
                channel=channel, text=message["text"], blocks=message["blocks"], **extra
            )
        except (SlackApiError, OSError) as exc:
            log.warning("bulk progress not posted: %s", type(exc).__name__)
            return None
        return str(answer.get("ts") or "") or None

    async def _edit(self, run_id: str, *, force: bool = False) -> None:
        """Edit the progress message, at most every EDIT_SECONDS (across processes)."""
        if not force and not await self.state.use(
            lambda s: s.add(f"bulk:{run_id}:edited", "1", EDIT_SECONDS)
        ):
            return
        meta = await self._meta(run_id)
        if not meta.get("ts") or self.slack is None:
            return
        out = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:out"))
        message = bulk_progress(self._progress(run_id, meta, out))
        try:
            await self.slack.chat_update(
                channel=meta["channel"],
                ts=meta["ts"],
                text=message["text"],
                blocks=message["blocks"],
            )
        except (SlackApiError, OSError) as exc:
            log.warning("bulk progress not edited: %s", type(exc).__name__)

    async def _maybe_finish(self, run_id: str) -> None:
        meta = await self._meta(run_id)
        settled = await self.state.use(lambda s: s.hlen(f"bulk:{run_id}:out"))
        if settled < int(meta.get("total", "0")):
            return
        if not await self.state.use(lambda s: s.add(f"bulk:{run_id}:finished", "1", KEEP_SECONDS)):
            return  # another process finished it
        out = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:out"))
        final = "cancelled" if meta.get("status") == "cancelled" else "done"
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}", {"status": final}, KEEP_SECONDS))
        await self.state.use(lambda s: s.hdel(ACTIVE, run_id))
        progress = self._progress(run_id, {**meta, "status": final}, out)
        audit.record(
            "bulk_" + final,
            self._caller(meta),
            detail=(
                f"run {run_id}, flow {meta['flow_sid']}: {progress.started} started,"
                f" {progress.failed} failed, {progress.unknown} unknown,"
                f" {progress.cancelled} cancelled of {progress.total}"
            ),
        )
        await self._edit(run_id, force=True)
        await self._upload_results(run_id, meta, out)

    async def _upload_results(self, run_id: str, meta: dict[str, str], out: dict[str, str]) -> None:
        rows = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:rows"))
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["row", "contact", "outcome", "run_sid", "code", "message"])
        for number in sorted(out, key=int):
            result = json.loads(out[number])
            contact = json.loads(rows[number])["to"] if number in rows else ""
            writer.writerow(
                [
                    number,
                    contact,
                    result.get("outcome"),
                    result.get("sid", ""),
                    result.get("code", ""),
                    result.get("message", ""),
                ]
            )
        if self.slack is None or not meta.get("ts"):
            return
        try:
            await self.slack.files_upload_v2(
                channel=meta["channel"],
                thread_ts=meta["ts"],
                content=buffer.getvalue(),
                filename=f"bulk-{run_id}.csv",
                title=f"Results of bulk run {run_id}",
                initial_comment=f"<@{meta.get('requester', '')}> the results, one row each.",
            )
        except (SlackApiError, OSError) as exc:
            log.warning("bulk results not uploaded: %s", type(exc).__name__)


def _result(outcome: Outcome | Message) -> dict[str, Any]:
    """A row's outcome for the results file."""
    if isinstance(outcome, dict):
        return {"outcome": "failed", "message": str(outcome.get("text", ""))}
    if outcome.engagement is not None:
        return {"outcome": "started", "sid": outcome.engagement.sid}
    error = outcome.error
    assert error is not None
    kind = "unknown" if error.outcome_unknown else "failed"
    message = error.message
    if is_already_active(error):
        message = (
            "already active: " + message + (f" ({outcome.active.sid})" if outcome.active else "")
        )
    return {"outcome": kind, "code": error.code or "", "message": message}
