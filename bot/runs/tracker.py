"""Every recorded run followed to its end, and its answers collected.

- **Events.** With Event Streams (``TWILIO_EVENTS_URL``), a ``step.ended`` delivery
  moves the record to its widget (no read), and ``execution.ended`` ends it at once
  with one read: the run's context, for the answers. A run is read once in all.
- **The sweep.** Otherwise, and as a safety net, each process sweeps the records
  still active whose check is due: one read (the run) while it is active; when it
  has ended, its steps (where it ended) and its context (the answers). Checks are
  spread so that the sweep stays within its share of ``STUDIO_READ_RATE_LIMIT``
  whatever the number of runs: each run is checked every ``interval`` seconds
  (``check_interval``), which the bulk progress message states. With Event Streams
  a run not heard from is checked after ``SAFETY_NET_INTERVAL``; one heard from
  (any event: deliveries reach the bot for its flow) only once it has been silent
  ``HEARD_SILENCE``, as long as Twilio goes on retrying a delivery.
- **Cards.** A run a card follows (``bot.slack.follow``) is read by its card alone:
  the card records the end it sees (``seen_end``), and neither the sweep nor an
  event reads it again.
- **Following stops** ``BULK_FOLLOW_HOURS`` after the start (flows wait hours for
  replies): a run still active then is recorded as *unfollowed*.
- **Answers**: the reply of every widget that waits for one (``flows.answer_widgets``)
  and the context paths a flow's ``;collect=`` names, as text (``collect_answers``).
  They are stored with the record and never logged. An ended run's answers and context
  go to ``on_consent`` (an opt-out word, or Twilio's 21610, puts its contact on the
  suppression list: ``bot.engage.consent``).

A record that ends which belongs to a bulk run tells the bulk run (``on_bulk``), whose
progress message and final results file show it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from bot.domain.errors import StateUnavailable, StudioAPIError, StudioError
from bot.domain.flows import collect_answers
from bot.domain.run import Snapshot, end_of
from bot.infra.logs import Outage
from bot.infra.tasks import Loop
from bot.runs.records import FINAL, Records, RunRecord, State
from bot.studio.catalog import FlowCatalog
from bot.studio.client import StudioClient

log = logging.getLogger(__name__)

TICK_SECONDS = 2.0
BATCH = 50  # records looked at per round, the most overdue first
MIN_INTERVAL = 60.0  # no run is checked more often than this by the sweep
# With Event Streams the sweep is only a safety net (a delivery lost): it looks this late
# at a run no event has spoken of (its flow may not be in the subscription)...
SAFETY_NET_INTERVAL = 30 * 60.0
# ...and this late at a run one has: Event Streams retries a delivery for up to 4 hours,
# so a run heard from whose end has not come is read once it has been silent that long.
HEARD_SILENCE = 4 * 3600.0
TRIM_SECONDS = 600.0  # the records' indexes are trimmed of what expired this often
SHARE = 0.5  # of STUDIO_READ_RATE_LIMIT, for the sweep (cards being followed use the rest)


class Reads(Protocol):
    """The pace of Studio reads (``bot.engage.throttle.Throttle``, STUDIO_READ_RATE_LIMIT)."""

    @property
    def per_second(self) -> float: ...

    async def pace(self, requests: int = 1, *, bulk: bool = False, queue: bool = False) -> bool: ...


OnEnded = Callable[[RunRecord], Awaitable[None]]  # a recorded run ended
Followed = Callable[[str], Awaitable[bool]]  # whether a card follows this run SID
# a recorded run ended, with its context: what it says of consent (an opt-out answer, 21610)
OnConsent = Callable[[RunRecord, object], Awaitable[None]]


def check_interval(active: int, reads_per_second: float, *, events: bool = False) -> float:
    """Seconds between two checks of one run, so that checking ``active`` runs stays
    within the sweep's share of the read budget (with Event Streams, the sweep is a
    safety net and waits longer). Pure."""
    budget = max(reads_per_second * SHARE, 1e-6)
    return max(SAFETY_NET_INTERVAL if events else MIN_INTERVAL, active / budget)


class RunTracker:
    def __init__(
        self,
        studio: StudioClient,
        records: Records,
        *,
        reads: Reads,
        catalog: FlowCatalog | None = None,
        collect: Mapping[str, tuple[str, ...]] | None = None,
        events: bool = False,
        on_bulk: OnEnded | None = None,
        on_end: OnEnded | None = None,
        on_consent: OnConsent | None = None,
        followed: Followed | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.studio = studio
        self.events = events  # Event Streams tell of ends: the sweep is a safety net
        self.records = records
        self.reads = reads  # STUDIO_READ_RATE_LIMIT, shared with the cards being followed
        self.catalog = catalog
        self.collect = dict(collect or {})  # flow SID -> its ;collect= context paths
        self.on_bulk = on_bulk  # a bulk run's record ended: its second tally moves
        self.on_end = on_end  # any recorded run ended (a workflow step waits)
        self.on_consent = on_consent  # an ended run's answers and context: opted out?
        self.followed = followed  # a card follows the run: it reads it, no one else
        self.now = now  # the clock (a bench runs hours of following in minutes)
        self.outage = Outage(log, "run records: shared state")
        # seconds between two checks of a run, as last set
        self.interval = check_interval(0, reads.per_second, events=events)
        self._loop = Loop("outcomes", self._run)
        self._next_trim = 0.0

    # -- the sweep ------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
                self.outage.ok()
            except StateUnavailable as exc:
                self.outage.failed(exc)
            except Exception:
                log.exception("following run records failed this round")
            await asyncio.sleep(TICK_SECONDS)

    async def sweep(self) -> int:
        """One round over the records whose check is due; how many were checked. Every
        ``TRIM_SECONDS``, the records' indexes are trimmed of what expired."""
        now = self.now()
        if now >= self._next_trim:
            await self.records.trim()
            self._next_trim = now + TRIM_SECONDS
        active = await self.records.active_count()
        self.interval = check_interval(active, self.reads.per_second, events=self.events)
        checked = 0
        for record in await self.records.due(now, BATCH):
            if now > record.follow_until:
                await self._finished(await self.records.finish(record, "unfollowed"))
                continue
            if await self._card_reads(record.sid):  # it reads the run: no read slot taken
                await self.records.claim_check(record.id, now, now + self._wait(record))
                continue
            if not await self.reads.pace():
                break  # no reads left this moment: the rest next round
            if not await self.records.claim_check(record.id, now, now + self._wait(record)):
                continue  # another process took this check
            checked += 1
            await self._check(record)
        return checked

    async def _check(self, record: RunRecord) -> None:
        """Read the run from Studio (its turn already taken); if it ended, record how."""
        try:
            run = await self.studio.fetch_engagement(
                record.flow_sid, record.sid, before_retry=self.reads.pace
            )
        except StudioAPIError as exc:
            if exc.status == 404:  # deleted (v1's End) or gone: it ended
                await self._finished(await self.records.finish(record, "ended"))
            return
        except StudioError as exc:
            log.info("checking run %s: %s", record.sid, exc.message)
            return
        if run.status == "ended":
            await self._read_end(record)

    def _wait(self, record: RunRecord) -> float:
        """Seconds until the sweep checks ``record`` again: a run Event Streams spoke of
        only after ``HEARD_SILENCE`` (its news comes by itself)."""
        return max(self.interval, HEARD_SILENCE) if self.events and record.heard else self.interval

    async def _card_reads(self, sid: str) -> bool:
        """Whether a card follows ``sid``: it reads the run, and records its end."""
        return bool(sid) and self.followed is not None and await self.followed(sid)

    async def hint(self, sid: str) -> None:
        """A delivery whose body its signature does not cover says ``sid`` changed: it is
        only a hint. Nothing in it is recorded; the run is read from Studio, as the sweep
        reads it, and recorded from what Studio says."""
        try:
            record = await self.records.get(sid)
            if record is None or record.state in FINAL:
                return
            await self.reads.pace(queue=True)
            await self._check(record)
        except StateUnavailable as exc:
            self.outage.failed(exc)  # the sweep is the safety net

    async def _read_end(
        self, record: RunRecord, *, widget: str = "", failed: bool = False, when: float = 0.0
    ) -> bool:
        """Where an ended run ended and whether it failed (unless known from its steps'
        events, by the same rule as polling) and its answers; then recorded. False if
        Studio could not be read (the record stays active)."""
        try:  # each read waits for its turn under STUDIO_READ_RATE_LIMIT, however long
            if not widget:
                await self.reads.pace(queue=True)
                steps = await self.studio.steps(
                    record.flow_sid, record.sid, before_retry=self.reads.pace
                )
                widget, failed = end_of(steps)
            await self.reads.pace(queue=True)
            context = await self.studio.context(
                record.flow_sid, record.sid, before_retry=self.reads.pace
            )
        except StudioError as exc:
            log.info("reading the end of run %s: %s", record.sid, exc.message)
            return False  # checked again at its next turn
        answers = await self._answers(record.flow_sid, context)
        state: State = "failed" if failed else "ended"
        await self._finished(
            await self.records.finish(record, state, widget=widget, ended_at=when, answers=answers),
            context,
        )
        return True

    async def _answers(self, flow_sid: str, context: object) -> dict[str, str]:
        info = await self.catalog.get(flow_sid) if self.catalog else None
        widgets = info.analysis.answers if info else ()
        return collect_answers(context, widgets, self.collect.get(flow_sid, ()))

    async def _finished(self, record: RunRecord | None, context: object = None) -> None:
        """A run's end, recorded: who waits for it is told (``None``: another process
        recorded it first, and tells them)."""
        if record is None:
            return
        if self.on_consent is not None and record.state in ("ended", "failed"):
            try:  # before anyone is told it ended
                await self.on_consent(record, context)
            except StateUnavailable:
                log.error("run %s ended; its opt-out could not be kept (shared state)", record.sid)
        if record.bulk_run and self.on_bulk is not None:
            await self.on_bulk(record)
        if self.on_end is not None:
            await self.on_end(record)

    # -- news from elsewhere -------------------------------------------------------

    async def event(
        self, kind: str, sid: str, *, widget: str = "", failed: bool = False, when: float = 0.0
    ) -> None:
        """An Event Streams delivery about ``sid``: a step moves the record, an end ends
        it (one read, the context; none if a card follows the run: the card reads it).
        Any event tells the sweep it need not read the run for ``HEARD_SILENCE``. Events
        for runs the bot did not record are dropped."""
        try:
            record = await self.records.get(sid)
            if record is None or record.state in FINAL:
                return
            if not kind.endswith("execution.ended"):
                await self.records.heard(record, self.now() + HEARD_SILENCE)
            if kind.endswith("step.ended") and widget:
                await self.records.moved(sid, widget, failed=failed)
            elif kind.endswith("execution.ended") and not await self._card_reads(sid):
                read = await self._read_end(
                    record, widget=record.widget, failed=record.step_failed, when=when
                )
                if not read:  # Studio could not be read: soon again, not after the silence
                    await self.records.recheck(record.id, self.now() + MIN_INTERVAL)
        except StateUnavailable as exc:
            self.outage.failed(exc)  # the sweep is the safety net

    async def seen_end(self, snapshot: Snapshot) -> dict[str, str]:
        """A card saw its run end (``bot.slack.follow``): recorded from what it read, no more
        reads. Returns the answers its record keeps (for the card's closing note)."""
        try:
            record = await self.records.get(snapshot.run.sid)
            if record is None:
                return {}
            if record.state in FINAL:
                return record.answers
            widget, failed = end_of(snapshot.steps)
            updated = snapshot.updated.timestamp() if snapshot.updated else 0.0
            answers = await self._answers(record.flow_sid, snapshot.context)
            done = await self.records.finish(
                record,
                "failed" if failed else "ended",
                widget=widget,
                ended_at=updated,
                answers=answers,
            )
            if done is None:  # another process recorded it first: its answers as kept
                kept = await self.records.get(snapshot.run.sid)
                return kept.answers if kept else answers
            await self._finished(done, snapshot.context)
            return done.answers
        except StateUnavailable as exc:
            self.outage.failed(exc)
            return {}
