"""Who may start and steer a bulk run, and the buttons that do: the preview's Start and
Cancel, the progress message's Pause, Resume and Cancel."""

from __future__ import annotations

import contextlib
import time

from bot.domain.caller import Caller
from bot.domain.errors import StateUnavailable
from bot.domain.policy import Policy, access_refusal
from bot.engage.bulk.state import BulkState
from bot.engage.bulk.worker import Worker
from bot.infra import audit
from bot.slack import messages
from bot.slack.bulk.report import Reporter, Undelivered
from bot.slack.reply import Reply, deliver

STATUS_AFTER = {"pause": "paused", "resume": "running", "cancel": "cancelled"}
AUDITED: dict[str, audit.Kind] = {
    "pause": "bulk_pause",
    "resume": "bulk_resume",
    "cancel": "bulk_cancel",
}
DONE_BY = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}


def may_start(
    policy: Policy,
    bulk_users: frozenset[str] | None,
    caller: Caller,
    flow_sid: str,
    alias: str | None,
) -> str | None:
    """Why ``caller`` may not start a bulk run of ``flow_sid`` here, or None."""
    if bulk_users is not None and caller.user_id not in bulk_users:
        return "you are not allowed to start bulk runs (BULK_SLACK_USERS); ask an admin"
    return access_refusal(policy, flow_sid, alias, caller.user_id, caller.channel_id)


class Controls:
    def __init__(
        self, policy: Policy, state: BulkState, worker: Worker, reporter: Reporter
    ) -> None:
        self.policy = policy
        self.state = state
        self.worker = worker
        self.reporter = reporter

    async def start(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        """Start: only the person who asked for the preview. The run is listed as
        *starting* first, so that a process dying at any point leaves it to another."""
        try:
            meta = await self.state.meta(run_id)
            if meta is None or meta.status != "previewed":
                await deliver(replace_preview, messages.expired())
                return
            if meta.requester != caller.user_id:
                await deliver(
                    replace_preview,
                    messages.refused("only the person who asked for the preview can start it"),
                )
                return
            if not await self.state.claim_start(run_id):
                return  # a double click
            began = time.time()
            await self.state.update(run_id, status="starting", began=began)
            await self.state.enlist(run_id)
            meta = meta.model_copy(update={"status": "starting", "began": began})
            with contextlib.suppress(Undelivered):  # else by the next edit, or at the end
                await self.reporter.post(run_id, meta)
            count = await self.worker.launch(run_id, meta)
        except StateUnavailable:
            await deliver(replace_preview, messages.state_unavailable())
            return
        audit.record("bulk_started", caller, detail=f"run {run_id}: {count} rows")
        await deliver(
            replace_preview, messages.notice_message(":rocket:", f"Started {count} rows.")
        )

    async def drop(self, run_id: str, caller: Caller, replace_preview: Reply) -> None:
        """Cancel a preview: nothing was sent."""
        try:
            meta = await self.state.meta(run_id)
            if meta and meta.status == "previewed" and meta.requester == caller.user_id:
                await self.state.update(run_id, status="dropped")
        except StateUnavailable:
            await deliver(replace_preview, messages.state_unavailable())
            return
        await deliver(replace_preview, messages.cancelled())

    async def control(self, run_id: str, action: str, caller: Caller, notify: Reply) -> None:
        """Pause, Resume or Cancel: the starter or an admin."""
        try:
            meta = await self.state.meta(run_id)
            if meta is None:
                await deliver(notify, messages.expired())
                return
            admins = self.policy.admins
            if caller.user_id != meta.requester and caller.user_id not in admins:
                reason = "only the person who started this bulk run, or an admin, can change it"
                await deliver(notify, messages.not_allowed(reason))
                return
            if meta.status not in ("running", "paused") or meta.finished:
                return
            note = f"{DONE_BY[action]} by <@{caller.user_id}>"
            await self.state.update(run_id, status=STATUS_AFTER[action], note=note)
        except StateUnavailable:
            await deliver(notify, messages.state_unavailable())
            return
        audit.record(AUDITED[action], caller, detail=f"run {run_id}")
        await self.reporter.edit(run_id, force=True)
        if action == "resume":
            await self.worker.wakeups.ring()
        if action == "cancel":
            await self.worker.cancel_rest(run_id)
