"""``/engage report [flow] [--since 7d] [--csv]``: what the runs the bot started did.

Only the asker sees it. For the runs started in the window, of the flows the asker
may read (the same rules as ``/engage status``: allowed users and channels, each
flow's own rules, admins for flows not configured here): counts by final state, a
funnel by the widget runs ended at, the most frequent answers per collected field,
and failures by Twilio's error code. ``--csv`` sends every record of the window to the
asker, directly, as a file. Contacts are masked, as the audit keeps them.

The Home tab's per-flow counts for the last 7 days come from the same summary.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.caller import Caller
from bot.domain.command import ReportCommand
from bot.domain.errors import StateUnavailable
from bot.domain.policy import Policy, read_refusal
from bot.domain.spreadsheet import csv_writer
from bot.domain.summary import Summary, summary_of, whole_counts
from bot.infra.tasks import Tasks
from bot.runs.records import Records, RunRecord
from bot.slack import messages
from bot.slack.api_errors import slack_refusal
from bot.slack.messages import Message
from bot.slack.messages.report import report_message
from bot.slack.post import open_dm
from bot.slack.reply import Reply, deliver
from bot.slack.run_actions import RunActions

log = logging.getLogger(__name__)

WHOLE_DAYS = 2 * 86400.0  # a window this long or longer is counted by whole UTC days
STATS_SECONDS = 60.0  # the Home tab's counts are read again at most this often
RECORD_COLUMNS = (
    "started_at",
    "flow",
    "run_sid",
    "contact",
    "starter",
    "channel",
    "bulk_run",
    "row",
    "state",
    "code",
    "widget",
    "ended_at",
    "duration_s",
)


def summarise(records: Iterable[RunRecord]) -> Summary:
    """A few records' summary (a window under ``WHOLE_DAYS``), counted as their days'
    counters count them. Pure."""
    counts: Counter[str] = Counter()
    for record in records:
        counts.update(whole_counts(record.state, record.code, record.widget, record.answers))
    return summary_of([{name: str(n) for name, n in counts.items()}])


def csv_header(fields: Iterable[str]) -> tuple[str, ...]:
    return (*RECORD_COLUMNS, *fields)


def csv_row(r: RunRecord, names: Mapping[str, str], fields: Iterable[str]) -> tuple[object, ...]:
    """One record as a row of the report's CSV (answers one column each)."""

    def when(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else ""

    return (
        when(r.started_at),
        names.get(r.flow_sid, r.flow_sid),
        r.sid,
        r.contact,
        r.starter,
        r.channel,
        r.bulk_run,
        r.row,
        r.state,
        r.code,
        r.widget,
        when(r.ended_at),
        r.duration_s if r.ended_at else "",
        *(r.answers.get(k, "") for k in fields),
    )


class Reports:
    def __init__(
        self,
        records: Records,
        runs: RunActions,
        *,
        policy: Policy,
        tasks: Tasks,
        slack: AsyncWebClient | None,
        names: Mapping[str, str],
    ) -> None:
        self.records = records
        self.runs = runs  # the access rules and the per-user limit of looks at runs
        self.policy = policy
        self.tasks = tasks
        self.slack = slack
        self.names = dict(names)  # flow SID -> its alias (configured flows)
        self._stats: tuple[float, dict[str, Summary]] | None = None
        self._reading: asyncio.Future[dict[str, Summary]] | None = None  # one at a time
        self.stats_reads = 0  # how many times the Home tab's counts were read

    def _readable(self, flow_sid: str, caller: Caller) -> bool:
        name = self.names.get(flow_sid)
        return read_refusal(self.policy, flow_sid, name, caller.user_id, caller.channel_id) is None

    async def report(self, command: ReportCommand, caller: Caller, reply: Reply) -> Message:
        """The rules and the limit now (the ack); the report follows through ``reply``."""
        if command.flow_sids:
            _, refused = await self.runs.readable(command.flow_sids, caller, "report")
        else:  # every flow the asker may read: which, is decided per flow below
            refused = await self.runs.limited(caller, "report")
        if refused:
            return refused

        async def work() -> None:
            label = command.flow_alias or (
                self.names.get(command.flow_sids[0], command.flow_sids[0])
                if command.flow_sids
                else "every flow you may read"
            )
            now = time.time()
            since = now - command.since_seconds
            try:
                flows = await self._flows(command, caller)
                if command.since_seconds >= WHOLE_DAYS:  # the days' counters
                    summary = await self.records.summary(flows, since, now)
                    from_day = datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%d")
                else:  # a day or two: its records
                    found = await self.records.in_window(since, now)
                    summary, from_day = summarise(r for r in found if r.flow_sid in flows), ""
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            message = report_message(summary, label, command.since_seconds, from_day)
            await deliver(reply, message)
            if command.csv:
                await self._send_csv(set(flows), since, now, caller, reply)

        self.tasks.spawn(work(), f"report:{caller.user_id}")
        return messages.notice_message(":bar_chart:", "Counting the runs…")

    async def _flows(self, command: ReportCommand, caller: Caller) -> list[str]:
        """The flows a report counts: the one named, or every flow with runs kept that
        the asker may read."""
        if command.flow_sids:
            return list(command.flow_sids)
        return [sid for sid in await self.records.flows() if self._readable(sid, caller)]

    async def _send_csv(
        self, flows: set[str], since: float, until: float, caller: Caller, reply: Reply
    ) -> None:
        """Every record of the window, to the asker directly (a DM with the bot), written
        page by page to a temporary file and uploaded from it: a year of records in the
        memory of one page."""
        if self.slack is None:
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "studio-engage-report.csv"
            try:
                count = await self._write_csv(path, flows, since, until)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            try:  # a file is shared in a conversation: the bot's DM with the asker
                await self.slack.files_upload_v2(
                    channel=await open_dm(self.slack, caller.user_id),
                    file=str(path),
                    filename=path.name,
                    title=f"{count} run records",
                )
            except SlackApiError as exc:
                log.info("report file not sent: %s", slack_refusal(exc))
                await deliver(
                    reply,
                    messages.notice_message(":warning:", "Slack did not take the report's file."),
                )

    async def _write_csv(self, path: Path, flows: set[str], since: float, until: float) -> int:
        """Two passes over the window's records, a page at a time: the answers' columns,
        then the rows. How many records were written."""
        fields: dict[str, None] = {}
        async for page in self.records.pages(since, until):
            for record in page:
                if record.flow_sid in flows:
                    fields.update(dict.fromkeys(record.answers))
        count = 0
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv_writer(out)
            writer.writerow(csv_header(fields))
            async for page in self.records.pages(since, until):
                kept = [r for r in page if r.flow_sid in flows]
                writer.writerows(csv_row(r, self.names, fields) for r in kept)
                count += len(kept)
        return count

    async def stats(self, flow_sids: Iterable[str], days: float = 7) -> dict[str, Summary]:
        """Per flow, the last ``days``' summary, from the days' counters (kept a minute:
        the Home tab asks often); Home tabs opened at once share one reading."""
        now, sids = time.time(), list(flow_sids)
        cached = self._stats
        if cached is None or now - cached[0] > STATS_SECONDS or not set(sids) <= set(cached[1]):
            if self._reading is None or self._reading.done():
                self._reading = asyncio.ensure_future(self._read_stats(sids, days, now))
            try:
                cached = self._stats = (now, await asyncio.shield(self._reading))
            except StateUnavailable:
                return {sid: Summary(0) for sid in sids}
        return {sid: cached[1].get(sid, Summary(0)) for sid in sids}

    async def _read_stats(self, sids: list[str], days: float, now: float) -> dict[str, Summary]:
        summaries = await asyncio.gather(
            *(self.records.summary([sid], now - days * 86400, now) for sid in sids)
        )
        self.stats_reads += 1
        return dict(zip(sids, summaries, strict=True))
