"""Run records (issue 24): every start recorded, followed to its end by the sweep or by
Event Streams, its answers collected, bulk runs' second tally and final results file,
records kept across a restart on a real Redis; v1 and v2."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bot.domain.flows import collect_answers
from bot.engage.bulk import worker
from bot.runs import tracker as tracker_module
from bot.slack import report as report_module
from bot.slack.bulk import report
from tests import flow_definitions as defs
from tests.harness import Harness, buttons, harness, text_of, wired
from tests.peers import AUTH_TOKEN, ENGAGEMENT_SID, FLOW_SID, FakeSlack, FakeStudio, RedisServer
from tests.test_bulk_e2e import preview, until
from tests.test_follow_e2e import EVENTS_URL, cloud_event, post_events, quick, step

__all__ = ["quick"]  # following's faster clock, a fixture shared with test_follow_e2e

FAST = {"STUDIO_READ_RATE_LIMIT": "1000000/second"}  # a check is due again at once


@pytest.fixture(autouse=True)
def quick_records(monkeypatch: pytest.MonkeyPatch, quick: None) -> None:
    """Following's faster clock (``quick``, shared with test_follow_e2e), and records'."""
    monkeypatch.setattr(tracker_module, "MIN_INTERVAL", 0.0)  # check at every sweep
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 3600.0)  # sweeps run by the tests
    monkeypatch.setattr(report, "MAX_PAUSE", 0.2)
    monkeypatch.setattr(worker, "IDLE_SECONDS", 0.2)
    monkeypatch.setattr(report_module, "STATS_SECONDS", 0.0)  # the Home tab counts afresh


def survey_studio() -> FakeStudio:
    studio = FakeStudio()
    studio.flows[FLOW_SID] = {"friendly_name": "Survey", "definition": defs.SMS_SURVEY}
    return studio


def end(studio: FakeStudio, sid: str, reply: str | None, *, widget: str = "thanks") -> None:
    """The run answers (or not) and ends at ``widget``."""
    run = studio.runs[sid]
    run["status"] = "ended"
    run["date_updated"] = "2026-11-23T10:05:00Z"
    if reply is not None:
        run["context"]["widgets"] = {"start": {"inbound": {"Body": reply}}}
    studio.steps[:] = [
        {**step(1, "start"), "transitioned_from": "start", "transitioned_to": "check"},
        {**step(2, "Ended", "sent"), "transitioned_from": widget, "transitioned_to": "Ended"},
    ]


def reads_of(studio: FakeStudio, sid: str) -> list[str]:
    return [r["path"] for r in studio.requests if r["method"] == "GET" and sid in r["path"]]


EVENTS = {"TWILIO_EVENTS_URL": EVENTS_URL, **FAST}


@contextlib.asynccontextmanager
async def one_start(
    monkeypatch: pytest.MonkeyPatch, studio: FakeStudio, **env: str
) -> AsyncIterator[Harness]:
    """A bot (with ``env``) that has started one run, for +16175551212, and settled."""
    async with harness(monkeypatch, studio, **env) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        yield run


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_a_start_is_recorded_and_followed_to_its_end_with_its_answer(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    studio = survey_studio()
    async with harness(monkeypatch, studio, STUDIO_API=api, **FAST) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        records, outcomes = run.services.records, run.services.tracker
        assert records is not None
        assert outcomes is not None
        kept = await records.get(ENGAGEMENT_SID)
        assert kept is not None
        assert (kept.state, kept.flow_sid, kept.starter) == ("active", FLOW_SID, "U0CALLER")
        assert kept.contact == "+1 617-•••-1212"  # as the audit keeps it
        await outcomes.sweep()  # still active: one read
        assert len(reads_of(studio, ENGAGEMENT_SID)) == 1
        end(studio, ENGAGEMENT_SID, "5")
        await outcomes.sweep()  # ended: the run, its steps, its context
        done = await records.get(ENGAGEMENT_SID)
    assert done is not None
    assert (done.state, done.widget) == ("ended", "thanks")
    assert done.answers == {"start": "5"}
    assert done.duration_s >= 0
    assert len(reads_of(studio, ENGAGEMENT_SID)) == 4


async def test_event_streams_end_a_record_with_one_read(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = survey_studio()
    async with one_start(monkeypatch, studio, **EVENTS) as run:
        end(studio, ENGAGEMENT_SID, "4", widget="no_reply")
        studio.requests.clear()
        moved = cloud_event("step.ended")
        moved["data"]["transitioned_from"] = "no_reply"
        await post_events(run, [moved, cloud_event("execution.ended")])
        await run.idle()
        records = run.services.records
        assert records is not None
        done = await records.get(ENGAGEMENT_SID)
    assert done is not None
    assert (done.state, done.widget, done.answers) == ("ended", "no_reply", {"start": "4"})
    assert reads_of(studio, ENGAGEMENT_SID) == [
        f"/v1/Flows/{FLOW_SID}/Engagements/{ENGAGEMENT_SID}/Context"
    ]


@pytest.mark.parametrize("path", ["events", "polling"])
async def test_a_run_that_fails_is_recorded_failed_whichever_way_its_end_arrives(
    monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The finding: with Event Streams on, a run ending at a failure step was recorded
    ``ended`` (the steps were skipped), while polling recorded it ``failed``."""
    studio = survey_studio()
    env = {"TWILIO_EVENTS_URL": EVENTS_URL, **FAST} if path == "events" else FAST
    async with harness(monkeypatch, studio, **env) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, None, widget="send_sms")
        studio.steps[-1]["name"] = "Failed"  # the run ended at a failure step
        records, outcomes = run.services.records, run.services.tracker
        assert records is not None
        assert outcomes is not None
        if path == "events":
            failed = cloud_event("step.ended")
            failed["data"].update(name="Failed", transitioned_from="send_sms")
            await post_events(run, [failed, cloud_event("execution.ended")])
            await run.idle()
        else:
            await outcomes.sweep()
        done = await records.get(ENGAGEMENT_SID)
    assert done is not None
    assert (done.state, done.widget) == ("failed", "send_sms")


