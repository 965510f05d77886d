"""Bulk runs (issue 12) end to end: signed commands and clicks, a fake Slack Web API
(chat.postMessage, chat.update, files.uploadV2, file downloads), a fake Studio, and a
process stopped in the middle of a run on a real Redis."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from bot.engage.bulk import worker as worker_module
from bot.infra.workers import Workers
from bot.slack.bulk import report
from tests.harness import Harness, block_action, buttons, harness, text_of, wired
from tests.peers import (
    FakeSlack,
    FakeStudio,
    RedisServer,
    bot_env,
    free_port,
    serve,
    signed_headers,
    slash_command,
)
from tests.test_server_process import running_bot, wait_healthy


async def until(condition: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def rounds_pass(*loops: Workers, count: int = 2, within: float = 15.0) -> None:
    """Wait until each of ``loops`` has finished ``count`` more rounds: whatever a round
    begun before now could do, it has done (then "nothing happened" means something)."""
    targets = [(loop, loop.rounds + count) for loop in loops]
    await until(lambda: all(loop.rounds >= target for loop, target in targets), within)


async def csv_shortcut(
    run: Harness, text: str, name: str, *, user: str = "U0CALLER", url: str | None = None
) -> None:
    """The message shortcut *Start flow for each row* on a message sharing ``name``
    (``url``: what a crafted payload may claim the file's address is)."""
    file: dict[str, Any] = {"id": f"F-{name}", "name": name, "filetype": "csv"}
    if url is not None:
        file["url_private_download"] = url
    payload = {
        "type": "message_action",
        "callback_id": "bulk_csv",
        "trigger_id": "1.2",
        "team": {"id": "T0001"},
        "user": {"id": user},
        "channel": {"id": "C0CHANNEL"},
        "response_url": f"{run.slack_url}/respond/1",
        "message": {"text": text, "files": [file]},
    }
    response, _ = await run.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code == 200


async def control(run: Harness, action: str, value: str) -> None:
    """Click a progress message's button: no reply follows; the message changes."""
    body = block_action(action, value, response_url=f"{run.slack_url}/respond/9")
    response, _ = await run.post(body)
    assert response.status_code == 200


async def preview(run: Harness, text: str, **kwargs: Any) -> dict[str, Any]:
    ack = (await run.command(text, **kwargs))[0].json()
    assert "Preparing the preview" in ack["text"], ack["text"]
    return (await run.slack.wait_for_replies(1))[0]


def results(slack: FakeSlack) -> list[dict[str, str]]:
    (upload,) = slack.uploads
    content = upload["content"].decode()
    return list(csv.DictReader(io.StringIO(content[content.index("row,") :])))


async def test_preview_then_start_then_progress_then_the_results_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio()) as run:
        shown = await preview(run, "survey +16175551212 +1617, +1 617 555 1214 plan=gold")
        assert shown["response_type"] == "ephemeral"
        text = text_of(shown)
        assert "2 valid, 1 invalid" in text
        assert "row 2: +1617" in text
        assert run.studio.creates() == []  # nothing before Start
        start = buttons(shown)["bulk_start"]
        assert "for 2 contact(s)" in start["confirm"]["text"]["text"]

        other = await run.click("bulk_start", start["value"], user="U0OTHER", n=2)
        assert "only the person who asked for the preview" in other["text"]
        await run.click("bulk_start", start["value"], n=3)
        await until(lambda: run.slack.uploads)
    creates = run.studio.creates()
    assert sorted(c["form"]["To"] for c in creates) == ["+16175551212", "+16175551214"]
    assert all(json.loads(c["form"]["Parameters"]) == {"plan": "gold"} for c in creates)
    progress = [p for p in run.slack.posts if p["method"] == "chat.postMessage"]
    assert progress[0]["channel"] == "C0CHANNEL"
    final = [p for p in run.slack.posts if p["method"] == "chat.update"][-1]
    assert "done" in text_of(final["blocks"])
    assert "2 started" in text_of(final["blocks"])
    upload = run.slack.uploads[0]
    assert upload["thread_ts"] == progress[0]["ts"]
    assert [(r["row"], r["outcome"]) for r in results(run.slack)] == [
        ("1", "started"),
        ("3", "started"),
    ]
    assert all(r["run_sid"].startswith("FN") for r in results(run.slack))


async def test_twilio_refusals_and_already_active_are_reported_never_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    active = (409, {"code": 20409, "message": "Execution already active", "status": 409})
    studio = FakeStudio(answers=[refused, active])
    async with harness(monkeypatch, studio, STUDIO_RATE_LIMIT="1/second") as run:
        shown = await preview(run, "+16175551212 +16175551213 +16175551214")
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: run.slack.uploads)
    rows = {r["row"]: r for r in results(run.slack)}
    outcomes = sorted((r["outcome"], r["code"]) for r in rows.values())
    assert outcomes == [("failed", "20409"), ("failed", "21211"), ("started", "")]
    assert any("already active" in r["message"] for r in rows.values())
    assert len(studio.creates()) == 3  # once each


