"""The preview of a bulk run, only to whoever asked: what would be sent, what would not
and why, from a command's list, a message's numbers or a CSV file shared in Slack.
Nothing is sent; the run is kept for its Start button (``PREVIEW_SECONDS``)."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from bot.domain.bulk_input import Row, row_for
from bot.domain.bulk_plan import plan
from bot.domain.caller import Caller
from bot.domain.command import BulkCommand, Defaults
from bot.domain.contact_clock import ContactClock, When
from bot.domain.errors import CsvError, SlackFileError, StateUnavailable, TooManyRows
from bot.domain.grammar import default_flow, flow_in_text
from bot.domain.policy import Policy
from bot.engage.bulk.state import BulkState
from bot.engage.consent import Consent
from bot.engage.throttle import Throttle
from bot.infra import audit
from bot.infra.tasks import Tasks
from bot.slack import messages
from bot.slack.bulk.controls import may_start
from bot.slack.engage import Admission
from bot.slack.files import CsvFiles
from bot.slack.messages.bulk import bulk_preview, source_line
from bot.slack.reply import Reply, deliver
from bot.studio.catalog import FlowCatalog

WHICH_FLOW = "which flow? Name it in the message (e.g. survey) or set STUDIO_FLOW_SID"


class Previews:
    def __init__(
        self,
        state: BulkState,
        defaults: Defaults,
        *,
        policy: Policy,
        throttle: Throttle,
        tasks: Tasks,
        catalog: FlowCatalog | None,
        bulk_users: frozenset[str] | None,
        max_rows: int,
        files: CsvFiles | None,
        clock: ContactClock | None = None,
        max_days: float = 30.0,
        consent: Consent,
    ) -> None:
        self.consent = consent  # the opt-out list and the caps, as every start checks them
        self.clock = clock  # quiet hours: which rows would wait for their window
        self.max_days = max_days  # SCHEDULE_MAX_DAYS, for a run started --at a time
        self.policy = policy
        self.throttle = throttle
        self.tasks = tasks
        self.catalog = catalog
        self.state = state
        self.defaults = defaults
        self.bulk_users = bulk_users
        self.max_rows = max_rows
        self.files = files

    def _refusal(self, caller: Caller, flow_sid: str, alias: str | None) -> Admission | None:
        if not self.tasks.accepting:
            return Admission(messages.shutting_down())
        if reason := may_start(self.policy, self.bulk_users, caller, flow_sid, alias):
            audit.record("refused", caller, detail=f"bulk: {reason}")
            return Admission(messages.refused(reason))
        return None

    def now(self) -> float:
        return self.clock.now() if self.clock is not None else time.time()

    def _sender(self, flow_sid: str) -> str:
        return self.defaults.flow_senders.get(flow_sid) or self.defaults.sender or ""

    async def from_command(self, command: BulkCommand, caller: Caller, reply: Reply) -> Admission:
        """``/engage survey +1… +1…``: the preview follows through ``reply``."""
        return await self.preview(
            command.rows(self.defaults.region),
            command.flow_sid,
            command.flow_alias,
            command.sender,
            command.parameters,
            caller,
            reply,
            when=command.when,
        )

    async def from_numbers(self, numbers: list[str], caller: Caller, reply: Reply) -> Admission:
        """The message shortcut on a message with several numbers: the default flow."""
        found = default_flow(self.defaults)
        if found is None:
            return Admission(messages.refused(WHICH_FLOW))
        sid, alias = found
        rows = [row_for(i, n, self.defaults.region, {}) for i, n in enumerate(numbers, 1)]
        return await self.preview(rows, sid, alias, self._sender(sid), {}, caller, reply)

    async def from_file(
        self, file_ids: list[str], text: str, caller: Caller, reply: Reply
    ) -> Admission:
        """The message shortcut on a message with a CSV file: who may start a bulk run is
        checked first, then the file is asked of Slack by its ID and read whole (the bot
        token goes only to Slack's file host), then previewed (through ``reply``)."""
        found = flow_in_text(text, self.defaults)
        if found is None:
            return Admission(messages.refused(WHICH_FLOW))
        flow_sid, alias = found
        if refused := self._refusal(caller, flow_sid, alias):
            return refused
        if not file_ids:
            return Admission(messages.refused("this message has no CSV file to start a flow for"))
        if self.files is None:
            return Admission(messages.refused("the bot cannot read files here (no bot token)"))
        files = self.files

        async def work() -> None:
            try:
                sheet, name = await files.read_csv(file_ids, self.defaults.region, self.max_rows)
            except TooManyRows as exc:
                await deliver(
                    reply,
                    messages.refused(
                        f"the file has {exc.count} rows, more than BULK_MAX_ROWS={exc.limit};"
                        " nothing was sent. Split it, or ask an admin to raise the limit"
                    ),
                )
                return
            except (SlackFileError, CsvError) as exc:
                await deliver(reply, messages.refused(str(exc)))
                return
            source = source_line(name, sheet.encoding_name)
            admission = await self.preview(
                sheet.rows, flow_sid, alias, self._sender(flow_sid), {}, caller, reply, source
            )
            if not admission.taken:
                await deliver(reply, admission.ack)

        self.tasks.spawn(work(), "bulk:file")
        return Admission(messages.notice_message(":inbox_tray:", "Reading the file…"), taken=True)

    async def preview(
        self,
        rows: list[Row],
        flow_sid: str,
        alias: str | None,
        sender: str,
        shared: dict[str, Any],
        caller: Caller,
        reply: Reply,
        source: str = "",
        when: When | None = None,
    ) -> Admission:
        """The rules now (the ack); the preview, after asking Studio about the flow."""
        if refused := self._refusal(caller, flow_sid, alias):
            return refused
        if len(rows) > self.max_rows:
            return Admission(
                messages.refused(f"{len(rows)} contacts is more than BULK_MAX_ROWS={self.max_rows}")
            )

        async def work() -> None:
            info = await self.catalog.get(flow_sid) if self.catalog else None
            try:  # every row against the opt-out list and the caps, in one pass
                contacts = [row.to for row in rows if row.to]
                suppressed = await self.consent.screen(contacts, flow_sid)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            made = await asyncio.to_thread(  # seconds of CPU for 100,000 rows: off the loop
                plan,
                rows,
                flow_sid=flow_sid,
                flow_alias=alias,
                sender=sender,
                shared=shared,
                policy=self.policy,
                info=info,
                per_second=self.throttle.per_second,
                clock=self.clock,
                when=when,
                now=self.now(),
                suppressed=suppressed,
            )
            if made.dues and max(made.dues.values()) - self.now() > self.max_days * 86400:
                far = f"that is more than {self.max_days:g} days ahead (SCHEDULE_MAX_DAYS)"
                await deliver(reply, messages.refused(f"{far}; nothing was sent"))
                return
            run_id = secrets.token_hex(6)
            try:
                await self.state.keep_preview(run_id, made, caller)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            pace = self.throttle.studio_rate
            await deliver(reply, bulk_preview(made, run_id, pace, source, now=self.now()))

        self.tasks.spawn(work(), "bulk:preview")
        preparing = messages.notice_message(":hourglass_flowing_sand:", "Preparing the preview…")
        return Admission(preparing, taken=True)
