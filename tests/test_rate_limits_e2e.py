"""Slack answering 429 with Retry-After (issue 21, finding 3): the last state of every
card and progress message, and every results file, still reaches Slack; past a bound,
the starter is told. Against the fake Web API on loopback, which answers 429 as Slack
does (``{"ok": false, "error": "ratelimited"}`` and a ``Retry-After`` header)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.engage.bulk import worker
from bot.slack import follow
from bot.slack.bulk import report
from tests.harness import buttons, text_of, wired
from tests.peers import FakeSlack, FakeStudio
from tests.test_bulk_e2e import preview, results, until
from tests.test_follow_e2e import FOLLOW, move, quick, step, updates

__all__ = ["quick"]  # following's faster clock, a fixture shared with test_follow_e2e


@pytest.fixture(autouse=True)
def quick_bulk(monkeypatch: pytest.MonkeyPatch, quick: None) -> None:
    """Following's faster clock (``quick``), and bulk retries on one too."""
    monkeypatch.setattr(report, "MAX_PAUSE", 0.5)
    monkeypatch.setattr(worker, "IDLE_SECONDS", 0.2)


def progress_messages(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in slack.posts if "Bulk run" in str(p.get("text", ""))]


async def test_a_followed_run_that_ends_while_edits_are_refused_shows_its_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack()
    async with wired(monkeypatch, FakeStudio(), slack, env=FOLLOW) as run:
        await run.command("+16175551212 first_name=Zeke")
        await slack.wait_for_posts(1)
        slack.limited["chat.update"] = 3  # Slack is busy: the next three edits are refused
        move(run.studio, step(1, "send_survey"), step(2, "Ended", "sent"), status="ended")
        await until(lambda: "chat.update" in slack.limited_calls)
        await until(lambda: updates(slack), within=15)
        await until(lambda: any(p.get("thread_ts") for p in slack.posts), within=15)
    assert slack.limited_calls.count("chat.update") == 3
    final = updates(slack)[-1]
    assert "ended at `w1`" in text_of(final["blocks"])


async def test_a_card_refused_for_good_tells_the_starter_after_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(follow, "FINAL_DEADLINE", 0.5)
    slack = FakeSlack()
    async with wired(monkeypatch, FakeStudio(), slack, env=FOLLOW) as run:
        await run.command("+16175551212")
        await slack.wait_for_posts(1)
        slack.limited["chat.update"] = 10_000
        move(run.studio, step(1, "Ended", "sent"), status="ended")
        await until(lambda: any(p["channel"] == "U0CALLER" for p in slack.posts), within=15)
    (note,) = [p for p in slack.posts if p["channel"] == "U0CALLER"]
    assert "did not let the bot update its card" in text_of(note)
    assert updates(slack) == []


@pytest.mark.parametrize(
    "busy",
    [
        {"chat.postMessage": 2},  # at Start: the progress message is posted later
        {"files.getUploadURLExternal": 2},  # the results file is uploaded later
        {"chat.update": 6},  # every edit, the final one too, for a while
    ],
)
async def test_a_bulk_runs_final_state_and_results_file_land_despite_429s(
    monkeypatch: pytest.MonkeyPatch, busy: dict[str, int]
) -> None:
    slack = FakeSlack()
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        shown = await preview(run, "+16175551212 +16175551213 +16175551214")
        slack.limited.update(busy)
        slack.retry_after = "0"  # Slack's "now", so that the test does not wait seconds
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: slack.uploads and "done" in progress_messages(slack)[-1]["text"], 30)
    assert slack.limited_calls  # Slack did refuse
    assert [r["outcome"] for r in results(slack)] == ["started"] * 3
    final = progress_messages(slack)[-1]
    assert "done" in text_of(final["blocks"])
    assert "3 started" in text_of(final["blocks"])
    (upload,) = slack.uploads
    assert upload.get("thread_ts") == progress_messages(slack)[0]["ts"]


async def test_a_bulk_run_whose_messages_never_land_tells_the_starter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "FINAL_DEADLINE", 1.0)
    slack = FakeSlack()
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        shown = await preview(run, "+16175551212 +16175551213")
        slack.limited.update({"chat.update": 10_000, "files.getUploadURLExternal": 10_000})
        slack.retry_after = "0"
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: any(p["channel"] == "U0CALLER" for p in slack.posts), within=30)
    (note,) = [p for p in slack.posts if p["channel"] == "U0CALLER"]
    assert "the final progress message or the results file" in note["text"]
    assert "2 started" in note["text"]
    assert slack.uploads == []