async def test_pause_resume_and_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = FakeStudio()
    contacts = " ".join(f"+1617555121{i}" for i in range(6))
    async with harness(monkeypatch, studio, STUDIO_RATE_LIMIT="2/second") as run:
        shown = await preview(run, contacts)
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"], n=2)
        await until(lambda: studio.creates())
        (card,) = [p for p in run.slack.posts if p["method"] == "chat.postMessage"]
        controls = buttons(card)
        await run.click("bulk_pause", controls["bulk_pause"]["value"], user="U0OTHER", n=3)
        assert "only the person who started" in run.slack.replies[2]["text"]
        await control(run, "bulk_pause", controls["bulk_pause"]["value"])
        await until(lambda: "paused" in text_of(run.slack.posts[-1]["blocks"]))
        # A row already past its turn may still go: wait until every create has its outcome.
        bulk = run.services.bulk
        assert bulk is not None
        run_id = controls["bulk_pause"]["value"]
        deadline = time.monotonic() + 10
        while len(await bulk.state.outcomes(run_id)) < len(studio.creates()):
            assert time.monotonic() < deadline, "rows in flight did not settle"
            await asyncio.sleep(0.02)
        paused_at = len(studio.creates())
        await rounds_pass(bulk.worker.workers)
        assert len(studio.creates()) == paused_at  # nothing sent while paused
        assert paused_at < 6
        await control(run, "bulk_resume", controls["bulk_pause"]["value"])
        await until(lambda: len(studio.creates()) > paused_at)
        await control(run, "bulk_cancel", controls["bulk_cancel"]["value"])
        await until(lambda: run.slack.uploads)
    outcomes = [r["outcome"] for r in results(run.slack)]
    assert outcomes.count("started") == len(studio.creates())
    assert outcomes.count("cancelled") == 6 - len(studio.creates())
    assert outcomes.count("cancelled") > 0


async def test_a_csv_shared_in_slack_through_the_message_shortcut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack()
    slack.files["contacts.csv"] = b"\xef\xbb\xbfname;phone\nZeke;+16175551212\nAnn;+16175551213\n"
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey list for tomorrow", "contacts.csv")
        (shown,) = await run.slack.wait_for_replies(1)
    assert "survey" in shown["text"]
    assert "2 valid" in shown["text"]
    assert "Read contacts.csv as UTF-8 (with a byte-order mark)" in text_of(shown)
    assert run.studio.creates() == []


async def test_too_many_rows_or_a_narrower_bulk_list_sends_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(), BULK_MAX_ROWS="2") as run:
        ack = (await run.command("+16175551212 +16175551213 +16175551214"))[0].json()
    assert "BULK_MAX_ROWS=2" in ack["text"]
    async with harness(monkeypatch, FakeStudio(), BULK_SLACK_USERS="U0BOSS") as run:
        ack = (await run.command("+16175551212 +16175551213"))[0].json()
        await run.idle()
    assert "BULK_SLACK_USERS" in ack["text"]
    assert run.studio.requests == []


