"""The card follows the run to its end (issue 11): chat.postMessage and chat.update on a
fake Slack Web API, a fake Studio whose runs move and end, Event Streams deliveries
signed as Twilio signs them, restarts and two processes on one real Redis."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from bot.slack import follow
from bot.slack.pace import PacedWebClient, SlackPace
from tests.harness import Harness, harness, text_of, wired
from tests.peers import (
    AUTH_TOKEN,
    ENGAGEMENT_SID,
    FLOW_SID,
    FakeSlack,
    FakeStudio,
    RedisServer,
)

EVENTS_URL = "https://engage.example.com/twilio/events"  # what Twilio was given
FOLLOW = {"FOLLOW_MINUTES": "60", "TWILIO_EVENTS_URL": EVENTS_URL}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same rules, on a faster clock: polls from 0.2 s, edits at most every 0.3 s."""
    monkeypatch.setattr(follow, "FIRST_POLL", 0.2)
    monkeypatch.setattr(follow, "MAX_POLL", 0.4)
    monkeypatch.setattr(follow, "TICK_SECONDS", 0.05)
    monkeypatch.setattr(follow, "COALESCE_SECONDS", 0.3)


@pytest.fixture
async def run(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    async with harness(monkeypatch, FakeStudio(), **FOLLOW) as running:
        yield running


def step(n: int, widget: str, event: str = "incomingRequest") -> dict[str, Any]:
    return {
        "sid": f"FT{n:032x}",
        "name": event,
        "type": "send-message",
        "transitioned_from": "Trigger" if n == 1 else f"w{n - 1}",
        "transitioned_to": widget,
        "date_created": f"2026-11-23T10:00:{n:02d}Z",
    }


def move(studio: FakeStudio, *steps: dict[str, Any], status: str = "active") -> None:
    """The run takes ``steps`` (and ends, with ``status="ended"``)."""
    studio.steps[:] = list(steps)
    runs = studio.runs[ENGAGEMENT_SID]
    runs["status"] = status
    runs["date_updated"] = f"2026-11-23T10:03:{len(steps):02d}Z"


async def until(condition: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await run_a_moment()


async def run_a_moment() -> None:
    import asyncio

    await asyncio.sleep(0.05)


def updates(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in slack.posts if p["method"] == "chat.update"]


def threads(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in slack.posts if p.get("thread_ts")]


async def test_the_card_is_posted_then_follows_the_run_to_its_end(run: Harness) -> None:
    ack = (await run.command("+16175551212 first_name=Zeke"))[0].json()
    (card,) = await run.slack.wait_for_posts(1)
    assert "Starting" in ack["text"]
    assert card["method"] == "chat.postMessage"
    assert card["channel"] == "C0CHANNEL"
    assert "this card follows the run" in text_of(card["blocks"])
    assert run.slack.replies == []  # the card is a real message now, not a reply

    move(run.studio, step(1, "send_survey"))
    await until(lambda: updates(run.slack))
    assert "in `send_survey`" in text_of(updates(run.slack)[-1]["blocks"])
    assert updates(run.slack)[-1]["ts"] == card["ts"]

    move(run.studio, step(1, "send_survey"), step(2, "Ended", "sent"), status="ended")
    await until(lambda: threads(run.slack))
    final = updates(run.slack)[-1]
    assert "ended at `w1` after 3 min 2 s" in text_of(final["blocks"])
    assert "this card follows" not in text_of(final["blocks"])
    (note,) = threads(run.slack)
    assert note["thread_ts"] == card["ts"]
    assert "<@U0CALLER>" in note["text"]
    assert "ended at `w1`" in note["text"]
    await run.idle()
    count = len(run.slack.posts)
    await run_a_moment()
    await run_a_moment()
    assert len(run.slack.posts) == count  # no longer followed


async def test_a_failed_run_says_where_it_failed(run: Harness) -> None:
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    move(run.studio, step(1, "call_customer"), step(2, "Ended", "failed"), status="ended")
    await until(lambda: threads(run.slack))
    assert "failed at `w1`" in threads(run.slack)[0]["text"]


async def test_edits_are_coalesced(run: Harness) -> None:
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    started = time.monotonic()
    for n in range(1, 8):  # the run moves every 50 ms for 350 ms
        move(run.studio, *[step(i, f"w{i}") for i in range(1, n + 1)])
        await run_a_moment()
    await until(lambda: "in `w7`" in text_of(updates(run.slack)[-1:]))
    elapsed = time.monotonic() - started
    assert len(updates(run.slack)) <= 1 + elapsed / follow.COALESCE_SECONDS


async def test_the_card_is_never_edited_backwards(run: Harness) -> None:
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    move(run.studio, step(1, "w1"), step(2, "w2"))
    await until(lambda: "in `w2`" in text_of(updates(run.slack)[-1:]))
    shown = len(updates(run.slack))
    move(run.studio, step(1, "w1"))  # an older state, as a lagging replica might answer
    run.studio.runs[ENGAGEMENT_SID]["date_updated"] = "2026-11-23T10:00:01Z"
    for _ in range(10):
        await run_a_moment()
    assert len(updates(run.slack)) == shown


async def test_a_private_channel_without_the_bot_falls_back_to_the_response_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack(refuse_channels={"C0CHANNEL"})
    async with wired(monkeypatch, FakeStudio(), slack, env=FOLLOW) as run:
        await run.command("+16175551212")
        card, notice = await run.slack.wait_for_replies(2)
        assert card["response_type"] == "in_channel"
        assert "Invite the bot" in notice["text"]
        for n in range(1, 6):  # five moves: more than the response_url allows
            move(run.studio, *[step(i, f"w{i}") for i in range(1, n + 1)])
            await until(lambda n=n: len(run.slack.replies) >= 3 or n > 1, within=3)
            for _ in range(8):
                await run_a_moment()
        move(run.studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")
        await until(lambda: "ended at" in text_of(run.slack.replies[-1]))
    assert len(run.slack.replies) == follow.RESPONSE_URL_USES  # never more than Slack allows
    assert all(r.get("replace_original") for r in run.slack.replies[2:])
    assert updates(run.slack) == []


async def take_the_channels_turns(run: Harness) -> None:
    """The channel's next three chat.postMessage slots (over 3 s) are taken."""
    client = run.services.slack
    assert isinstance(client, PacedWebClient)
    assert client.pace is not None
    name, interval = SlackPace.key("chat.postMessage", "C0CHANNEL") or ("", 0.0)
    for _ in range(3):
        await client.pace.state.use(lambda s: s.reserve(name, interval, float("inf")))


async def test_a_card_past_its_channels_turn_is_the_commands_reply_and_shows_the_end(
    run: Harness,
) -> None:
    """A burst of starts in one channel: a card whose chat.postMessage turn is further
    away than PUBLISH_WITHIN is the command's in-channel reply instead, and its edits,
    the end included, go through that response_url, not chat.update's tier."""
    await take_the_channels_turns(run)
    await run.command("+16175551212")
    (card,) = await run.slack.wait_for_replies(1)
    assert card["response_type"] == "in_channel"
    assert "this card follows the run" in text_of(card["blocks"])
    assert not [p for p in run.slack.posts if p["method"] == "chat.postMessage"]
    move(run.studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")
    await until(lambda: "ended at" in text_of(run.slack.replies[-1]))
    await run.idle()
    assert run.slack.replies[-1].get("replace_original")
    assert not any("Invite the bot" in text_of(r) for r in run.slack.replies)
    assert updates(run.slack) == []
    assert threads(run.slack) == []


async def test_an_end_after_the_response_url_expired_is_said_in_the_channel(
    run: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "RESPONSE_URL_SECONDS", 0.3)
    await take_the_channels_turns(run)
    await run.command("+16175551212")
    await run.slack.wait_for_replies(1)
    for _ in range(8):  # past the response_url's life
        await run_a_moment()
    move(run.studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")
    await until(lambda: [p for p in run.slack.posts if p["method"] == "chat.postMessage"])
    (note,) = [p for p in run.slack.posts if p["method"] == "chat.postMessage"]
    assert note["channel"] == "C0CHANNEL"
    assert not note.get("thread_ts")
    assert "<@U0CALLER>" in note["text"]
    assert "ended at `w1`" in note["text"]
    assert not any("ended at" in text_of(r) for r in run.slack.replies)  # not the dead url


async def test_an_end_the_response_url_refused_is_said_in_the_channel(run: Harness) -> None:
    await take_the_channels_turns(run)
    await run.command("+16175551212")
    await run.slack.wait_for_replies(1)
    run.slack.dead_response_urls = True  # Slack refuses the card's last edit
    move(run.studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")
    await until(lambda: [p for p in run.slack.posts if p["method"] == "chat.postMessage"])
    (note,) = [p for p in run.slack.posts if p["method"] == "chat.postMessage"]
    assert not note.get("thread_ts")
    assert "ended at `w1`" in note["text"]


async def test_a_slack_outage_page_still_shows_the_card_through_the_response_url(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack's edge answers 503 with an HTML page, not Slack's JSON: the card still
    reaches the channel, and neither the post nor the Home tab's redraw is a defect."""
    slack = FakeSlack(down={"chat.postMessage", "views.publish"})
    async with wired(monkeypatch, FakeStudio(), slack, env=FOLLOW) as run:
        assert run.services.forms is not None
        await run.services.forms.opened_home("U0CALLER")  # so the start redraws it
        await run.command("+16175551212")
        card, *_ = await run.slack.wait_for_replies(1)
        await run.idle()
    assert card["response_type"] == "in_channel"
    # Inviting the bot would not help: no such advice.
    assert not any("Invite the bot" in text_of(r) for r in slack.replies)
    assert {"chat.postMessage", "views.publish"} <= set(slack.api_calls)
    assert "chat.postMessage refused in C0CHANNEL: HTTP 503" in caplog.text
    assert "views.publish refused: HTTP 503" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Event Streams ----------------------------------------------------------------


def cloud_event(kind: str, sid: str = ENGAGEMENT_SID, *, age: float = 0) -> dict[str, Any]:
    moment = datetime.fromtimestamp(time.time() - age, UTC).isoformat().replace("+00:00", "Z")
    return {
        "specversion": "1.0",
        "type": f"com.twilio.studio.flow.{kind}",
        "source": f"/v2/Flows/{FLOW_SID}/Executions/{sid}",
        "id": "EZ" + uuid.uuid4().hex,
        "datacontenttype": "application/json",
        "time": moment,
        "data": {"execution_sid": sid, "flow_sid": FLOW_SID, "account_sid": "AC" + "a" * 32},
    }


async def post_events(
    run: Harness, events: list[dict[str, Any]], *, token: str = AUTH_TOKEN, signed: bool = True
) -> httpx.Response:
    body = json.dumps(events).encode()
    query = f"bodySHA256={hashlib.sha256(body).hexdigest()}"
    headers = {"Content-Type": "application/json"}
    if signed:
        headers["X-Twilio-Signature"] = RequestValidator(token).compute_signature(
            f"{EVENTS_URL}?{query}", {}
        )
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{run.bot_url}/twilio/events?{query}", content=body, headers=headers
        )


async def test_an_event_moves_the_card_at_once(
    monkeypatch: pytest.MonkeyPatch, run: Harness
) -> None:
    monkeypatch.setattr(follow, "FIRST_POLL", 3600.0)  # polling alone would wait an hour
    monkeypatch.setattr(follow, "MAX_POLL", 3600.0)
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    move(run.studio, step(1, "send_survey"))
    for _ in range(5):
        await run_a_moment()
    assert updates(run.slack) == []  # nothing polled it
    response = await post_events(run, [cloud_event("step.ended")])
    assert response.status_code == 200
    await until(lambda: "in `send_survey`" in text_of(updates(run.slack)[-1:]), within=3)


@pytest.mark.parametrize("attack", ["unsigned", "forged", "stale", "tampered"])
async def test_forged_unsigned_stale_or_tampered_deliveries_get_401(
    run: Harness, attack: str
) -> None:
    events = [cloud_event("execution.ended", age=7200 if attack == "stale" else 0)]
    if attack == "tampered":
        body = json.dumps(events).encode()
        query = f"bodySHA256={hashlib.sha256(body).hexdigest()}"
        signature = RequestValidator(AUTH_TOKEN).compute_signature(f"{EVENTS_URL}?{query}", {})
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{run.bot_url}/twilio/events?{query}",
                content=body.replace(b"ended", b"ENDED"),
                headers={"X-Twilio-Signature": signature},
            )
    else:
        response = await post_events(
            run,
            events,
            token="not-the-token" if attack == "forged" else AUTH_TOKEN,
            signed=attack != "unsigned",
        )
    assert response.status_code == 401
    await run.idle()
    assert run.slack.posts == []


async def test_events_for_runs_nobody_follows_are_acknowledged_and_dropped(run: Harness) -> None:
    response = await post_events(run, [cloud_event("step.ended", "FN" + "9" * 32)])
    assert response.status_code == 200
    await run.idle()
    assert run.slack.posts == []
    assert run.studio.requests == []


async def test_a_duplicate_event_changes_nothing_more(
    monkeypatch: pytest.MonkeyPatch, run: Harness
) -> None:
    monkeypatch.setattr(follow, "FIRST_POLL", 3600.0)
    monkeypatch.setattr(follow, "MAX_POLL", 3600.0)
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    event = cloud_event("step.ended")
    move(run.studio, step(1, "w1"))
    await post_events(run, [event])
    await until(lambda: updates(run.slack))
    reads = len(run.studio.requests)
    await post_events(run, [event])  # Event Streams delivers at least once
    for _ in range(10):
        await run_a_moment()
    assert len(run.studio.requests) == reads  # not even read again
    await post_events(run, [cloud_event("step.ended")])  # a new event is read
    await until(lambda: len(run.studio.requests) > reads)


# --- restarts and two processes on one real Redis ----------------------------------


async def test_a_run_that_ends_while_the_bot_restarts_is_announced_by_the_next_process(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    env = {**FOLLOW, "REDIS_URL": redis.url.replace("/0", "/2")}
    async with wired(monkeypatch, studio, slack, env=env) as first:
        await first.command("+16175551212")
        (card,) = await slack.wait_for_posts(1)
        await first.services.drain(5)  # SIGTERM: this process stops following
    move(studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")  # meanwhile
    async with wired(monkeypatch, studio, slack, env=env):
        await until(lambda: threads(slack))
    (note,) = threads(slack)
    assert note["thread_ts"] == card["ts"]
    assert updates(slack)[-1]["ts"] == card["ts"]


async def test_two_processes_on_one_redis_announce_the_end_once(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    env = {**FOLLOW, "REDIS_URL": redis.url.replace("/0", "/3")}
    async with (
        wired(monkeypatch, studio, slack, env=env) as a,
        wired(monkeypatch, studio, slack, env=env),
    ):
        await a.command("+16175551212")
        await slack.wait_for_posts(1)
        move(studio, step(1, "w1"), step(2, "Ended", "sent"), status="ended")
        await until(lambda: threads(slack))
        for _ in range(20):
            await run_a_moment()
    assert len(threads(slack)) == 1


async def test_an_event_never_rolls_back_what_the_poller_wrote(
    monkeypatch: pytest.MonkeyPatch, run: Harness
) -> None:
    """The finding (issue 32, 12): ``nudge`` rewrote the whole record without the lease
    while the poller wrote it, so the response_url's use count could roll back. Here the
    poller writes ``uses=3`` between the nudge's read and its write."""
    monkeypatch.setattr(follow, "FIRST_POLL", 3600.0)
    monkeypatch.setattr(follow, "MAX_POLL", 3600.0)
    await run.command("+16175551212")
    await run.slack.wait_for_posts(1)
    follower, store = run.services.follower, run.services.store
    assert follower is not None
    key = f"follow:{ENGAGEMENT_SID}"
    stale = follow.Followed.of(await store.hgetall(key))
    assert stale is not None
    assert stale.uses == 0

    async def read_then_the_poller_writes(sid: str) -> follow.Followed:
        await store.hset(key, {"uses": "3", "final_since": "12.5"}, 3600)
        return stale

    monkeypatch.setattr(follower, "_load", read_then_the_poller_writes)
    await follower.nudge("EZ" + "1" * 32, ENGAGEMENT_SID)
    kept = follow.Followed.of(await store.hgetall(key))
    assert kept is not None
    assert (kept.uses, kept.final_since, kept.next_poll) == (3, 12.5, 0.0)
