"""A bulk run as the channel sees it: the progress message, edited as rows settle, and at
the end the results file in its thread.

Slack answers 429 (with ``Retry-After``) when a channel or a method is busy. An edit
on the way may be skipped (the next one shows more), but the *last* state of the
progress message and the results file must arrive: they are kept in the run's state
(``shown_final``, ``uploaded``, the results file itself) and tried again, after
``Retry-After`` or a growing pause, by whichever process works bulk runs, for up to
``FINAL_DEADLINE`` seconds; then the starter is told, directly, what did not arrive.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.bulk_plan import Ends, Progress, ends_of
from bot.domain.spreadsheet import csv_text
from bot.domain.text import label
from bot.engage.bulk.state import BulkState, RowResult, RunMeta, tally
from bot.runs.records import FINAL, Records, RunRecord
from bot.slack.api_errors import slack_refusal, slack_retry_after
from bot.slack.messages import Message
from bot.slack.messages.bulk import bulk_progress, undelivered_note
from bot.slack.pace import SlackBusy, within

log = logging.getLogger(__name__)

EDIT_SECONDS = 2.0  # at most one edit of a progress message this often, across processes
FINAL_DEADLINE = 15 * 60.0  # how long the final state and the results file are tried
MAX_PAUSE = 60.0  # between attempts at them, unless Slack asks for longer
POSTING_SECONDS = 30.0  # one process posts a missing progress message at a time
RESULTS_HEADER = ("row", "contact", "outcome", "run_sid", "code", "message")
STATUS_HEADER = ("status", "ended_at", "duration_s")


class Undelivered(Exception):
    """Slack did not take a message or file; ``retry_after`` is what it asked, if anything.
    ``maybe_taken``: the call failed without Slack's answer (the network), so Slack may
    have taken it all the same."""

    def __init__(self, what: str, retry_after: float | None, *, maybe_taken: bool = False) -> None:
        super().__init__(what)
        self.retry_after = retry_after
        self.maybe_taken = maybe_taken


def progress_of(
    run_id: str,
    meta: RunMeta,
    outcomes: dict[str, RowResult],
    ends: Ends | None = None,
    waiting: tuple[int, float | None] = (0, None),
) -> Progress:
    counts = tally(outcomes)
    status = meta.status if meta.status in ("running", "paused", "cancelled", "done") else "running"
    return Progress(
        run_id,
        label(meta.flow_alias or None, meta.flow_sid, meta.flow_name or None),
        meta.requester,
        meta.total,
        status=status,
        elapsed=time.time() - (meta.began or time.time()),
        note=meta.note,
        ends=ends,
        waiting=waiting[0],
        next_opens=waiting[1],
        **counts,
    )


def results_file(
    rows: dict[str, str], outcomes: dict[str, RowResult], records: dict[str, RunRecord]
) -> str:
    """The results CSV, one row each, safe to open in a spreadsheet: how each start went,
    then (from its record) how its run ended, when, after how long, and one column per
    answer collected."""
    fields: list[str] = []
    for kept in records.values():
        fields += [k for k in kept.answers if k not in fields]
    lines = []
    for number in sorted(outcomes, key=int):
        result = outcomes[number]
        contact = json.loads(rows[number])["to"] if number in rows else ""
        record = records.get(number)
        answers = record.answers if record else {}
        ended = (
            datetime.fromtimestamp(record.ended_at, UTC).isoformat(timespec="seconds")
            if record and record.ended_at
            else ""
        )
        lines.append(
            (
                number,
                contact,
                result.outcome,
                result.sid,
                result.code,
                result.message,
                record.state if record and result.outcome == "started" else "",
                ended,
                record.duration_s if record and record.ended_at else "",
                *(answers.get(k, "") for k in fields),
            )
        )
    return csv_text((*RESULTS_HEADER, *STATUS_HEADER, *fields), lines)


class Reporter:
    def __init__(
        self,
        state: BulkState,
        slack: AsyncWebClient | None,
        records: Records | None = None,
        checked_every: Callable[[], float] | None = None,
    ) -> None:
        self.state = state
        self.slack = slack
        self.records = records  # how each started run ended (None: not kept)
        self.checked_every = checked_every  # seconds between checks of an active run
        # rows waiting for their time (how many, the first due), as the queue keeps them
        self.waiting: Callable[[str], Awaitable[tuple[int, float | None]]] | None = None

    async def results(self, run_id: str) -> tuple[str, bool]:
        """The results file as things stand, and whether every started run has ended."""
        rows = await self.state.rows(run_id)
        outcomes = await self.state.outcomes(run_id)
        records = (
            {r.row: r for r in await self.records.of_bulk(run_id) if r.row}
            if self.records is not None
            else {}
        )
        started = [n for n, o in outcomes.items() if o.outcome == "started"]
        done = all(n in records and records[n].state in FINAL for n in started)
        return results_file(rows, outcomes, records), done and self.records is not None

    async def ends(self, run_id: str, outcomes: dict[str, RowResult]) -> Ends | None:
        """The second tally, once there are records to count."""
        if self.records is None:
            return None
        started = tally(outcomes)["started"]
        if not started:
            return None
        every = self.checked_every() if self.checked_every else 0.0
        return ends_of(await self.state.run_ends(run_id), started, every)

    async def _call(self, what: str, method: str, **arguments: object) -> dict[str, object]:
        """One Web API call; raises ``Undelivered`` (with Slack's Retry-After, if any)."""
        if self.slack is None:
            raise Undelivered(what, None)
        try:
            answer = await getattr(self.slack, method)(**arguments)
        except SlackBusy as exc:  # Slack's tier is busy: skipped, the next edit shows more
            raise Undelivered(what, exc.wait) from None
        except SlackApiError as exc:
            log.warning("bulk %s: Slack refused (%s)", what, slack_refusal(exc))
            raise Undelivered(what, slack_retry_after(exc)) from None
        except SlackRequestError as exc:  # refused before Slack took anything
            log.warning("bulk %s failed: %s", what, exc)
            raise Undelivered(what, None) from None
        except Exception as exc:  # noqa: BLE001 - the network: Slack may have taken it
            log.warning("bulk %s failed: %s", what, type(exc).__name__)
            raise Undelivered(what, None, maybe_taken=True) from None
        return dict(answer.data) if isinstance(answer.data, dict) else {}

    async def _message(self, run_id: str, meta: RunMeta) -> Message:
        outcomes = await self.state.outcomes(run_id)
        ends = await self.ends(run_id, outcomes)
        waiting = await self.waiting(run_id) if self.waiting is not None else (0, None)
        return bulk_progress(progress_of(run_id, meta, outcomes, ends, waiting))

    async def post(self, run_id: str, meta: RunMeta) -> str:
        """Post the progress message if it is not there yet (one process at a time);
        its ts, or "" if it is not there. Raises ``Undelivered``."""
        if meta.ts:
            return meta.ts
        if not await self.state.claim_once(run_id, "posting", POSTING_SECONDS):
            return ""
        message = await self._message(run_id, meta)
        try:
            answer = await self._call(
                "progress message",
                "chat_postMessage",
                channel=meta.channel,
                text=message["text"],
                blocks=message["blocks"],
            )
        except Undelivered:
            await self.state.release(run_id, "posting")
            raise
        ts = str(answer.get("ts") or "")
        if ts:
            await self.state.update(run_id, ts=ts)
        return ts

    async def edit(self, run_id: str, *, force: bool = False) -> None:
        """Show the run as it is now, at most every ``EDIT_SECONDS`` unless ``force``;
        a refused edit is skipped (the next one shows more; the final one is kept)."""
        if not force and not await self.state.claim_once(run_id, "edited", EDIT_SECONDS):
            return
        meta = await self.state.meta(run_id)
        if meta is None:
            return
        try:
            with within(None if force else EDIT_SECONDS):  # a row never waits on Slack
                await self._show(run_id, meta)
        except Undelivered as exc:
            if wait := exc.retry_after:  # nobody edits it before Slack said to
                await self.state.hold(run_id, "edited", wait)

    async def _show(self, run_id: str, meta: RunMeta) -> None:
        ts = await self.post(run_id, meta)
        if not ts:
            raise Undelivered("progress message", None)
        if not meta.ts:
            return  # posted just now, as the run is now
        message = await self._message(run_id, meta)
        await self._call(
            "progress edit",
            "chat_update",
            channel=meta.channel,
            ts=ts,
            text=message["text"],
            blocks=message["blocks"],
        )

    async def deliver_final(self, run_id: str) -> bool:
        """Try to get the final progress message and the results file to Slack; True when
        nothing is left to deliver (they arrived, or the starter was told they did not)."""
        meta = await self.state.meta(run_id)
        if meta is None:
            return True
        if time.time() < meta.deliver_after:
            return False
        waits: list[float] = []
        try:
            if not meta.shown_final:
                await self._show(run_id, meta)
                await self.state.update(run_id, shown_final=True)
                meta = await self.state.meta(run_id) or meta  # with its ts, if just posted
        except Undelivered as exc:
            waits.append(exc.retry_after or 0.0)
        late = time.time() - meta.finished_at > FINAL_DEADLINE / 2
        if not meta.uploaded and (meta.ts or late):  # in the message's thread if it can be
            try:
                await self._upload(run_id, meta)
                await self.state.update(run_id, uploaded=True)
                meta = meta.model_copy(update={"uploaded": True})
            except Undelivered as exc:
                waits.append(exc.retry_after or 0.0)
                if exc.maybe_taken:  # before another try, look whether it landed
                    await self.state.update(run_id, upload_unsure=True)
        if meta.shown_final and meta.uploaded:
            return True
        tries = meta.deliver_tries + 1
        if time.time() - meta.finished_at > FINAL_DEADLINE:
            await self._tell_starter(run_id, meta)
            return True
        pause = max([min(MAX_PAUSE, 2.0**tries), *waits])
        await self.state.update(run_id, deliver_tries=tries, deliver_after=time.time() + pause)
        return False

    async def _upload(self, run_id: str, meta: RunMeta) -> None:
        content = await self.state.results(run_id)
        if content is None:  # kept at the end; gone only if the run's state expired
            log.error("bulk run %s: the results file was not kept", run_id)
            return
        final = " (final: every run followed to its end)" if meta.final else ""
        title = f"Results of bulk run {run_id}{final}"
        if meta.upload_unsure and await self._landed(meta, title):
            log.info("bulk run %s: the results file had reached Slack after all", run_id)
            return  # never a second copy of a file Slack took
        arguments: dict[str, object] = {
            "channel": meta.channel,
            "content": content,
            "filename": f"bulk-{run_id}{'-final' if meta.final else ''}.csv",
            "title": title,
            "initial_comment": f"<@{meta.requester}> the results{final}, one row each.",
        }
        if meta.ts:
            arguments["thread_ts"] = meta.ts
        await self._call("results file", "files_upload_v2", **arguments)

    async def _landed(self, meta: RunMeta, title: str) -> bool:
        """Whether a file titled ``title`` is in the run's channel already (an upload
        whose answer was lost). Raises ``Undelivered`` if Slack cannot say."""
        since = int(meta.finished_at or meta.began or 0) - 60
        answer = await self._call(
            "results file check", "files_list", channel=meta.channel, ts_from=since, count=100
        )
        files = answer.get("files")
        return isinstance(files, list) and any(
            isinstance(f, dict) and f.get("title") == title for f in files
        )

    async def _tell_starter(self, run_id: str, meta: RunMeta) -> None:
        missing = [
            what
            for what, done in (
                ("the final progress message", meta.shown_final),
                ("the results file", meta.uploaded),
            )
            if not done
        ]
        outcomes = await self.state.outcomes(run_id)
        progress = progress_of(run_id, meta, outcomes)
        text = undelivered_note(progress, meta.channel, missing, round(FINAL_DEADLINE / 60))
        log.error("bulk run %s: gave up delivering %s", run_id, ", ".join(missing))
        try:
            await self._call(
                "note to the starter", "chat_postMessage", channel=meta.requester, text=text
            )
        except Undelivered:
            log.error("bulk run %s: the starter could not be told either", run_id)
