"""Run records: every start the bot makes, kept past Studio's 30 days.

One record per start, whatever asked for it (the slash command, the form, a bulk row,
the terminal's ``trigger``): the flow, the contact as the audit stores it (masked),
who started it and where (channel, bulk run), when; then, once known, how it ended
(``state``), the widget it ended at, how long it took, and the answers collected.
A start Twilio refused, or whose outcome is unknown, is a record too (with Twilio's
code), so that a report counts failures.

Kept ``RUN_RECORD_DAYS`` in ``Durable`` state: in Redis with ``REDIS_URL`` (a hash per
record, and sorted sets by time, by next check, and by bulk run), in this process's
memory otherwise (lost on restart). The card, the Home tab, the bulk results and the
report read from here; ``bot.runs.tracker`` follows the active ones to their end.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Literal

from pydantic import Field

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.errors import StudioError
from bot.domain.phone import mask
from bot.domain.record import Record, field_text
from bot.domain.summary import (
    Summary,
    day_of,
    ended_counts,
    started_counts,
    summary_of,
    whole_counts,
)
from bot.state.store import Durable

INDEX = "rec:index"  # record ID -> started_at
ACTIVE = "rec:active"  # record ID -> when to check it next
FLOWS = "agg:flows"  # flow SID -> its latest start: the flows with counters
COUNTED = field_text(value=True)  # a record's "counted" field, as kept
DAY = 24 * 3600.0
ANY_TIME = 1e18  # epoch seconds no check is ever due past (Lua reads it; not inf)

State = Literal["active", "ended", "failed", "not_started", "unknown", "unfollowed"]
FINAL: frozenset[str] = frozenset({"ended", "failed", "not_started", "unknown", "unfollowed"})


class RunRecord(Record):
    """One start and, once known, how its run ended."""

    id: str  # the run SID, or "x…" for a start that made no run
    flow_sid: str
    contact: str  # masked, as the audit stores it
    starter: str
    contact_key: str = ""  # its key in the opt-out list (an HMAC: not the number)
    started_at: float
    sid: str = ""
    channel: str = ""
    bulk_run: str = ""
    row: str = ""
    # active: running; ended; failed: ended at a step that failed; not_started: Twilio
    # refused; unknown: the start's outcome is unknown; unfollowed: still active when
    # following stopped
    state: State = "active"
    code: str = ""  # Twilio's error code, for a start that failed
    widget: str = ""  # the widget it is in, then the one it ended at
    step_failed: bool = False  # that widget's step is one a run fails at (events)
    ended_at: float = 0.0
    duration_s: float = 0.0
    answers: dict[str, str] = Field(default_factory=dict)  # field -> text: its answers
    follow_until: float = 0.0
    heard: bool = False  # Event Streams spoke of its run: the sweep's net is wider
    counted: bool = False  # its day's counters include it (bot.domain.summary)


def counters(flow_sid: str, started_at: float) -> str:
    """The key of a flow's counters for the day a run started."""
    return f"agg:{flow_sid}:{day_of(started_at)}"