async def test_a_process_killed_mid_run_and_another_finishing_it_sends_no_row_twice(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    """A real ``python -m bot`` is killed (SIGKILL) while rows are in flight; a second
    bot on the same Redis finishes the run: no contact twice, every row accounted for."""
    monkeypatch.setattr(worker_module, "RECLAIM_AFTER", 0.5)
    studio, slack = FakeStudio(latency=0.4), FakeSlack()
    env = {"REDIS_URL": redis.url.replace("/0", "/4"), "STUDIO_RATE_LIMIT": "5/second"}
    contacts = " ".join(f"+1617555121{i}" for i in range(8))
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        port = free_port()
        process_env = bot_env(studio_url, slack_url, PORT=str(port), **env)
        async with running_bot(process_env) as proc:
            bot_url = f"http://127.0.0.1:{port}"
            await wait_healthy(bot_url, proc)
            async with httpx.AsyncClient() as http:
                body = slash_command(contacts, response_url=f"{slack_url}/respond/1")
                await http.post(
                    f"{bot_url}/slack/events", content=body, headers=signed_headers(body)
                )
                (shown,) = await slack.wait_for_replies(1)
                click = block_action(
                    "bulk_start",
                    buttons(shown)["bulk_start"]["value"],
                    response_url=f"{slack_url}/respond/2",
                )
                await http.post(
                    f"{bot_url}/slack/events", content=click, headers=signed_headers(click)
                )
                await until(lambda: len(studio.creates()) >= 2)
            proc.kill()  # the process dies: no drain, no goodbye
            await proc.wait()
    sent_before = len(studio.creates())
    async with wired(monkeypatch, studio, slack, env=env):
        await until(lambda: slack.uploads, within=30)
    rows = results(slack)
    assert len(rows) == 8
    to = [c["form"]["To"] for c in studio.creates()]
    assert len(to) == len(set(to))  # no contact was sent twice
    outcomes = {r["outcome"] for r in rows}
    assert outcomes <= {"started", "unknown"}
    started = [r for r in rows if r["outcome"] == "started"]
    assert len(started) == len(to) - sum(r["outcome"] == "unknown" for r in rows)
    assert sent_before >= 2


@pytest.mark.parametrize("dies", ["after_listing", "after_posting", "while_enqueueing"])
async def test_a_start_interrupted_at_any_point_is_taken_up_by_another_process(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer, dies: str
) -> None:
    """The process handling Start dies at each point between listing the run and
    marking it running: another process takes the run up, every row is sent once."""
    monkeypatch.setattr(worker_module, "START_GRACE", 0.5)
    studio, slack = FakeStudio(), FakeSlack()
    database = {"after_listing": 5, "after_posting": 6, "while_enqueueing": 7}[dies]
    env = {"REDIS_URL": redis.url.replace("/0", f"/{database}")}
    contacts = " ".join(f"+1617555121{i}" for i in range(4))

    class Died(BaseException):
        """The process's end, as seen from the code it interrupts."""

    async with wired(monkeypatch, studio, slack, env=env) as first:
        bulk = first.services.bulk
        assert bulk is not None
        if dies == "after_listing":
            monkeypatch.setattr(bulk.reporter, "post", _raise(Died))
        elif dies == "after_posting":
            monkeypatch.setattr(bulk.worker, "launch", _raise(Died))
        else:
            jobs = bulk.worker.queue  # the enqueue transaction breaks off: nothing queued

            def broken(run_id: str) -> Any:
                queue = jobs(run_id)
                monkeypatch.setattr(queue, "put_many", _raise(Died))
                return queue

            monkeypatch.setattr(bulk.worker, "queue", broken)
        shown = await preview(first, contacts)
        with pytest.raises(Died):
            await bulk.start(buttons(shown)["bulk_start"]["value"], _caller(), _ignore)
        assert studio.creates() == []
    async with wired(monkeypatch, studio, slack, env=env):
        await until(lambda: slack.uploads, within=30)
    assert sorted(c["form"]["To"] for c in studio.creates()) == sorted(contacts.split())
    assert [r["outcome"] for r in results(slack)] == ["started"] * 4
    final = [p for p in slack.posts if p["method"] in ("chat.postMessage", "chat.update")][-1]
    assert "done" in text_of(final["blocks"])


def _raise(kind: type[BaseException]) -> Any:
    async def dies(*args: Any, **kwargs: Any) -> Any:
        raise kind

    return dies


def _caller() -> Any:
    from bot.domain.caller import Caller

    return Caller("U0CALLER", "C0CHANNEL", "T0001")


async def _ignore(message: Any) -> None:
    return None


async def test_without_redis_sigterm_pauses_the_run_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio()
    contacts = " ".join(f"+1617555121{i}" for i in range(6))
    async with harness(monkeypatch, studio, STUDIO_RATE_LIMIT="2/second") as run:
        shown = await preview(run, contacts)
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: studio.creates())
        await run.services.drain(5)  # SIGTERM
        sent = len(studio.creates())
        last = [p for p in run.slack.posts if p["method"] == "chat.update"][-1]
    assert "paused" in text_of(last["blocks"])
    assert "without Redis this run lived in its memory" in text_of(last["blocks"])
    assert sent < 6
    assert run.slack.uploads == []


async def test_a_results_file_slack_took_without_answering_is_not_uploaded_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 32, 16: an upload whose answer was lost after Slack took the file was
    uploaded again. Before another try, the bot looks whether the file is there."""
    monkeypatch.setattr(report, "MAX_PAUSE", 0.2)
    slack = FakeSlack(lose_upload_answers=1)
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        shown = await preview(run, "survey +16175551212 +16175551214")
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"], n=2)
        await until(lambda: slack.uploads)
        await asyncio.sleep(1.5)  # several more delivery rounds
        await run.idle()
    assert len(slack.uploads) == 1
    assert [(r["row"], r["outcome"]) for r in results(slack)] == [
        ("1", "started"),
        ("2", "started"),
    ]


async def test_a_file_is_read_and_planned_off_the_loop_while_others_are_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """100,000 rows take seconds of CPU: the file is read, and the rows are judged, in a
    thread. Each is held here until another command has been answered: on the event
    loop, that answer could never come (the read would wait for it forever)."""
    import threading

    from bot.domain.bulk_input import read_csv
    from bot.domain.bulk_plan import plan
    from bot.slack import files as files_module
    from bot.slack.bulk import preview as preview_module

    gates: list[threading.Event] = []

    def held(work: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gate = threading.Event()
            gates.append(gate)
            assert gate.wait(timeout=20), "nobody was answered while this worked"
            return work(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(files_module, "read_csv", held(read_csv))
    monkeypatch.setattr(preview_module, "plan", held(plan))
    slack = FakeSlack()
    slack.files["contacts.csv"] = b"phone,name\n+16175551212,Zeke\n"
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "contacts.csv")
        for step in (1, 2):  # the read, then the plan
            await until(lambda step=step: len(gates) == step)
            answered = (await run.command("help"))[0]
            assert answered.status_code == 200
            assert "/engage" in answered.text
            gates[-1].set()
        (shown,) = await run.slack.wait_for_replies(1)
    assert "1 valid" in shown["text"]
