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

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.caller import Caller
from bot.domain.command import ReportCommand
from bot.domain.errors import StateUnavailable
from bot.domain.policy import Policy, read_refusal
from bot.domain.spreadsheet import csv_text
from bot.domain.summary import Summary
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

TOP_ANSWERS = 5
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


def _most(counter: Counter[str], limit: int | None = None) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit])


def summarise(records: Iterable[RunRecord]) -> Summary:
    """Counts by state, the funnel of end widgets, top answers, failures by code. Pure."""
    states: Counter[str] = Counter()
    funnel: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    fields: dict[str, Counter[str]] = {}
    total = answered = 0
    for record in records:
        total += 1
        states[record.state] += 1
        if record.state in ("ended", "failed"):
            funnel[record.widget or "?"] += 1
        if record.state in ("not_started", "unknown") and record.code:
            failures[record.code] += 1
        found = record.answers
        if found:
            answered += 1
        for field, value in found.items():
            fields.setdefault(field, Counter())[value] += 1
    answers = tuple((field, _most(counter, TOP_ANSWERS)) for field, counter in fields.items())
    return Summary(total, _most(states), _most(funnel), answers, _most(failures), answered)


def records_csv(records: Iterable[RunRecord], names: Mapping[str, str]) -> str:
    """Every record as a CSV row (answers one column each), safe for spreadsheets."""
    kept = list(records)
    fields: list[str] = []
    for record in kept:
        fields += [k for k in record.answers if k not in fields]

    def when(epoch: float) -> str:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else ""

    rows = [
        (
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
        for r in kept
    ]
    return csv_text((*RECORD_COLUMNS, *fields), rows)


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

    def _readable(self, flow_sid: str, caller: Caller) -> bool:
        name = self.names.get(flow_sid)
        return read_refusal(self.policy, flow_sid, name, caller.user_id, caller.channel_id) is None

    async def report(self, command: ReportCommand, caller: Caller, reply: Reply) -> Message:
        """The rules and the limit now (the ack); the report follows through ``reply``."""
        if command.flow_sids:
            _, refused = await self.runs.readable(command.flow_sids, caller, "report")
        else:  # every flow the asker may read: which, is decided per record below
            refused = await self.runs.limited(caller, "report")
        if refused:
            return refused

        async def work() -> None:
            try:
                found = await self.records.in_window(time.time() - command.since_seconds)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            flows = set(command.flow_sids)
            kept = [
                r
                for r in found
                if (r.flow_sid in flows if flows else True) and self._readable(r.flow_sid, caller)
            ]
            label = command.flow_alias or (
                self.names.get(command.flow_sids[0], command.flow_sids[0])
                if command.flow_sids
                else "every flow you may read"
            )
            await deliver(reply, report_message(summarise(kept), label, command.since_seconds))
            if command.csv:
                await self._send_csv(kept, caller, reply)

        self.tasks.spawn(work(), f"report:{caller.user_id}")
        return messages.notice_message(":bar_chart:", "Counting the runs…")

    async def _send_csv(self, kept: list[RunRecord], caller: Caller, reply: Reply) -> None:
        """Every record of the window, to the asker directly (a DM with the bot)."""
        if self.slack is None:
            return
        try:  # a file is shared in a conversation: the bot's DM with the asker
            await self.slack.files_upload_v2(
                channel=await open_dm(self.slack, caller.user_id),
                content=records_csv(kept, self.names),
                filename="studio-engage-report.csv",
                title=f"{len(kept)} run records",
            )
        except SlackApiError as exc:
            log.info("report file not sent: %s", slack_refusal(exc))
            await deliver(
                reply,
                messages.notice_message(":warning:", "Slack did not take the report's file."),
            )

    async def stats(self, flow_sids: Iterable[str], days: float = 7) -> dict[str, Summary]:
        """Per flow, the last ``days``' summary (cached a minute: the Home tab asks often)."""
        now = time.time()
        if self._stats is None or now - self._stats[0] > STATS_SECONDS:
            try:
                found = await self.records.in_window(now - days * 86400)
            except StateUnavailable:
                found = []
            by_flow: dict[str, list[RunRecord]] = {}
            for record in found:
                by_flow.setdefault(record.flow_sid, []).append(record)
            self._stats = (now, {sid: summarise(rs) for sid, rs in by_flow.items()})
        cached = self._stats[1]
        return {sid: cached.get(sid, Summary(0)) for sid in flow_sids}
