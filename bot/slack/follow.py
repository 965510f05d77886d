"""The card follows its run to the end (``FOLLOW_MINUTES``; 0 turns it off).

- **Publishing.** A started run's card is posted with ``chat.postMessage`` (so that
  it can be edited); where Slack refuses (a private channel or a DM without the bot)
  it goes through the command's ``response_url`` instead, whose five uses in thirty
  minutes are counted (one is kept for the end), and the starter is told once,
  privately, to invite the bot for live updates. So does a card whose channel's
  ``chat.postMessage`` turn is more than ``PUBLISH_WITHIN`` away (a burst of starts
  in one channel): that card's edits then skip ``chat.update``'s tier too.
- **News.** Event Streams deliveries (``bot.runs.event_streams``) nudge a run to be read
  now; otherwise, and as a safety net, each run is read with backoff (2 s doubling to
  60 s), within ``STUDIO_READ_RATE_LIMIT`` shared by every process, so following never
  takes a start's turn under ``STUDIO_RATE_LIMIT``.
- **Showing.** The card is edited when the run moves (status, the widget it is in,
  time since start), at most once every ``COALESCE_SECONDS``, never backwards (an
  older state after a newer one). When the run ends the card says how, and a thread
  reply tells the starter; the end is announced once, whichever process sees it.
- **State.** What is followed lives in ``Durable`` state: with Redis any process can
  take an event or go on polling after a deploy; SIGTERM stops this process's loop
  and leaves the runs to the next one. Without Redis, following ends with the process.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.durations import duration
from bot.domain.errors import StateUnavailable, StudioError
from bot.domain.record import Record
from bot.domain.run import Engagement, Snapshot, end_of
from bot.engage.throttle import Throttle
from bot.infra.logs import about
from bot.infra.tasks import Loop
from bot.runs.registry import SNAPSHOT_REQUESTS, RunRegistry, Shown, fetch
from bot.slack import messages
from bot.slack.api_errors import slack_refusal, slack_retry_after
from bot.slack.messages import Message, RunCard
from bot.slack.pace import SlackBusy, within
from bot.slack.post import NOT_POSTED, post_message
from bot.slack.reply import Reply, deliver
from bot.slack.responder import Responder, ResponseUrlReply
from bot.state.store import Durable
from bot.studio.catalog import FlowCatalog
from bot.studio.client import StudioClient

log = logging.getLogger(__name__)

# chat.postMessage refusals that inviting the bot would cure
NOT_A_MEMBER = {"not_in_channel", "channel_not_found"}

INDEX = "follow:index"  # hash: run SID -> "1", every run followed by any process
COALESCE_SECONDS = 3.0
FINAL_WITHIN = 10.0  # the longest a card's last edit waits for its slot, per attempt
PUBLISH_WITHIN = 2.0  # the longest a new card waits for its channel's turn to be posted
FIRST_POLL, MAX_POLL = 2.0, 60.0
TICK_SECONDS = 1.0
# One poll (the read pace's wait, three reads with their timeouts and 429 retries, the
# card's edit) is cut off after POLL_SECONDS; the lease outlives it, so two processes
# never poll one run at once, and it is released only by its holder.
POLL_SECONDS = 120.0
LEASE_SECONDS = POLL_SECONDS + 30.0
FINAL_DEADLINE = 15 * 60.0  # how long the card's last state is retried when Slack refuses
RESPONSE_URL_USES, RESPONSE_URL_SECONDS = 5, 30 * 60
SEEN_SECONDS = 24 * 3600  # how long an Event Streams event ID is remembered


class Followed(Record):
    """A run being followed, and where and how its card was last shown."""

    sid: str
    flow_sid: str
    starter: str
    started: float  # epoch seconds
    until: float  # epoch seconds: following stops then
    channel: str = ""
    ts: str = ""  # the card's message; "" when it lives behind a response_url
    response_url: str = ""
    uses: int = 0  # response_url uses so far
    shown: tuple[int, int, int] = (0, 0, 0)  # the state last shown: ended, steps, last change
    next_poll: float = 0.0
    interval: float = FIRST_POLL
    last_edit: float = 0.0
    final_since: float = 0.0  # when showing the run's end was first refused (0: never)

    def url_lives(self, now: float) -> bool:
        """Whether the card's response_url can still edit it (Slack's thirty minutes)."""
        return bool(self.response_url) and now - self.started < RESPONSE_URL_SECONDS


def rank(snapshot: Snapshot) -> tuple[int, int, int]:
    """How far a run has got: ended or not, steps taken, last change (compared in order)."""
    updated = snapshot.updated.timestamp() if snapshot.updated else 0
    return int(snapshot.run.status == "ended"), len(snapshot.steps), int(updated)


def ending(snapshot: Snapshot) -> str:
    """How a run ended: ``ended at `send_survey` after 3 min 12 s`` or ``failed at …``."""
    widget, failed = end_of(snapshot.steps)
    verb = "failed" if failed else "ended"
    where = f" at `{widget}`" if widget else ""
    run = snapshot.run
    took = ""
    if run.date_created and snapshot.updated:
        took = " after " + duration((snapshot.updated - run.date_created).total_seconds())
    return f"{verb}{where}{took}"


class Follower:
    def __init__(
        self,
        studio: StudioClient,
        *,
        slack: AsyncWebClient | None,
        responder: Responder,
        state: Durable,
        reads: Throttle,
        catalog: FlowCatalog | None = None,
        aliases: dict[str, str] | None = None,
        mask_numbers: bool = False,
        minutes: float = 60.0,
        on_started: Callable[[EngageCommand, Engagement, Caller], Awaitable[None]] | None = None,
        on_ended: Callable[[Snapshot], Awaitable[dict[str, str]]] | None = None,
    ) -> None:
        self.studio = studio
        self.slack = slack
        self.responder = responder
        self.state = state
        self.registry = RunRegistry(state)
        self.reads = reads  # STUDIO_READ_RATE_LIMIT, as its pace
        self.catalog = catalog
        self.aliases = aliases or {}
        self.mask_numbers = mask_numbers
        self.minutes = minutes
        self.me = secrets.token_hex(4)  # this process, for leases
        self._loop = Loop("follow", self._run)
        self._notes: set[asyncio.Task[tuple[str | None, str]]] = set()  # end notes on their way
        # Told of every run shown (the Home tab's record); best effort.
        self.on_started = on_started
        # Told of every run seen to end, with what was read; answers what its record
        # kept of it (the answers collected), for the note that announces the end.
        self.on_ended = on_ended

    # -- publishing a started run ------------------------------------------------

    async def publish(
        self, command: EngageCommand, engagement: Engagement, caller: Caller, reply: Reply
    ) -> str | None:
        """Show the card of a run just started, and follow it (with following off, the
        card goes through the command's response_url, as a reply); the card's ts when it
        was posted in the channel."""
        card = self._card_for_start(command, engagement, caller.user_id)
        message = messages.run_card(card, mask=self.mask_numbers)
        ts, refusal = NOT_POSTED
        if self.minutes > 0:
            # A burst in one channel: past the channel's pace, a card that has a
            # response_url is that reply instead (edited there, not by the tier).
            with within(PUBLISH_WITHIN if _url_of(reply) else None):
                ts, refusal = await self._post(caller.channel_id, message)
        now = time.time()
        followed = Followed(
            sid=engagement.sid,
            flow_sid=command.flow_sid,
            starter=caller.user_id,
            started=now,
            until=now + self.minutes * 60,
            channel=caller.channel_id,
            ts=ts or "",
            response_url="" if ts else _url_of(reply),
            uses=0 if ts else 1,
            next_poll=now + FIRST_POLL,
        )
        if ts is None:
            await deliver(reply, message, engagement.sid)
            if refusal in NOT_A_MEMBER:  # the bot is not there: say once how to follow closely
                await deliver(reply, messages.invite_for_updates(), engagement.sid)
                followed = followed.model_copy(update={"uses": 2})
        try:
            if ts:  # where its card is (who started it was kept by the start)
                shown = Shown(caller.user_id, command.flow_sid, caller.channel_id, ts)
                await self.registry.remember(engagement.sid, shown)
            if self.minutes > 0:
                await self._save(followed)
                await self.state.use(lambda s: s.hset(INDEX, {engagement.sid: "1"}, 7 * 86400))
        except StateUnavailable:
            log.error("run %s is shown but not followed: shared state unavailable", engagement.sid)
        if self.on_started is not None:
            await self.on_started(command, engagement, caller)
        return ts

    def _card_for_start(
        self, command: EngageCommand, engagement: Engagement, starter: str
    ) -> RunCard:
        started = messages.engaged_card(command, engagement, starter, api=self.studio.api)
        return replace(started, following=self.minutes > 0)

    async def _post(
        self, channel: str, message: Message, thread_ts: str | None = None
    ) -> tuple[str | None, str]:
        return await post_message(self.slack, channel, message, thread_ts)

    # -- news -------------------------------------------------------------------

    async def nudge(self, event_id: str, sid: str) -> None:
        """An event about ``sid``: read it at the next tick, if anyone follows it."""
        try:
            if event_id and not await self.state.use(
                lambda s: s.add(f"event:{event_id}", "1", SEEN_SECONDS)
            ):
                return  # a duplicate delivery
            followed = await self._load(sid)
            if followed is not None:  # only the poll's time: the poller may be writing the rest
                soon = followed.model_copy(update={"next_poll": 0.0, "interval": FIRST_POLL})
                fields = soon.fields("next_poll", "interval")
                await self.state.use(lambda s: s.hset(f"follow:{sid}", fields, _kept_for(soon)))
        except StateUnavailable:
            return  # the poller is the safety net

    async def follows(self, sid: str) -> bool:
        """Whether a card follows ``sid`` (in any process): its reads are the run's, and
        what it sees of the end its record keeps (``on_ended``)."""
        return await self.state.use(lambda s: s.hget(INDEX, sid)) is not None

    def start(self) -> None:
        """Follow in the background until ``stop``."""
        if self.minutes > 0:
            self._loop.start()

    async def stop(self) -> None:
        """Stop this process's loop; what is followed stays for the next process. End
        notes on their way get a moment to land."""
        await self._loop.stop()
        if self._notes:
            await asyncio.wait(set(self._notes), timeout=5)

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("following failed this round")
            await asyncio.sleep(TICK_SECONDS)

    async def tick(self) -> None:
        """One round: every followed run that is due, under a lease (one process each)."""
        index = await self.state.use(lambda s: s.hgetall(INDEX))
        for sid in index:
            followed = await self._load(sid)
            if followed is None:
                await self._forget(sid)
                continue
            now = time.time()
            if now < followed.next_poll or not await self._lease(sid):
                continue
            try:
                async with asyncio.timeout(POLL_SECONDS):
                    await self._poll(followed, now)
            except TimeoutError:
                log.warning("following %s: a poll took over %.0f s; cut off", sid, POLL_SECONDS)
            finally:
                await self._release(sid)

    async def _poll(self, followed: Followed, now: float) -> None:
        with about(run=followed.sid):
            if now > followed.until and not followed.final_since:
                await self._forget(followed.sid)
                return
            if not await self.reads.pace(SNAPSHOT_REQUESTS):
                return  # no reads left this moment: next round
            try:
                pace = self.reads.pace  # a 429's retry paces under STUDIO_READ_RATE_LIMIT only
                snapshot = await fetch(
                    self.studio, followed.flow_sid, followed.sid, before_retry=pace
                )
            except StudioError as exc:
                log.info("following %s: %s", followed.sid, exc.message)
                interval = min(followed.interval * 2, MAX_POLL)
                await self._save(followed.model_copy(update=_next(now, interval)))
                return
            current = (
                await self._load(followed.sid) or followed
            )  # another process may have shown more
            ended = snapshot.run.status == "ended"
            newer = rank(snapshot) > current.shown
            if newer and not ended and now - current.last_edit < COALESCE_SECONDS:
                due = current.last_edit + COALESCE_SECONDS
                await self._save(current.model_copy(update={"next_poll": due}))
                return
            if newer:
                shown, wait = await self._show(current, snapshot, now)
                if shown is None:  # Slack refused the edit (a 429): the card is not there yet
                    await self._not_shown(current, snapshot, ended=ended, now=now, wait=wait)
                    return
                current = shown
            if ended:
                await self._announce_end(current, snapshot)
                await self._forget(current.sid)
                return
            interval = FIRST_POLL if newer else min(current.interval * 2, MAX_POLL)
            await self._save(current.model_copy(update=_next(now, interval)))

    async def _not_shown(
        self, followed: Followed, snapshot: Snapshot, *, ended: bool, now: float, wait: float
    ) -> None:
        """The card could not be edited: try again after Slack's Retry-After (or a pause);
        a run that ended is tried until ``FINAL_DEADLINE``, then the starter is told."""
        pause = max(wait, min(followed.interval * 2, MAX_POLL))
        if not ended:
            await self._save(followed.model_copy(update=_next(now, pause)))
            return
        since = followed.final_since or now
        if now - since > FINAL_DEADLINE:
            log.error("run %s: gave up showing its end on the card", followed.sid)
            stuck = messages.card_stuck_note(
                followed.starter, followed.sid, ending(snapshot), followed.channel
            )
            await self._post(followed.starter, stuck)
            await self._announce_end(followed, snapshot)
            await self._forget(followed.sid)
            return
        await self._save(followed.model_copy(update={**_next(now, pause), "final_since": since}))

    async def _show(
        self, followed: Followed, snapshot: Snapshot, now: float
    ) -> tuple[Followed | None, float]:
        """Edit the card to ``snapshot`` (chat.update, or the response_url while it lasts):
        the run as now shown, or None and how long Slack asked to wait (0 if it did not)."""
        message = self.render(followed, snapshot)
        ended = snapshot.run.status == "ended"
        if followed.ts:
            if self.slack is None:
                return followed, 0.0
            try:  # Slack's tier: an edit waits a moment at most, else the next one shows more
                with within(FINAL_WITHIN if ended else COALESCE_SECONDS):
                    await self.slack.chat_update(
                        channel=followed.channel,
                        ts=followed.ts,
                        text=message["text"],
                        blocks=message["blocks"],
                    )
            except SlackBusy as exc:
                return None, exc.wait
            except SlackApiError as exc:
                log.info("chat.update of %s refused: %s", followed.sid, slack_refusal(exc))
                if (wait := slack_retry_after(exc)) is not None:
                    return None, wait
                return followed, 0.0  # refused for good (deleted, archived): nothing to retry
            except Exception as exc:  # noqa: BLE001 - the network: tried again
                log.info("chat.update of %s failed: %s", followed.sid, type(exc).__name__)
                return None, 0.0
        else:
            keep = 0 if ended else 1  # one use kept for the end
            if not followed.url_lives(now) or followed.uses + keep >= RESPONSE_URL_USES:
                return followed, 0.0
            edit = self.responder.reply(followed.response_url, replace=True)
            if not await deliver(edit, message, followed.sid) and ended:
                # The end is said in the channel instead (``_announce_end``).
                return followed.model_copy(update={"response_url": ""}), 0.0
            followed = followed.model_copy(update={"uses": followed.uses + 1})
        return followed.model_copy(update={"shown": rank(snapshot), "last_edit": now}), 0.0

    async def _announce_end(self, followed: Followed, snapshot: Snapshot) -> None:
        """Tell the starter how it ended, once across every process."""
        answers = await self.on_ended(snapshot) if self.on_ended is not None else {}
        if not await self.state.use(lambda s: s.add(f"ended:{followed.sid}", "1", SEEN_SECONDS)):
            return
        card = self._card(followed, snapshot)
        said = messages.end_note(  # answers: from the run's record, what the contact said
            followed.starter, card.flow_label, followed.sid, ending(snapshot), answers
        )
        if followed.ts:
            thread: str | None = followed.ts
        elif not followed.url_lives(time.time()):
            thread = None  # the card could not show the end: said in the channel instead
        else:
            return  # the card (the command's reply) shows the end itself
        # In its own task: the note waits for the channel's turn, polls do not.
        note = self._post(followed.channel, said, thread_ts=thread)
        task = asyncio.get_running_loop().create_task(note, name=f"note:{followed.sid}")
        self._notes.add(task)
        task.add_done_callback(self._notes.discard)

    def _card(self, followed: Followed, snapshot: Snapshot) -> RunCard:
        info = self.catalog.peek(followed.flow_sid) if self.catalog else None
        card = messages.card_of(
            snapshot,
            self.aliases.get(followed.flow_sid),
            followed.starter,
            self.studio.api,
            info.name if info else None,
        )
        ended = snapshot.run.status == "ended"
        step = snapshot.latest_step
        return replace(
            card,
            following=not ended,
            widget=step.transitioned_to if step and not ended else None,
            started=snapshot.run.date_created or datetime.fromtimestamp(followed.started, UTC),
            outcome=ending(snapshot) if ended else None,
        )

    def render(self, followed: Followed, snapshot: Snapshot) -> Message:
        """The card of a followed run, as Refresh and End show it, plus how it goes."""
        return messages.run_card(self._card(followed, snapshot), mask=self.mask_numbers)

    # -- state ------------------------------------------------------------------

    async def _load(self, sid: str) -> Followed | None:
        return Followed.of(await self.state.use(lambda s: s.hgetall(f"follow:{sid}")))

    async def _save(self, followed: Followed) -> None:
        ttl = _kept_for(followed)
        await self.state.use(lambda s: s.hset(f"follow:{followed.sid}", followed.fields(), ttl))

    async def _forget(self, sid: str) -> None:
        await self.state.use(lambda s: s.hdel(INDEX, sid))
        await self.state.use(lambda s: s.delete(f"follow:{sid}"))

    async def _lease(self, sid: str) -> bool:
        return await self.state.use(lambda s: s.add(f"lease:{sid}", self.me, LEASE_SECONDS))

    async def _release(self, sid: str) -> None:
        """Release this process's lease, never another's (if ours ran out meanwhile)."""
        await self.state.use(lambda s: s.delete_if(f"lease:{sid}", self.me))


def _kept_for(followed: Followed) -> float:
    """How long a followed run's record is kept: past following, room for its last edit."""
    return max(60.0, followed.until - time.time() + 3600 + FINAL_DEADLINE)


def _next(now: float, interval: float) -> dict[str, float]:
    return {"next_poll": now + interval, "interval": interval}


def _url_of(reply: Reply) -> str:
    """The response_url behind a reply, kept for later edits ("" if it has none)."""
    return reply.url if isinstance(reply, ResponseUrlReply) else ""
