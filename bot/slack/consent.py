"""Consent from Slack: ``/engage optout``, ``optin`` and ``optouts``, and the admins'
message shortcut *Opt out each row* that imports a CSV file of numbers (a preview
first, as bulk runs have). The list itself is ``bot.engage.consent``; every start's
check of it is ``bot.engage.start``."""

from __future__ import annotations

import asyncio
import json
import secrets

from bot.domain.caller import Caller
from bot.domain.command import OptInCommand, OptOutCommand
from bot.domain.errors import CsvError, SlackFileError, StateUnavailable
from bot.domain.phone import mask
from bot.domain.policy import Policy, admin_refusal, optout_refusal
from bot.engage.consent import Consent
from bot.infra import audit
from bot.infra.tasks import Tasks
from bot.slack import messages
from bot.slack.files import CsvFiles
from bot.slack.messages import consent as said
from bot.slack.messages.bulk import source_line
from bot.slack.reply import Reply, deliver
from bot.state.store import Durable

IMPORT_MAX_ROWS = 200_000  # an existing opt-out list, imported once
IMPORT_SECONDS = 3600  # a preview's button stays valid this long
IMPORT_BATCH = 500  # additions in flight at once


class SlackConsent:
    def __init__(
        self,
        consent: Consent,
        *,
        policy: Policy,
        state: Durable,
        tasks: Tasks,
        files: CsvFiles | None,
        region: str | None,
    ) -> None:
        self.consent = consent
        self.policy = policy
        self.state = state
        self.tasks = tasks
        self.files = files
        self.region = region

    async def opt_out(self, command: OptOutCommand, caller: Caller) -> messages.Message:
        """``/engage optout +1… [reason]``: on the list now (or already), audited."""
        if reason := optout_refusal(self.policy, caller.user_id):
            audit.record("refused", caller, detail=f"optout: {reason}")
            return messages.not_allowed(reason)
        try:
            added = await self.consent.opt_out(
                command.to, "command", by=caller.user_id, reason=command.reason
            )
            entry = None if added else await self.consent.entry(command.to)
        except StateUnavailable:
            return messages.state_unavailable()
        if added:
            detail = f"command; contact {mask(command.to)}" + (
                f"; reason: {command.reason}" if command.reason else ""
            )
            audit.record("opt_out_added", caller, detail=detail)
        return said.opted_out(command.to, entry, added=added)

    async def opt_in(self, command: OptInCommand, caller: Caller) -> messages.Message:
        """``/engage optin +1… reason``: admins only; who and why go in the audit log."""
        if reason := admin_refusal(
            self.policy, caller.user_id, "take a contact off the opt-out list"
        ):
            audit.record("refused", caller, detail=f"optin: {reason}")
            return messages.not_allowed(reason)
        try:
            entry = await self.consent.opt_in(command.to)
        except StateUnavailable:
            return messages.state_unavailable()
        if entry is not None:
            detail = (
                f"contact {mask(command.to)}, opted out by {entry.source} at {entry.at:.0f};"
                f" reason: {command.reason}"
            )
            audit.record("opt_in", caller, detail=detail)
        return said.opted_in(command.to, entry)

    async def listing(self, caller: Caller) -> messages.Message:
        """``/engage optouts``: admins see the count, by source, and the latest (masked)."""
        if reason := admin_refusal(self.policy, caller.user_id, "see the opt-out list"):
            return messages.not_allowed(reason)
        try:
            found = await self.consent.listing()
        except StateUnavailable:
            return messages.state_unavailable()
        return said.listing(found.total, found.by_source, found.latest)

    # -- importing a file ----------------------------------------------------------

    def import_file(self, file_ids: list[str], caller: Caller, reply: Reply) -> messages.Message:
        """*Opt out each row* on a message with a CSV file: admins only; the file is read
        and previewed in the background (through ``reply``); nothing is added yet."""
        if reason := admin_refusal(self.policy, caller.user_id, "import an opt-out list"):
            return messages.not_allowed(reason)
        if not file_ids:
            return messages.refused("this message has no CSV file of numbers to opt out")
        if self.files is None:
            return messages.refused("the bot cannot read files here (no bot token)")
        files = self.files

        async def work() -> None:
            try:
                sheet, name = await files.read_csv(file_ids, self.region, IMPORT_MAX_ROWS)
            except (SlackFileError, CsvError) as exc:  # TooManyRows is a CsvError
                await deliver(reply, messages.refused(str(exc)))
                return
            valid = {row.to: row for row in sheet.rows if row.to and not row.problem}
            invalid = [
                (r.number, r.problem or "not a number")
                for r in sheet.rows
                if r not in valid.values()
            ]
            try:
                listed = await self.consent.screen(list(valid), "")
                new = [
                    (self.consent.key(to), mask(to))
                    for to in valid
                    if to not in listed or listed[to].kind != "opted_out"
                ]
                preview_id = secrets.token_hex(6)
                kept = json.dumps({"by": caller.user_id, "rows": new})
                await self.state.use(
                    lambda s: s.set(f"optout:import:{preview_id}", kept, IMPORT_SECONDS)
                )
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            source = source_line(name, sheet.encoding_name)
            already = len(valid) - len(new)
            await deliver(
                reply, said.import_preview(preview_id, len(new), already, invalid, source)
            )

        self.tasks.spawn(work(), "optout:file")
        return messages.notice_message(":inbox_tray:", "Reading the file…")

    async def confirm_import(self, preview_id: str, caller: Caller, replace: Reply) -> None:
        """*Opt out N*: every previewed contact added (once, whoever clicks twice)."""
        if reason := admin_refusal(self.policy, caller.user_id, "import an opt-out list"):
            await deliver(replace, messages.not_allowed(reason))
            return
        try:
            kept = await self.state.use(lambda s: s.pop(f"optout:import:{preview_id}"))
            if kept is None:
                await deliver(replace, messages.expired())
                return
            rows = [(str(key), str(masked)) for key, masked in json.loads(kept)["rows"]]
            added = 0
            for first in range(0, len(rows), IMPORT_BATCH):
                done = await asyncio.gather(
                    *(
                        self.consent.opt_out_key(key, masked, "file", by=caller.user_id)
                        for key, masked in rows[first : first + IMPORT_BATCH]
                    )
                )
                added += sum(done)
        except StateUnavailable:
            await deliver(replace, messages.state_unavailable())
            return
        audit.record(
            "opt_out_added",
            caller,
            detail=f"file import: {added} added, {len(rows) - added} on the list already",
        )
        await deliver(replace, said.imported(added, len(rows) - added))

    async def drop_import(self, preview_id: str, replace: Reply) -> None:
        """Cancel on an import preview: forgotten, nothing added."""
        try:
            await self.state.use(lambda s: s.delete(f"optout:import:{preview_id}"))
        except StateUnavailable:
            await deliver(replace, messages.state_unavailable())
            return
        await deliver(replace, messages.cancelled())