class Records:
    """The records, over ``Durable`` state. Raises ``StateUnavailable``."""

    def __init__(
        self,
        state: Durable,
        *,
        days: float = 90.0,
        follow_hours: float = 48.0,
        first_check: Callable[[], float] | None = None,
        keyed: Callable[[str], str] | None = None,
    ) -> None:
        self.state = state
        self.keyed = keyed  # a contact's key in the opt-out list (bot.engage.consent)
        self.keep = days * DAY
        self.follow_hours = follow_hours
        # seconds after a start before the sweep first looks (None: at once)
        self.first_check = first_check

    async def _put(self, record: RunRecord, *, check: float | None = None) -> None:
        """Keep a new ``record`` with its indexes (and, at ``check``, in the sweep's) and
        counted in its day's counters, in one round trip."""
        indexes: dict[str, dict[str, float]] = {
            INDEX: {record.id: record.started_at},
            FLOWS: {record.flow_sid: record.started_at},
        }
        if record.bulk_run:
            score = float(record.row) if record.row.isdigit() else 0.0
            indexes[f"rec:bulk:{record.bulk_run}"] = {record.id: score}
        if check is not None:
            indexes[ACTIVE] = {record.id: check}
        key, fields = f"rec:{record.id}", record.fields()
        counts = {
            counters(record.flow_sid, record.started_at): started_counts(record.state, record.code)
        }
        await self.state.use(
            lambda s: s.hset_indexed(key, fields, self.keep, indexes, counts=counts)
        )

    async def started(
        self, sid: str, command: EngageCommand, caller: Caller, *, bulk_run: str = "", row: str = ""
    ) -> RunRecord:
        """A run started: recorded as active, to be followed to its end."""
        now = time.time()
        record = RunRecord(
            id=sid,
            sid=sid,
            flow_sid=command.flow_sid,
            contact=mask(command.to),
            contact_key=self.keyed(command.to) if self.keyed else "",
            starter=caller.user_id,
            channel=caller.channel_id,
            started_at=now,
            bulk_run=bulk_run,
            row=row,
            follow_until=now + self.follow_hours * 3600,
            counted=True,
        )
        await self._put(record, check=now + (self.first_check() if self.first_check else 0.0))
        return record

    async def not_started(
        self,
        command: EngageCommand,
        caller: Caller,
        error: StudioError,
        *,
        bulk_run: str = "",
        row: str = "",
    ) -> RunRecord:
        """A start that made no run (refused by Twilio), or whose outcome is unknown."""
        record = RunRecord(
            id="x" + secrets.token_hex(8),
            flow_sid=command.flow_sid,
            contact=mask(command.to),
            starter=caller.user_id,
            channel=caller.channel_id,
            started_at=time.time(),
            bulk_run=bulk_run,
            row=row,
            state="unknown" if error.outcome_unknown else "not_started",
            code=str(error.code or error.status or ""),
            counted=True,
        )
        await self._put(record)
        return record

    async def get(self, record_id: str) -> RunRecord | None:
        return RunRecord.of(await self.state.use(lambda s: s.hgetall(f"rec:{record_id}")))

    async def _many(self, ids: list[str]) -> list[RunRecord]:
        """The records of ``ids`` that are still kept, in order: read in one round trip."""
        keys = [f"rec:{record_id}" for record_id in ids]
        hashes = await self.state.use(lambda s: s.hgetall_many(keys))
        return [record for found in hashes if (record := RunRecord.of(found)) is not None]

    async def in_window(self, since: float, until: float | None = None) -> list[RunRecord]:
        """Every record started in ``since``..``until`` (now), oldest first."""
        end = until if until is not None else time.time()
        return await self._many(await self.state.use(lambda s: s.zrange(INDEX, since, end)))

    async def trim(self) -> None:
        """Forget the index entries of records past ``RUN_RECORD_DAYS`` (their hashes
        expire by themselves; the indexes live on with every new record)."""
        old = time.time() - self.keep
        await self.state.use(lambda s: s.zremrange(INDEX, float("-inf"), old))
        await self.state.use(lambda s: s.zremrange(FLOWS, float("-inf"), old))

    async def pages(
        self, since: float, until: float, page: int = 500
    ) -> AsyncIterator[list[RunRecord]]:
        """The records started in ``since``..``until``, oldest first, ``page`` at a time:
        a whole year's in the memory of one page."""
        start = since
        while True:
            ids = await self._ids_from(start, page + 1)
            found = await self._many(ids[:page])
            kept = [r for r in found if r.started_at <= until]
            if kept:
                yield kept
            if len(ids) <= page or len(kept) < len(found):  # the end, or past ``until``
                return
            start = max(await self._score(ids[page]), math.nextafter(start, math.inf))

    async def of_bulk(
        self, run_id: str, first: float = float("-inf"), last: float = float("inf")
    ) -> list[RunRecord]:
        """The records of a bulk run's rows (numbered ``first`` to ``last``), in row order."""
        key = f"rec:bulk:{run_id}"
        ids = await self.state.use(lambda s: s.zrange(key, first, last))
        return await self._many(ids)

    async def due(self, now: float, limit: int) -> list[RunRecord]:
        """Active records whose next check is due, the most overdue first."""
        ids = await self.state.use(lambda s: s.zrange(ACTIVE, float("-inf"), now, limit))
        return await self._many(ids)

    async def overdue_count(self, now: float) -> int:
        """Active records whose check is more than a minute past due (the sweep is behind)."""
        return await self.state.use(lambda s: s.zcount(ACTIVE, float("-inf"), now - 60))

    async def active_count(self) -> int:
        return await self.state.use(lambda s: s.zcard(ACTIVE))

    async def claim_check(self, record_id: str, now: float, when: float) -> bool:
        """Take the due check of ``record_id`` (next one at ``when``): whether this process
        did; of several that found it due, one reads the run."""
        return await self.state.use(lambda s: s.zclaim(ACTIVE, record_id, now, when))

    async def heard(self, record: RunRecord, until: float) -> None:
        """Event Streams spoke of the run: the sweep need not read it before ``until``.
        The next check only moves later, and only while the record is followed."""
        if not record.heard:
            fields = {"heard": field_text(value=True)}
            await self.state.use(lambda s: s.hset(f"rec:{record.id}", fields, self.keep))
        await self.state.use(lambda s: s.zclaim(ACTIVE, record.id, until, until))

    async def recheck(self, record_id: str, when: float) -> None:
        """Check the run again at ``when`` (a read of its end failed), while followed."""
        await self.state.use(lambda s: s.zclaim(ACTIVE, record_id, ANY_TIME, when))

    async def moved(self, record_id: str, widget: str, *, failed: bool = False) -> None:
        """The run left ``widget`` (an Event Streams step), a failure step or not."""
        fields = {"widget": widget, "step_failed": field_text(failed)}
        await self.state.use(lambda s: s.hset(f"rec:{record_id}", fields, self.keep))

    async def finish(
        self,
        record: RunRecord,
        state: State,
        *,
        widget: str = "",
        ended_at: float = 0.0,
        answers: dict[str, str] | None = None,
    ) -> RunRecord | None:
        """How the run ended; it is no longer followed; its day's counters move. Returns
        the record as kept, or None if another process recorded its end first (or it
        changed since ``record`` was read: the sweep reads it again)."""
        ended_at = ended_at or time.time()
        done = record.model_copy(
            update={
                "state": state,
                "widget": widget or record.widget,
                "ended_at": ended_at if state != "unfollowed" else 0.0,
                "duration_s": round(max(0.0, ended_at - record.started_at), 1)
                if state != "unfollowed"
                else 0.0,
                "answers": dict(answers or {}),
                "counted": True,
            }
        )
        if record.counted:  # counted as active when it started: the end moves it
            moves = ended_counts(state, done.widget, done.answers)
        else:  # recorded before the counters: counted whole, now
            moves = whole_counts(state, done.code, done.widget, done.answers)
        guards = {"state": "active", "counted": COUNTED if record.counted else ""}
        key, counts = f"rec:{record.id}", {counters(record.flow_sid, record.started_at): moves}
        written = await self.state.use(
            lambda s: s.hset_indexed(
                key, done.fields(), self.keep, {}, counts=counts, only_if=guards
            )
        )
        await self.state.use(lambda s: s.zrem(ACTIVE, record.id))
        return done if written else None

    # -- the counters ------------------------------------------------------------------

    async def count_old_once(self) -> int:
        """``count_old``, by one process after an upgrade (the others skip it, and a
        process that stops half way leaves it to the next after an hour); how many."""
        if await self.state.use(lambda s: s.get("agg:old:done")):
            return 0
        if not await self.state.use(lambda s: s.add("agg:old:claim", "1", 3600)):
            return 0
        counted = await self.count_old()
        await self.state.use(lambda s: s.set("agg:old:done", "1", self.keep))
        return counted

    async def count_old(self, page: int = 500) -> int:
        """Count every record written before the counters were (an upgrade) into its
        day's counters, once whichever process runs it; how many were counted."""
        counted = 0
        async for found in self.pages(float("-inf"), float("inf"), page):
            for record in found:
                if not record.counted and await self._count_whole(record):
                    counted += 1
        return counted

    async def _ids_from(self, start: float, count: int) -> list[str]:
        return await self.state.use(lambda s: s.zrange(INDEX, start, float("inf"), count))

    async def _score(self, record_id: str) -> float:
        record = await self.get(record_id)
        return record.started_at if record else float("inf")

    async def _count_whole(self, record: RunRecord) -> bool:
        left = self.keep - (time.time() - record.started_at)  # its TTL is not extended
        if left <= 0:
            return False
        moves = whole_counts(record.state, record.code, record.widget, record.answers)
        key, counts = f"rec:{record.id}", {counters(record.flow_sid, record.started_at): moves}
        marked = {"counted": COUNTED}
        return await self.state.use(
            lambda s: s.hset_indexed(
                key,
                marked,
                left,
                {FLOWS: {record.flow_sid: record.started_at}},
                counts=counts,
                only_if={"counted": ""},
            )
        )

    async def summary(self, flow_sids: list[str], since: float, until: float) -> Summary:
        """The runs of ``flow_sids`` started on the UTC days from ``since``'s to
        ``until``'s, from the days' counters: a few reads whatever the number of runs."""
        days, day = [], since
        while day_of(day) <= day_of(until):
            days.append(day_of(day))
            day += DAY
        keys = [f"agg:{sid}:{d}" for sid in flow_sids for d in days]
        found = await asyncio.gather(*(self._counters(key) for key in keys))
        return summary_of(found)

    async def _counters(self, key: str) -> dict[str, str]:
        return await self.state.use(lambda s: s.hgetall(key))

    async def flows(self) -> list[str]:
        """Every flow with counters kept (a run started within ``RUN_RECORD_DAYS``)."""
        since = time.time() - self.keep
        return await self.state.use(lambda s: s.zrange(FLOWS, since, float("inf")))
