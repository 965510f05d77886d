"""Where a bulk run lives: its record, its rows, their outcomes, and the claims that make
every row go out at most once. Kept in ``Durable`` state (Redis with ``REDIS_URL``)."""

from __future__ import annotations

import json
from typing import Literal

from bot.domain.bulk_input import Row
from bot.domain.bulk_plan import Plan, end_moves
from bot.domain.caller import Caller
from bot.domain.record import Record, field_text
from bot.state.store import Durable

ACTIVE = "bulk:active"  # hash: run ID -> "1", every run starting, running or finishing
KEEP_SECONDS = 7 * 24 * 3600
PREVIEW_SECONDS = 3600  # a preview's Start button stays valid this long
ROWS_AT_ONCE = 5000  # rows written to the store in one command
SUPPRESSED = "suppressed: "  # a kept row's problem: skipped at the preview (opted out, capped)

Status = Literal["previewed", "dropped", "starting", "running", "paused", "cancelled", "done"]


class RunMeta(Record):
    """A bulk run: what it sends, who started it, where its progress message is."""

    flow_sid: str
    flow_alias: str = ""
    flow_name: str = ""
    sender: str = ""
    requester: str = ""
    channel: str = ""
    team: str = ""
    status: Status = "previewed"
    total: int = 0
    began: float = 0.0  # epoch seconds, at Start
    ts: str = ""  # the progress message, once posted
    note: str = ""  # e.g. who paused it
    finished: bool = False  # every row settled; what is left is showing it
    shown_final: bool = False  # the progress message shows the final state
    uploaded: bool = False  # the results file reached Slack
    upload_unsure: bool = False  # an upload failed without Slack's answer: it may be there
    deliver_tries: int = 0  # attempts at the final message and the results file
    deliver_after: float = 0.0  # epoch seconds: the next attempt, not before
    finished_at: float = 0.0
    final: bool = False  # the results file shows every run followed to its end
    started: int = 0  # rows whose run started (known once the starts are finished)

    @property
    def caller(self) -> Caller:
        return Caller(self.requester, self.channel, self.team)

    @property
    def plan(self) -> Plan:
        return Plan(self.flow_sid, self.flow_alias or None, self.flow_name or None, self.sender)


class RowResult(Record):
    """How one row ended: started (with the run's SID), failed, unknown, cancelled, or
    suppressed (its contact opted out, or reached its cap: never sent)."""

    outcome: Literal["started", "failed", "unknown", "cancelled", "suppressed"]
    sid: str = ""
    code: str = ""
    message: str = ""


