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
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.bulk_plan import Ends, Progress, ends_from
from bot.domain.spreadsheet import csv_writer
from bot.domain.text import label
from bot.engage.bulk.state import BulkState, RowResult, RunMeta
from bot.runs.records import Records, RunRecord
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
RESULTS_PAGE = 1000  # rows of the results file read and written at a time


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
    counts: dict[str, int],
    ends: Ends | None = None,
    waiting: tuple[int, float | None] = (0, None),
) -> Progress:
    """The run as its progress message shows it, from its counts (``BulkState.counts``)."""
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


def results_row(
    number: str, row: str | None, result: RowResult, record: RunRecord | None, fields: list[str]
) -> tuple[object, ...]:
    """One row of the results CSV: how its start went, then (from its record) how its
    run ended, when, after how long, and one column per answer collected."""
    contact = json.loads(row)["to"] if row else ""
    answers = record.answers if record else {}
    ended = (
        datetime.fromtimestamp(record.ended_at, UTC).isoformat(timespec="seconds")
        if record and record.ended_at
        else ""
    )
    return (
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

    async def all_ended(self, run_id: str) -> bool:
        """Whether every started run of the run has ended (or is no longer followed): the
        results file can then be final. From the counts, not the rows."""
        if self.records is None:
            return False
        started = (await self.state.counts(run_id))["started"]
        return await self.state.run_ends_count(run_id) >= started

    async def write_results(self, run_id: str, path: Path) -> int:
        """The results file as things stand, written to ``path`` a page of rows at a
        time (never whole in memory); how many rows. Two passes over the records: the
        answers' columns, then the rows."""
        numbers = [str(n) for n in await self.state.numbers(run_id)]
        pages = [numbers[i : i + RESULTS_PAGE] for i in range(0, len(numbers), RESULTS_PAGE)]
        fields: dict[str, None] = {}
        for page in pages:
            for record in (await self._records(run_id, page)).values():
                fields.update(dict.fromkeys(record.answers))
        columns = list(fields)
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv_writer(out)
            writer.writerow((*RESULTS_HEADER, *STATUS_HEADER, *columns))
            for page in pages:
                by_row = await self._records(run_id, page)
                for number, row, outcome in await self.state.page(run_id, page):
                    if outcome is not None:
                        result = RowResult.model_validate_json(outcome)
                        kept = by_row.get(number)
                        writer.writerow(results_row(number, row, result, kept, columns))
        return len(numbers)

    async def _records(self, run_id: str, page: list[str]) -> dict[str, RunRecord]:
        """The records of rows ``page`` (numbers, in order), by row."""
        if self.records is None or not page:
            return {}
        found = await self.records.of_bulk(run_id, float(page[0]), float(page[-1]))
        return {r.row: r for r in found if r.row}

    async def ends(self, run_id: str, counts: dict[str, int]) -> Ends | None:
        """The second tally, once there are records to count."""
        if self.records is None or not counts["started"]:
            return None
        every = self.checked_every() if self.checked_every else 0.0
        return ends_from(await self.state.end_counts(run_id), counts["started"], every)

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
        """The progress message: a few counts read, however many rows (O(1))."""
        counts = await self.state.counts(run_id)
        ends = await self.ends(run_id, counts)
        waiting = await self.waiting(run_id) if self.waiting is not None else (0, None)
        return bulk_progress(progress_of(run_id, meta, counts, ends, waiting))

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
        """The results file, written from the run's state (kept 7 days) to a temporary
        file and uploaded from it."""
        final = " (final: every run followed to its end)" if meta.final else ""
        title = f"Results of bulk run {run_id}{final}"
        if meta.upload_unsure and await self._landed(meta, title):
            log.info("bulk run %s: the results file had reached Slack after all", run_id)
            return  # never a second copy of a file Slack took
        with tempfile.TemporaryDirectory() as folder:
            name = f"bulk-{run_id}{'-final' if meta.final else ''}.csv"
            path = Path(folder) / name
            await self.write_results(run_id, path)
            arguments: dict[str, object] = {
                "channel": meta.channel,
                "file": str(path),
                "filename": name,
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
        progress = progress_of(run_id, meta, await self.state.counts(run_id))
        text = undelivered_note(progress, meta.channel, missing, round(FINAL_DEADLINE / 60))
        log.error("bulk run %s: gave up delivering %s", run_id, ", ".join(missing))
        try:
            await self._call(
                "note to the starter", "chat_postMessage", channel=meta.requester, text=text
            )
        except Undelivered:
            log.error("bulk run %s: the starter could not be told either", run_id)
