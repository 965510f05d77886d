"""A bulk run's costs bounded by the work at hand (issue 34, 1): its counts kept as rows
settle and runs end (a progress edit reads them, never every row); a row claimed once
in one hash (and a claim from an older version honoured); the results file written a
page at a time and saying what the whole file said. On memory and a real Redis."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bot.domain.bulk_input import Row
from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.spreadsheet import csv_text
from bot.engage.bulk.state import BulkState, RowResult, RunMeta
from bot.runs.records import Records, RunRecord
from bot.slack.bulk import report
from bot.slack.bulk.report import RESULTS_HEADER, STATUS_HEADER, Reporter, results_row
from bot.state.store import Durable, Store

FLOW = "FW" + "a" * 32
RUN = "r1"


def results_file(
    rows: dict[str, str], outcomes: dict[str, RowResult], records: dict[str, RunRecord]
) -> str:
    """The results file written whole, in one go: what the pages must add up to."""
    fields: list[str] = []
    for kept in records.values():
        fields += [k for k in kept.answers if k not in fields]
    lines = [
        results_row(n, rows.get(n), outcomes[n], records.get(n), fields)
        for n in sorted(outcomes, key=int)
    ]
    return csv_text((*RESULTS_HEADER, *STATUS_HEADER, *fields), lines)


async def a_run(state: BulkState, store: Store, rows: int) -> None:
    meta = RunMeta(flow_sid=FLOW, requester="U0CALLER", channel="C0", total=rows)
    await store.hset(f"bulk:{RUN}", meta.fields(), 3600)
    kept = {
        str(n): json.dumps(asdict(Row(n, f"+1617555{n:04d}", f"+1617555{n:04d}", {})))
        for n in range(2, rows + 2)
    }
    await store.hset(f"bulk:{RUN}:rows", kept, 3600)


async def test_counts_move_as_rows_settle_even_when_settled_again(store: Store) -> None:
    state = BulkState(Durable(store))
    await state.settle(RUN, "2", RowResult(outcome="started", sid="FN1"))
    await state.settle(RUN, "3", RowResult(outcome="failed"))
    await state.settle(RUN, "3", RowResult(outcome="unknown"))  # a process's later word
    await asyncio.gather(
        *(state.settle(RUN, str(n), RowResult(outcome="suppressed")) for n in range(4, 24))
    )
    await asyncio.gather(  # the same row, settled at once by two processes
        state.settle(RUN, "30", RowResult(outcome="cancelled")),
        state.settle(RUN, "30", RowResult(outcome="started", sid="FN2")),
    )
    counts = await state.counts(RUN)
    outcomes = await state.outcomes(RUN)
    assert sum(counts.values()) == len(outcomes) == 23
    assert counts["started"] + counts["cancelled"] == 2
    assert (counts["failed"], counts["unknown"], counts["suppressed"]) == (0, 1, 20)


async def test_a_run_settled_before_the_counts_is_tallied_from_its_rows(store: Store) -> None:
    """A run in flight across the upgrade: its rows settled by the older version."""
    state = BulkState(Durable(store))
    old = {"2": RowResult(outcome="started").model_dump_json(), "3": '{"outcome": "failed"}'}
    await store.hset(f"bulk:{RUN}:out", old, 3600)
    counts = await state.counts(RUN)
    assert (counts["started"], counts["failed"]) == (1, 1)


async def test_run_ends_are_counted_once_each(store: Store) -> None:
    state = BulkState(Durable(store))
    for _ in range(3):  # the sweep and an event, told more than once
        await state.run_ended(RUN, "FN1", "ended", "thanks")
    await state.run_ended(RUN, "FN2", "failed", "send")
    await state.run_ended(RUN, "FN3", "ended", "")
    assert await state.end_counts(RUN) == {"s:ended": 2, "w:thanks": 1, "w:?": 1, "s:failed": 1}
    assert await state.run_ends_count(RUN) == 3


async def test_a_row_is_claimed_once_and_an_older_versions_claim_holds(store: Store) -> None:
    state = BulkState(Durable(store))
    claims = await asyncio.gather(*(state.claim_row(RUN, "2", f"p{n}") for n in range(5)))
    assert claims.count(True) == 1
    await store.set(f"bulk:{RUN}:sending:3", "old-process", 3600)  # claimed before 2026-12
    assert not await state.claim_row(RUN, "3", "new-process")


async def test_the_progress_message_reads_counts_not_rows(store: Store) -> None:
    state = BulkState(Durable(store))
    await a_run(state, store, 50)
    for n in range(2, 52):
        await state.settle(RUN, str(n), RowResult(outcome="started", sid=f"FN{n}"))
    reads: list[str] = []
    real = store.hgetall

    async def counted(key: str) -> dict[str, str]:
        reads.append(key)
        return await real(key)

    store.hgetall = counted  # type: ignore[method-assign]
    reporter = Reporter(state, None, Records(Durable(store)))
    meta = await state.meta(RUN)
    assert meta is not None
    message = await reporter._message(RUN, meta)
    assert "50 started" in json.dumps(message)
    assert f"bulk:{RUN}:out" not in reads
    assert f"bulk:{RUN}:ends" not in reads
    assert all(len(key) < 40 for key in reads)  # the run, its counts: a few small hashes


async def test_the_results_file_is_written_a_page_at_a_time(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS_PAGE", 3)
    state, records = BulkState(Durable(store)), Records(Durable(store))
    await a_run(state, store, 8)
    pages: list[list[str]] = []
    real_page = state.page

    async def page(run_id: str, numbers: list[str]) -> Any:
        pages.append(numbers)
        return await real_page(run_id, numbers)

    state.page = page  # type: ignore[method-assign]
    for n in range(2, 10):
        if n % 3:
            command = EngageCommand(FLOW, None, f"+1617555{n:04d}", "+16175550100", {})
            record = await records.started(
                f"FN{n:032x}", command, Caller("U0CALLER"), bulk_run=RUN, row=str(n)
            )
            await state.settle(RUN, str(n), RowResult(outcome="started", sid=record.sid))
            if n == 4:
                await records.finish(record, "ended", widget="thanks", answers={"score": "=5"})
        else:
            await state.settle(RUN, str(n), RowResult(outcome="suppressed", message="opted out"))
    path = tmp_path / "results.csv"
    written = await Reporter(state, None, records).write_results(RUN, path)
    whole = results_file(
        await store.hgetall(f"bulk:{RUN}:rows"),
        await state.outcomes(RUN),
        {r.row: r for r in await records.of_bulk(RUN)},
    )
    assert written == 8
    assert pages == [["2", "3", "4"], ["5", "6", "7"], ["8", "9"]]
    assert path.read_bytes().decode() == whole
    assert "'=5" in whole  # answers neutralised for spreadsheets