class BulkState:
    """The keys of every run, over ``Durable`` state. Raises ``StateUnavailable``."""

    def __init__(self, state: Durable) -> None:
        self.state = state

    async def keep_preview(self, run_id: str, made: Plan, caller: Caller) -> None:
        meta = RunMeta(
            flow_sid=made.flow_sid,
            flow_alias=made.flow_alias or "",
            flow_name=made.flow_name or "",
            sender=made.sender,
            requester=caller.user_id,
            channel=caller.channel_id,
            team=caller.team_id,
            total=len(made.valid) + len(made.suppressed),
        )
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}", meta.fields(), PREVIEW_SECONDS))
        marked = [  # kept to be settled as suppressed, never sent
            Row(row.number, row.typed, row.to, row.parameters, SUPPRESSED + why.kind)
            for row, why in made.suppressed
        ]
        kept = [*made.valid, *marked]
        for first in range(0, len(kept), ROWS_AT_ONCE):  # never one 100,000-field command
            await self._keep_rows(run_id, kept[first : first + ROWS_AT_ONCE])
        dues = {str(n): repr(at) for n, at in made.dues.items()}
        if dues:
            await self.state.use(lambda s: s.hset(f"bulk:{run_id}:due", dues, KEEP_SECONDS))

    async def _keep_rows(self, run_id: str, rows: list[Row]) -> None:
        kept = {str(r.number): json.dumps(r.kept()) for r in rows}
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}:rows", kept, KEEP_SECONDS))

    async def dues(self, run_id: str) -> dict[str, float]:
        """When each row is due (``--at``/``--in``); empty: at Start."""
        stored = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:due"))
        return {n: float(at) for n, at in stored.items()}

    async def meta(self, run_id: str) -> RunMeta | None:
        return RunMeta.of(await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}")))

    async def update(self, run_id: str, **changes: object) -> None:
        """Set some fields of the run's record (each alone: other processes' fields stay)."""
        unknown = set(changes) - set(RunMeta.model_fields)
        assert not unknown, f"not fields of a bulk run: {unknown}"
        fields = {k: field_text(v) for k, v in changes.items()}
        await self.state.use(lambda s: s.hset(f"bulk:{run_id}", fields, KEEP_SECONDS))

    async def claim_start(self, run_id: str) -> bool:
        """The first Start click wins (a double click, or two people, start it once)."""
        return await self.state.use(lambda s: s.add(f"bulk:{run_id}:go", "1", KEEP_SECONDS))

    async def claim_once(self, run_id: str, what: str, seconds: float) -> bool:
        """A claim on doing ``what`` for the run, held ``seconds`` (one process does it)."""
        return await self.state.use(lambda s: s.add(f"bulk:{run_id}:{what}", "1", seconds))

    async def hold(self, run_id: str, what: str, seconds: float) -> None:
        """Hold the claim on ``what`` for ``seconds`` from now, whoever held it."""
        await self.state.use(lambda s: s.set(f"bulk:{run_id}:{what}", "1", seconds))

    async def release(self, run_id: str, what: str) -> None:
        """Give up the claim on ``what`` (``claim_once``): another process may take it."""
        await self.state.use(lambda s: s.delete(f"bulk:{run_id}:{what}"))

    async def rows_left(self) -> int:
        """Rows not yet settled in the runs under way (for the queue-depth gauge)."""
        left = 0
        for run_id in await self.listed():
            meta = await self.meta(run_id)
            if meta is not None and not meta.finished and meta.status in ("running", "paused"):
                left += max(0, meta.total - await self.settled_count(run_id))
        return left

    async def listed(self) -> list[str]:
        return list(await self.state.use(lambda s: s.hgetall(ACTIVE)))

    async def enlist(self, run_id: str) -> None:
        await self.state.use(lambda s: s.hset(ACTIVE, {run_id: "1"}, KEEP_SECONDS))

    async def unlist(self, run_id: str) -> None:
        await self.state.use(lambda s: s.hdel(ACTIVE, run_id))

    async def row_numbers(self, run_id: str) -> list[str]:
        """The run's rows' numbers (not the rows)."""
        return await self.state.use(lambda s: s.hkeys(f"bulk:{run_id}:rows"))

    async def row(self, run_id: str, number: str) -> Row | None:
        stored = await self.state.use(lambda s: s.hget(f"bulk:{run_id}:rows", number))
        return Row(**json.loads(stored)) if stored is not None else None

    async def claim_row(self, run_id: str, number: str, who: str) -> bool:
        """Mark row ``number`` as being sent (or settled) before anything goes out: the
        claim is atomic (a field of one hash, set only if it is not: ~30 bytes a row),
        so a row is claimed once, whoever tries."""
        key, claim = f"bulk:{run_id}:sending", {number: who}
        if not await self.state.use(
            lambda s: s.hset_indexed(key, claim, KEEP_SECONDS, {}, only_if={number: ""})
        ):
            return False
        # A claim made by a version before 2026-12, a key a row (a run in flight across
        # the upgrade; gone with the run, after 7 days): it was claimed then.
        legacy = f"bulk:{run_id}:sending:{number}"
        return await self.state.use(lambda s: s.get(legacy)) is None

    async def settle(self, run_id: str, number: str, outcome: RowResult) -> None:
        """Row ``number``'s outcome kept, and the run's counts moved with it in the same
        atomic step (from the outcome it had, if any): a progress edit reads the counts,
        never every row."""
        while not await self._settle_once(run_id, number, outcome):
            pass  # another process settled it meanwhile: moved from its outcome

    async def _settle_once(self, run_id: str, number: str, outcome: RowResult) -> bool:
        key, value = f"bulk:{run_id}:out", json.dumps(outcome.model_dump(mode="json"))
        old = await self.state.use(lambda s: s.hget(key, number))
        moves: dict[str, int] = {outcome.outcome: 1}
        if old is not None:
            was = RowResult.model_validate_json(old).outcome
            moves[was] = moves.get(was, 0) - 1
        counts, guard = {f"bulk:{run_id}:count": moves}, {number: old or ""}
        return await self.state.use(
            lambda s: s.hset_indexed(
                key, {number: value}, KEEP_SECONDS, {}, counts=counts, only_if=guard
            )
        )

    async def counts(self, run_id: str) -> dict[str, int]:
        """How many rows started, failed, are unknown, were cancelled or suppressed: the
        counts kept as rows settle (a run settled before they were: its outcomes)."""
        kept = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:count"))
        if not kept and await self.settled_count(run_id):
            return tally(await self.outcomes(run_id))
        counts = dict.fromkeys(OUTCOMES, 0)
        counts.update({name: int(n) for name, n in kept.items() if name in counts})
        return counts

    async def settled(self, run_id: str, number: str) -> bool:
        value = await self.state.use(lambda s: s.hget(f"bulk:{run_id}:out", number))
        return value is not None

    async def settled_count(self, run_id: str) -> int:
        return await self.state.use(lambda s: s.hlen(f"bulk:{run_id}:out"))

    async def outcomes(self, run_id: str) -> dict[str, RowResult]:
        stored = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:out"))
        return {n: RowResult.model_validate_json(v) for n, v in stored.items()}

    async def run_ended(self, run_id: str, record_id: str, state: str, widget: str) -> None:
        """One started run's end, for the second tally: counted once per run, however
        often it is told."""
        value = json.dumps([state, widget])
        counts = {f"bulk:{run_id}:endcount": end_moves(state, widget)}
        await self.state.use(
            lambda s: s.hset_indexed(
                f"bulk:{run_id}:ends",
                {record_id: value},
                KEEP_SECONDS,
                {},
                counts=counts,
                only_if={record_id: ""},
            )
        )

    async def run_ends_count(self, run_id: str) -> int:
        return await self.state.use(lambda s: s.hlen(f"bulk:{run_id}:ends"))

    async def end_counts(self, run_id: str) -> dict[str, int]:
        """The started runs' ends, counted as they came: ``s:<state>`` and, for ended
        runs, ``w:<end widget>`` (a run whose runs began ending before the counts: read
        from its ends)."""
        kept = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:endcount"))
        if kept or not await self.run_ends_count(run_id):
            return {name: int(n) for name, n in kept.items()}
        stored = await self.state.use(lambda s: s.hgetall(f"bulk:{run_id}:ends"))
        counts: dict[str, int] = {}
        for value in stored.values():
            for name, n in end_moves(*_end(value)).items():
                counts[name] = counts.get(name, 0) + n
        return counts

    async def page(
        self, run_id: str, numbers: list[str]
    ) -> list[tuple[str, str | None, str | None]]:
        """Rows ``numbers``: each with its row (JSON) and its outcome (JSON), if kept."""
        rows = await self.state.use(lambda s: s.hmget(f"bulk:{run_id}:rows", numbers))
        outs = await self.state.use(lambda s: s.hmget(f"bulk:{run_id}:out", numbers))
        return list(zip(numbers, rows, outs, strict=True))

    async def numbers(self, run_id: str) -> list[int]:
        """Every settled row's number, in order (the results file reads pages of them)."""
        keys = await self.state.use(lambda s: s.hkeys(f"bulk:{run_id}:out"))
        return sorted(int(n) for n in keys)


OUTCOMES = ("started", "failed", "unknown", "cancelled", "suppressed")


def tally(outcomes: dict[str, RowResult]) -> dict[str, int]:
    """How many rows started, failed, are unknown, were cancelled or suppressed."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for outcome in outcomes.values():
        counts[outcome.outcome] += 1
    return counts


def _end(value: str) -> tuple[str, str]:
    """A kept end: ``["state", "widget"]``; ``state|widget`` from a version before
    2026-12 (a run in flight across the upgrade; gone with the run, after 7 days)."""
    if value.startswith("["):
        state, widget = json.loads(value)
        return str(state), str(widget)
    state, _, widget = value.partition("|")
    return state, widget
