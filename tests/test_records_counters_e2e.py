"""A year of records (issue 34, 2): each flow's counters per day move as runs start,
end and answer, in the same atomic step as the record; a run's end is counted once
whichever process records it; records kept before the counters are counted in once;
a report over days reads the counters, not the records, and says the same; the CSV is
written page by page; Home tabs opened at once share one reading. On memory and on a
real Redis."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from pathlib import Path

import pytest

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.errors import StudioAPIError
from bot.domain.spreadsheet import csv_text
from bot.domain.summary import OTHERS, Summary, summary_of, whole_counts
from bot.runs.records import Records, RunRecord, counters
from bot.slack.report import Reports, csv_header, csv_row, summarise
from bot.state.scripts import ANSWERS_KEPT
from bot.state.store import Durable, Store

FLOW = "FW" + "a" * 32
OTHER = "FW" + "b" * 32
CALLER = Caller("U0CALLER", "C0CHANNEL")


def records_csv(records: list[RunRecord], names: dict[str, str]) -> str:
    """The report's CSV written whole, in one go: what the pages must add up to."""
    fields: list[str] = []
    for record in records:
        fields += [k for k in record.answers if k not in fields]
    return csv_text(csv_header(fields), (csv_row(r, names, fields) for r in records))


def command(n: int, flow: str = FLOW) -> EngageCommand:
    return EngageCommand(flow, None, f"+1617555{n:04d}", "+16175550100", {})


async def started(records: Records, n: int, flow: str = FLOW) -> RunRecord:
    return await records.started(f"FN{n:032x}", command(n, flow), CALLER)


async def test_starts_ends_and_answers_move_the_days_counters(store: Store) -> None:
    records = Records(Durable(store))
    runs = [await started(records, n) for n in range(6)]
    await records.started("FN" + "f" * 32, command(9, OTHER), CALLER)
    refused = StudioAPIError("Invalid 'To' Phone Number", status=400, code=21211)
    await records.not_started(command(7), CALLER, refused)
    await records.finish(runs[0], "ended", widget="thanks", answers={"score": "5"})
    await records.finish(runs[1], "ended", widget="thanks", answers={"score": "5"})
    await records.finish(runs[2], "failed", widget="send")
    await records.finish(runs[3], "unfollowed")
    now = time.time()
    summary = await records.summary([FLOW], now - 86400, now)
    assert summary.total == 7
    assert dict(summary.by_state) == {
        "ended": 2,
        "active": 2,
        "failed": 1,
        "unfollowed": 1,
        "not_started": 1,
    }
    assert summary.funnel == (("thanks", 2), ("send", 1))
    assert summary.answers == (("score", (("5", 2),)),)
    assert summary.failures == (("21211", 1),)
    assert summary.answered == 2
    everything = [r for r in await records.in_window(0) if r.flow_sid == FLOW]
    assert summarise(everything) == summary  # the counters say what the records say
    assert sorted(await records.flows()) == [FLOW, OTHER]


async def test_an_end_recorded_twice_is_counted_once(store: Store) -> None:
    """Two processes (an event and the sweep) recording the same end: one counts it,
    the other is told it was recorded already (None) and tells no one."""
    records = Records(Durable(store))
    run = await started(records, 1)
    first, second = await asyncio.gather(
        records.finish(run, "ended", widget="thanks"),
        records.finish(run, "ended", widget="thanks"),
    )
    assert [first is None, second is None].count(True) == 1
    summary = await records.summary([FLOW], time.time() - 60, time.time())
    assert dict(summary.by_state) == {"ended": 1}
    assert summary.funnel == (("thanks", 1),)


async def test_records_kept_before_the_counters_are_counted_once(store: Store) -> None:
    records = Records(Durable(store))
    old = [await started(records, n) for n in range(3)]
    for record in old:  # as an older version kept them: no counters, no "counted"
        await store.hdel(f"rec:{record.id}", "counted")
    await store.delete(counters(FLOW, old[0].started_at))
    old = [r.model_copy(update={"counted": False}) for r in old]
    await records.finish(old[0], "ended", widget="thanks")  # ends before the upgrade ran
    assert await records.count_old_once() == 2
    assert await records.count_old_once() == 0  # once, whichever process
    assert await records.finish(old[1], "ended", widget="bye") is None  # read before: again
    again = await records.get(old[1].id)
    assert again is not None
    assert await records.finish(again, "ended", widget="bye") is not None
    summary = await records.summary([FLOW], time.time() - 60, time.time())
    assert summary.total == 3
    assert dict(summary.by_state) == {"ended": 2, "active": 1}


