"""Scheduled starts in Slack: ``/engage scheduled``, their Cancel buttons, and what the
starter is told when a schedule fires (``bot.engage.schedules`` keeps and fires them).

- When a schedule starts its run, the usual card appears in its channel (``publish``,
  which follows the run) and the starter is mentioned in the card's thread.
- A refusal at fire time, a failure, or an outcome unknown is told to the starter
  privately, in a DM from the bot: never silently dropped.
"""

from __future__ import annotations

import logging

from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.caller import Caller
from bot.domain.errors import StateUnavailable
from bot.domain.results import Refused, Result, Started
from bot.domain.run import Engagement
from bot.domain.schedule import Scheduled
from bot.domain.text import refusal_text
from bot.engage.schedules import Schedules
from bot.infra.tasks import Tasks
from bot.slack import messages
from bot.slack.engage import Publish
from bot.slack.messages import Message
from bot.slack.messages import schedules as schedule_messages
from bot.slack.post import direct_message, post_message
from bot.slack.reply import Reply, deliver

log = logging.getLogger(__name__)


class SlackSchedules:
    def __init__(
        self,
        schedules: Schedules,
        *,
        slack: AsyncWebClient | None,
        publish: Publish | None,
        tasks: Tasks,
        api: str = "v1",
        mask_numbers: bool = False,
    ) -> None:
        self.schedules = schedules
        self.slack = slack
        self.publish = publish
        self.tasks = tasks
        self.api = api
        self.mask_numbers = mask_numbers

    # -- /engage scheduled and Cancel -------------------------------------------------

    def listing(self, caller: Caller, reply: Reply) -> Message:
        """``/engage scheduled``: the list follows the ack."""

        async def work() -> None:
            await deliver(reply, await self.list_for(caller))

        self.tasks.spawn(work(), f"scheduled:{caller.user_id}")
        return messages.notice_message(":calendar:", "Looking up the scheduled starts…")

    async def list_for(self, caller: Caller) -> Message:
        try:
            items = await self.schedules.visible_to(caller.user_id)
        except StateUnavailable:
            return messages.state_unavailable()
        everyone = caller.user_id in self.schedules.policy.admins
        return schedule_messages.schedule_list(items, self.schedules.now(), everyone=everyone)

    def cancel(self, schedule_id: str, caller: Caller, reply: Reply) -> None:
        """A schedule's Cancel button (its starter or an admin)."""

        async def work() -> None:
            try:
                outcome, item = await self.schedules.cancel(schedule_id, caller)
            except StateUnavailable:
                await deliver(reply, messages.state_unavailable())
                return
            await deliver(reply, schedule_messages.unscheduled(outcome, item))

        self.tasks.spawn(work(), f"unschedule:{schedule_id}")

    # -- when a schedule fires ----------------------------------------------------------

    async def tell(self, item: Scheduled, result: Result | None) -> None:
        """The card in the schedule's channel with the starter mentioned in its thread;
        or, privately, why it did not start."""
        if isinstance(result, Started):
            await self._card(item, result.engagement)
            return
        if isinstance(result, Refused):
            reason = refusal_text(item.command, result)
        else:
            reason = item.note or "see the audit log"
        await direct_message(self.slack, item.user, schedule_messages.fire_problem(item, reason))

    async def _card(self, item: Scheduled, engagement: Engagement) -> None:
        posted: list[str] = []

        async def to_channel(message: Message) -> None:  # the card when it is not followed
            ts = await self._post(item.channel, message)
            if ts is None:
                await direct_message(self.slack, item.user, message)
            else:
                posted.append(ts)

        if self.publish is not None:
            ts = await self.publish(item.command, engagement, item.caller, to_channel)
        else:
            card = messages.engaged(
                item.command, engagement, item.user, mask=self.mask_numbers, api=self.api
            )
            await to_channel(card)
            ts = None
        ts = ts or (posted[0] if posted else None)
        if ts is not None:
            await self._post(
                item.channel, messages.thread_note(schedule_messages.fired_note(item)), ts
            )

    async def _post(self, channel: str, message: Message, thread: str | None = None) -> str | None:
        ts, _ = await post_message(self.slack, channel, message, thread)
        return ts
