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

import secrets
import time
from collections.abc import Callable
from typing import Literal

from pydantic import Field

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.errors import StudioError
from bot.domain.phone import mask
from bot.domain.record import Record, field_text
from bot.state.store import Durable

INDEX = "rec:index"  # record ID -> started_at
ACTIVE = "rec:active"  # record ID -> when to check it next
DAY = 24 * 3600.0

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
        """Keep ``record`` with its indexes (and, at ``check``, in the sweep's), in one
        round trip."""
        indexes: dict[str, dict[str, float]] = {INDEX: {record.id: record.started_at}}
        if record.bulk_run:
            score = float(record.row) if record.row.isdigit() else 0.0
            indexes[f"rec:bulk:{record.bulk_run}"] = {record.id: score}
        if check is not None:
            indexes[ACTIVE] = {record.id: check}
        key, fields = f"rec:{record.id}", record.fields()
        await self.state.use(lambda s: s.hset_indexed(key, fields, self.keep, indexes))

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
        )
        await self._put(record)
        return record

    async def get(self, record_id: str) -> RunRecord | None:
        return RunRecord.of(await self.state.use(lambda s: s.hgetall(f"rec:{record_id}")))

    async def _many(self, ids: list[str]) -> list[RunRecord]:
        found = []
        for record_id in ids:
            if (record := await self.get(record_id)) is not None:
                found.append(record)
        return found

    async def in_window(self, since: float, until: float | None = None) -> list[RunRecord]:
        """Every record started in ``since``..``until`` (now), oldest first."""
        end = until if until is not None else time.time()
        await self.state.use(lambda s: s.zremrange(INDEX, float("-inf"), time.time() - self.keep))
        return await self._many(await self.state.use(lambda s: s.zrange(INDEX, since, end)))

    async def of_bulk(self, run_id: str) -> list[RunRecord]:
        """The records of a bulk run's rows, in row order."""
        key = f"rec:bulk:{run_id}"
        ids = await self.state.use(lambda s: s.zrange(key, float("-inf"), float("inf")))
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
    ) -> RunRecord:
        """How the run ended; it is no longer followed. Returns the record as kept."""
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
            }
        )
        await self.state.use(lambda s: s.hset(f"rec:{record.id}", done.fields(), self.keep))
        await self.state.use(lambda s: s.zrem(ACTIVE, record.id))
        return done