async def test_an_answers_values_are_bounded_per_day(store: Store) -> None:
    """Free text answers cannot grow a day's counters without bound: the first
    ANSWERS_KEPT values of a field are kept, the others counted together."""
    records = Records(Durable(store))
    for n in range(ANSWERS_KEPT + 5):
        run = await started(records, n)
        await records.finish(run, "ended", widget="thanks", answers={"why": f"reason {n}"})
    kept = await store.hgetall(counters(FLOW, time.time()))
    assert sum(1 for name in kept if name.startswith("\x1fwhy\x1f")) == ANSWERS_KEPT + 1
    summary = await records.summary([FLOW], time.time() - 60, time.time())
    ((field, top),) = summary.answers
    assert field == "why"
    assert top[0] == (OTHERS, 5)


def test_a_records_counts_whole_equal_its_start_and_its_end() -> None:
    for state in ("active", "ended", "failed", "unfollowed", "not_started", "unknown"):
        whole = summary_of([{k: str(v) for k, v in whole_counts(state, "30003", "w", {}).items()}])
        assert whole.total == 1
        assert dict(whole.by_state) == {state: 1}


async def test_the_csv_is_written_page_by_page_and_says_what_records_csv_says(
    store: Store, tmp_path: Path
) -> None:
    records = Records(Durable(store))
    runs = [await started(records, n) for n in range(7)]
    await records.finish(runs[0], "ended", widget="thanks", answers={"score": "=1+1"})
    reports = Reports(records, None, policy=None, tasks=None, slack=None, names={FLOW: "x"})  # type: ignore[arg-type]
    path = tmp_path / "report.csv"
    pages = []
    original = records.pages

    def counting(since: float, until: float, page: int = 500):  # type: ignore[no-untyped-def]
        pages.append(page)
        return original(since, until, page=3)

    records.pages = counting  # type: ignore[method-assign]
    count = await reports._write_csv(path, {FLOW}, 0, time.time())
    written = path.read_bytes().decode()
    expected = records_csv(await records.in_window(0), {FLOW: "x"})
    assert count == 7
    assert pages == [500, 500]  # two passes (the answers' columns, then the rows), by pages
    assert written == expected
    rows = list(csv.DictReader(io.StringIO(written)))
    assert rows[0]["score"] == "'=1+1"


async def test_home_tabs_opened_at_once_share_one_reading(store: Store) -> None:
    records = Records(Durable(store))
    await started(records, 1)
    reports = Reports(records, None, policy=None, tasks=None, slack=None, names={})  # type: ignore[arg-type]
    seen = await asyncio.gather(*(reports.stats([FLOW, OTHER]) for _ in range(20)))
    assert reports.stats_reads == 1
    assert all(s[FLOW].total == 1 for s in seen)
    assert all(s[OTHER] == Summary(0) for s in seen)


@pytest.mark.parametrize("since_days", [1, 7])
async def test_a_report_says_the_same_from_records_or_counters(
    store: Store, since_days: int
) -> None:
    records = Records(Durable(store))
    runs = [await started(records, n) for n in range(4)]
    await records.finish(runs[0], "ended", widget="thanks", answers={"score": "4"})
    now = time.time()
    from_counters = await records.summary([FLOW], now - since_days * 86400, now)
    from_records = summarise(await records.in_window(now - since_days * 86400, now))
    assert from_counters == from_records


async def test_the_indexes_are_trimmed_of_records_past_their_days(store: Store) -> None:
    """Nothing grows forever: a record's hash expires by itself; its index entries, kept
    alive by every new record, are trimmed by the sweep (``Records.trim``)."""
    records = Records(Durable(store), days=90)
    old = RunRecord(
        id="FN" + "0" * 32,
        flow_sid=OTHER,
        contact="+1 617-•••-0000",
        starter="U0CALLER",
        started_at=time.time() - 91 * 86400,
        counted=True,
    )
    await records._put(old)
    await started(records, 1)
    assert len(await records.in_window(0)) == 2
    await records.trim()
    assert [r.flow_sid for r in await records.in_window(0)] == [FLOW]
    assert await records.flows() == [FLOW]
    assert await store.zcard("rec:index") == 1