async def post_unhashed(run: Harness, events: list[dict[str, Any]]) -> int:
    """A delivery whose URL carries no bodySHA256: signed over the URL alone."""
    body = json.dumps(events).encode()
    signature = RequestValidator(AUTH_TOKEN).compute_signature(EVENTS_URL, {})
    headers = {"Content-Type": "application/json", "X-Twilio-Signature": signature}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{run.bot_url}/twilio/events", content=body, headers=headers)
    return response.status_code


async def test_a_delivery_without_a_body_hash_is_a_hint_the_run_is_read_from_studio(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 32, 9: accepted as twilio-python accepts it, but its body is not vouched
    for: nothing in it is recorded; the run is read from Studio."""
    studio = survey_studio()
    async with one_start(monkeypatch, studio, **EVENTS) as run:
        records = run.services.records
        assert records is not None
        forged = cloud_event("step.ended")
        forged["data"].update(name="Failed", transitioned_from="made_up")
        claims = [forged, cloud_event("execution.ended")]
        outcomes = run.services.tracker
        assert outcomes is not None
        hinted: list[str] = []
        read_run = outcomes.hint

        async def counted(sid: str) -> None:
            hinted.append(sid)
            await read_run(sid)

        monkeypatch.setattr(outcomes, "hint", counted)
        assert await post_unhashed(run, claims) == 200  # Studio: still active
        await run.idle()
        assert hinted == [ENGAGEMENT_SID]  # one run: read once, not once per event
        still = await records.get(ENGAGEMENT_SID)
        assert still is not None
        assert (still.state, still.widget) == ("active", "")
        end(studio, ENGAGEMENT_SID, "5", widget="thanks")
        assert await post_unhashed(run, [cloud_event("execution.ended")]) == 200
        await run.idle()
        done = await records.get(ENGAGEMENT_SID)
    assert done is not None
    assert (done.state, done.widget, done.answers) == ("ended", "thanks", {"start": "5"})
    said = [r.getMessage() for r in caplog.records if "without bodySHA256" in r.getMessage()]
    assert len(said) == 1  # said once, not per delivery


async def test_a_start_twilio_refused_is_recorded_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    async with harness(monkeypatch, FakeStudio(answers=[refused])) as run:
        await run.command("+16175551212")
        await run.slack.wait_for_replies(1)
        await run.idle()
        records = run.services.records
        assert records is not None
        (kept,) = await records.in_window(0)
    assert (kept.state, kept.code, kept.sid) == ("not_started", "21211", "")


async def test_following_stops_after_bulk_follow_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(), BULK_FOLLOW_HOURS="0", **FAST) as run:
        await run.command("+16175551212")
        await run.slack.wait_for_replies(1)
        await run.idle()
        records, outcomes = run.services.records, run.services.tracker
        assert records is not None
        assert outcomes is not None
        await outcomes.sweep()
        kept = await records.get(ENGAGEMENT_SID)
    assert kept is not None
    assert kept.state == "unfollowed"


def final_results(slack: FakeSlack) -> list[dict[str, str]]:
    upload = next(u for u in reversed(slack.uploads) if "final" in u.get("title", ""))
    content = upload["content"].decode()
    return list(csv.DictReader(io.StringIO(content[content.index("row,") :])))


async def sweep_until(run: Harness, condition: Any) -> None:
    outcomes = run.services.tracker
    assert outcomes is not None
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await outcomes.sweep()
        await run.idle()
        await asyncio.sleep(0.1)  # the worker delivers the final file on its own round


async def test_a_bulk_run_tallies_its_ends_and_uploads_a_final_results_file(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = survey_studio()
    async with harness(monkeypatch, studio, **FAST) as run:
        await run.idle()
        shown = await preview(run, "+16175551212 +16175551213 +16175551214 first_name=Zeke")
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: run.slack.uploads)  # the starts are done: the first results
        first = run.slack.uploads[0]
        assert "final" not in first["title"]
        sids = list(studio.runs)
        end(studio, sids[0], "5")
        end(studio, sids[1], "=1+1")  # an answer a spreadsheet would run
        studio.runs[sids[2]]["status"] = "ended"  # ended without answering
        await sweep_until(run, lambda: len(run.slack.uploads) >= 2)
    rows = {r["contact"]: r for r in final_results(run.slack)}
    assert [rows[c]["status"] for c in ("'+16175551212", "'+16175551213", "'+16175551214")] == [
        "ended",
        "ended",
        "ended",
    ]
    assert rows["'+16175551212"]["start"] == "5"
    assert rows["'+16175551213"]["start"] == "'=1+1"  # neutralised
    assert rows["'+16175551214"]["start"] == ""
    assert all(r["ended_at"] and r["duration_s"] for r in rows.values())
    last = [p for p in run.slack.posts if "Bulk run" in str(p.get("text"))][-1]
    assert "Runs: 3 ended" in text_of(last["blocks"])
    assert "0 still active" in text_of(last["blocks"])


async def test_records_survive_a_restart_on_redis(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    studio, slack = survey_studio(), FakeSlack()
    env = {"REDIS_URL": redis.url.replace("/0", "/8"), **FAST}
    async with wired(monkeypatch, studio, slack, env=env) as first:
        await first.idle()
        await first.command("+16175551212 first_name=Zeke")
        await slack.wait_for_replies(1)
        await first.idle()
    end(studio, ENGAGEMENT_SID, "3")
    async with wired(monkeypatch, studio, slack, env=env) as second:
        outcomes, records = second.services.tracker, second.services.records
        assert outcomes is not None
        assert records is not None
        await outcomes.sweep()
        kept = await records.get(ENGAGEMENT_SID)
    assert kept is not None
    assert (kept.state, kept.answers) == ("ended", {"start": "3"})


def test_answers_are_collected_from_the_widgets_and_the_configured_paths() -> None:
    context = {
        "widgets": {
            "ask": {"inbound": {"Body": "yes"}},
            "menu": {"Digits": "2"},
            "talk": {"SpeechResult": "call me " * 200},
            "never": {},
        },
        "flow": {"variables": {"score": 9}},
    }
    widgets = (
        ("ask", "send-and-wait-for-reply"),
        ("menu", "gather-input-on-call"),
        ("talk", "gather-input-on-call"),
        ("never", "send-and-wait-for-reply"),
    )
    found = collect_answers(context, widgets, ("flow.variables.score", "flow.variables.none"))
    assert found["ask"] == "yes"
    assert found["menu"] == "2"
    assert len(found["talk"]) == 500
    assert found["talk"].endswith("…")
    assert found["flow.variables.score"] == "9"
    assert "never" not in found
    assert "flow.variables.none" not in found


def test_the_funnel_arithmetic() -> None:
    from bot.runs.records import RunRecord
    from bot.slack.report import summarise

    def rec(state: str, widget: str = "", code: str = "", answers: str = "") -> RunRecord:
        return RunRecord.model_validate(
            dict(
                id=f"x{state}{widget}{code}{answers}",
                flow_sid=FLOW_SID,
                contact="+1 617-•••-1212",
                starter="U1",
                started_at=1.0,
                state=state,
                widget=widget,
                code=code,
                answers=answers or "{}",  # as a hash field keeps it: JSON text
            )
        )

    summary = summarise(
        [
            rec("ended", "thanks", answers='{"start": "5"}'),
            rec("ended", "thanks", answers='{"start": "4"}'),
            rec("ended", "no_reply"),
            rec("failed", "call"),
            rec("active"),
            rec("not_started", code="21211"),
            rec("unknown", code="500"),
        ]
    )
    assert summary.total == 7
    assert dict(summary.by_state) == {
        "ended": 3,
        "failed": 1,
        "active": 1,
        "not_started": 1,
        "unknown": 1,
    }
    assert summary.funnel == (("thanks", 2), ("call", 1), ("no_reply", 1))
    assert summary.answers == (("start", (("4", 1), ("5", 1))),)
    assert summary.failures == (("21211", 1), ("500", 1))
    assert summary.answered == 2


async def test_the_report_and_its_csv_only_to_the_asker_under_the_status_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = survey_studio()
    env = {**FAST, "STUDIO_FLOWS": "onboarding=" + FLOW_SID + ";users=U0CALLER"}
    async with harness(monkeypatch, studio, **env) as run:
        await run.idle()
        await run.command("onboarding +16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, "=cmd|' /C calc'!A0")
        outcomes = run.services.tracker
        assert outcomes is not None
        await outcomes.sweep()
        refused = (await run.command("report onboarding", user_id="U0OTHER"))[0].json()
        ack = (await run.command("report onboarding --since 24h --csv"))[0].json()
        (shown,) = (await run.slack.wait_for_replies(2))[1:]
        await until(lambda: run.slack.uploads)
    assert "not allowed" in refused["text"]
    assert "Counting" in ack["text"]
    assert shown["response_type"] == "ephemeral"
    text = text_of(shown)
    assert "1 run(s) started" in text
    assert "`thanks`: 1 (100%)" in text
    (upload,) = run.slack.uploads
    assert upload["channel_id"] == "DU0CALLER"  # the bot's DM with the asker
    content = upload["content"].decode()
    assert "+1 617-•••-1212" in content  # masked, as the audit keeps it
    assert "6175551212" not in content
    assert "'=cmd" in content  # the answer, neutralised


async def test_the_home_tab_counts_the_last_7_days_per_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_forms_e2e import open_home

    studio = survey_studio()
    async with harness(monkeypatch, studio, **FAST) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, "5")
        outcomes = run.services.tracker
        assert outcomes is not None
        await outcomes.sweep()
        await open_home(run)
        await run.idle()
    home = [v for v in run.slack.views if v["method"] == "views.publish"][-1]
    assert "Last 7 days: 1 started · 1 ended · 0 failed · 1 answered" in text_of(home["view"])


async def test_a_followed_card_ends_with_the_answers_its_record_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = survey_studio()
    async with harness(monkeypatch, studio, FOLLOW_MINUTES="60", **FAST) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_posts(1)
        end(studio, ENGAGEMENT_SID, "5")
        await until(lambda: any(p.get("thread_ts") for p in run.slack.posts))
        records = run.services.records
        assert records is not None
        kept = await records.get(ENGAGEMENT_SID)
    (note,) = [p for p in run.slack.posts if p.get("thread_ts")]
    assert "Answers: start: “5”" in text_of(note)
    assert kept is not None
    assert (kept.state, kept.answers) == ("ended", {"start": "5"})
    reads = reads_of(studio, ENGAGEMENT_SID)
    assert reads.count(f"/v1/Flows/{FLOW_SID}/Engagements/{ENGAGEMENT_SID}/Context") >= 1


async def test_a_run_heard_from_is_read_by_the_sweep_only_after_four_silent_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With Event Streams, a run no event has spoken of is read after the 30-minute
    safety net; once one has (deliveries reach the bot for its flow), only after
    ``HEARD_SILENCE`` without news, the time Twilio goes on retrying a delivery."""
    studio = survey_studio()
    async with one_start(monkeypatch, studio, **EVENTS) as run:
        sweeper = run.services.tracker
        assert sweeper is not None
        later = tracker_module.SAFETY_NET_INTERVAL + 5
        sweeper.now = lambda: time.time() + later
        studio.requests.clear()
        assert await sweeper.sweep() == 1  # not heard from: the safety net reads it
        await post_events(run, [cloud_event("execution.started")])
        await run.idle()
        studio.requests.clear()
        later += tracker_module.SAFETY_NET_INTERVAL + 5  # past the net again
        assert await sweeper.sweep() == 0
        assert reads_of(studio, ENGAGEMENT_SID) == []
        later += tracker_module.HEARD_SILENCE  # silent four hours since
        assert await sweeper.sweep() == 1  # still waiting for its reply
        later += tracker_module.SAFETY_NET_INTERVAL + 5
        assert await sweeper.sweep() == 0  # a run heard from: four hours again
        later += tracker_module.HEARD_SILENCE
        assert await sweeper.sweep() == 1
    run_read = f"/v1/Flows/{FLOW_SID}/Engagements/{ENGAGEMENT_SID}"
    assert reads_of(studio, ENGAGEMENT_SID) == [run_read, run_read]


async def test_a_run_its_card_follows_is_read_by_the_card_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The card reads its run's end (and its record keeps what the card saw): the end's
    event makes no second read of the context, and the sweep does not read it either."""
    studio = survey_studio()
    env = {"TWILIO_EVENTS_URL": EVENTS_URL, "FOLLOW_MINUTES": "60", **FAST}
    async with harness(monkeypatch, studio, **env) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_posts(1)
        from bot.slack import follow

        monkeypatch.setattr(follow, "MAX_POLL", 3600.0)  # the card waits for news
        await asyncio.sleep(1.0)  # its quick polls have passed
        sweeper, records = run.services.tracker, run.services.records
        assert sweeper is not None
        assert records is not None
        sweeper.now = lambda: time.time() + tracker_module.SAFETY_NET_INTERVAL + 5
        studio.requests.clear()
        assert await sweeper.sweep() == 0  # due, but its card reads it
        end(studio, ENGAGEMENT_SID, "5")
        await post_events(run, [cloud_event("execution.ended")])
        await until(lambda: any(p.get("thread_ts") for p in run.slack.posts))
        await run.idle()
        kept = await records.get(ENGAGEMENT_SID)
    assert kept is not None
    assert (kept.state, kept.answers) == ("ended", {"start": "5"})
    reads = reads_of(studio, ENGAGEMENT_SID)
    assert reads.count(f"/v1/Flows/{FLOW_SID}/Engagements/{ENGAGEMENT_SID}/Context") == 1


async def test_an_end_whose_read_fails_is_checked_again_soon_not_after_the_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run heard from ends, but Studio does not answer the read of its end: the sweep
    looks again at its next turn, not four hours later."""
    studio = survey_studio()
    async with one_start(monkeypatch, studio, **EVENTS) as run:
        sweeper, records = run.services.tracker, run.services.records
        assert sweeper is not None
        assert records is not None
        await post_events(run, [cloud_event("execution.started")])
        await run.idle()
        del studio.runs[ENGAGEMENT_SID]  # its context now answers 404
        await post_events(run, [cloud_event("execution.ended")])
        await run.idle()
        waiting = await records.get(ENGAGEMENT_SID)
        assert waiting is not None
        assert waiting.state == "active"
        sweeper.now = lambda: time.time() + tracker_module.MIN_INTERVAL + 1
        assert await sweeper.sweep() == 1
        done = await records.get(ENGAGEMENT_SID)
    assert done is not None
    assert done.state == "ended"  # gone from Studio: it ended
