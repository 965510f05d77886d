"""The Engager: work after the ack is tracked, drained on shutdown, and always reported."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import SecretStr

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.engage.start import Engager
from bot.slack.engage import SlackEngage
from bot.studio.client import StudioClient
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, CONTACT, FLOW_SID, SENDER, FakeStudio, serve

COMMAND = EngageCommand(FLOW_SID, "onboarding", CONTACT, SENDER, {"first_name": "Zeke"})


class Replies:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


async def test_drain_waits_for_engagements_in_flight() -> None:
    studio = FakeStudio(latency=0.5)
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager, replies = Engager(client), Replies()
        starts = SlackEngage(engager)
        assert "Starting" in (await starts.request(COMMAND, Caller("U1"), replies))["text"]
        assert "Starting" in (await starts.request(COMMAND, Caller("U2"), replies))["text"]
        assert len(starts.tasks) == 2
        await starts.tasks.drain(grace=10)
        await client.aclose()
    assert [m["response_type"] for m in replies.messages] == ["in_channel", "in_channel"]
    assert len(starts.tasks) == 0
    late = await starts.request(COMMAND, Caller("U3"), replies)  # no new work once draining
    assert "restarting" in late["text"]
    assert len(studio.requests) == 2


async def test_engagements_cut_short_by_the_grace_period_say_the_outcome_is_unknown() -> None:
    studio = FakeStudio(latency=3)  # outlasts the grace below
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager, replies = Engager(client), Replies()
        starts = SlackEngage(engager)
        await starts.request(COMMAND, Caller("U1"), replies)
        await starts.tasks.drain(grace=0.5)
        await client.aclose()
    (message,) = replies.messages
    assert message["response_type"] == "ephemeral"
    text = json.dumps(message)
    assert "stopped while waiting" in text
    assert "outcome is unknown" in text
    assert len(studio.requests) == 1


async def test_a_reply_slack_refuses_is_logged_not_raised(caplog: Any) -> None:
    caplog.set_level(logging.INFO)

    async def broken(message: dict[str, Any]) -> None:
        raise RuntimeError("response_url answered HTTP 404")

    studio = FakeStudio()
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager = Engager(client)
        starts = SlackEngage(engager)
        await starts.request(COMMAND, Caller("U1"), broken)
        await starts.tasks.drain(grace=10)
        await client.aclose()
    assert "could not deliver the reply for FN" in caplog.text
    assert '"outcome": "started"' in caplog.text


async def test_a_201_whose_body_cannot_be_decoded_is_an_unknown_outcome(
    caplog: Any,
) -> None:
    """A real peer answering 201 with a body that is not the gzip it claims (httpx raises
    DecodingError, which is not a TransportError): never silence, and still a duplicate."""
    from aiohttp import web

    async def created(request: web.Request) -> web.Response:
        return web.Response(status=201, body=b"not gzip", headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_post("/v1/Flows/{flow}/Engagements", created)
    caplog.set_level(logging.INFO)
    async with serve(app) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager, replies = Engager(client), Replies()
        starts = SlackEngage(engager)
        await starts.request(COMMAND, Caller("U1"), replies)
        await starts.tasks.drain(grace=10)
        await client.aclose()
    (message,) = replies.messages
    assert "outcome is unknown" in json.dumps(message)
    assert '"outcome": "unknown"' in caplog.text
    assert not await engager.throttle.claim("U1", COMMAND)  # it stands: it may have started


class Exploding(StudioClient):
    """A Studio client with a defect: what the task must survive."""

    async def create_engagement(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug")


async def test_a_defect_in_the_task_still_ends_in_a_reply_and_an_audit_line(
    caplog: Any,
) -> None:
    caplog.set_level(logging.INFO)
    client = Exploding(base_url="http://127.0.0.1:9", username="AC", password=SecretStr("x"))
    engager, replies = Engager(client), Replies()
    starts = SlackEngage(engager)
    await starts.request(COMMAND, Caller("U1"), replies)
    await starts.tasks.drain(grace=10)
    await client.aclose()
    (message,) = replies.messages
    assert message["response_type"] == "ephemeral"
    assert "KeyError" in json.dumps(message)
    assert '"outcome": "unknown"' in caplog.text


async def test_parameters_that_cannot_be_encoded_are_not_sent_and_free_the_claim(
    caplog: Any,
) -> None:
    studio = FakeStudio()
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    command = EngageCommand(FLOW_SID, None, CONTACT, SENDER, {"a": deep})
    caplog.set_level(logging.INFO)
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager, replies = Engager(client), Replies()
        starts = SlackEngage(engager)
        await starts.request(command, Caller("U1"), replies)
        await starts.tasks.drain(grace=10)
        await client.aclose()
    assert "nothing was sent" in json.dumps(replies.messages[0])
    assert '"outcome": "failed"' in caplog.text
    assert await engager.throttle.claim("U1", command)  # released: it certainly did not start
    assert studio.requests == []


async def test_a_command_still_waiting_for_its_pacing_slot_at_shutdown_was_not_sent() -> None:
    from bot.engage.throttle import Throttle

    studio = FakeStudio()
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        throttle = Throttle(studio_rate="1/minute", max_wait=60)
        engager, replies = Engager(client, throttle=throttle), Replies()
        starts = SlackEngage(engager)
        await starts.request(COMMAND, Caller("U1"), replies)
        other = EngageCommand(FLOW_SID, None, "+16175551213", SENDER, {})
        await starts.request(other, Caller("U2"), replies)  # waits a minute for its slot
        await starts.tasks.drain(grace=1)
        await client.aclose()
    texts = [json.dumps(m) for m in replies.messages]
    waited = next(t for t in texts if "555-1213" in t)
    assert "nothing was sent" in waited
    assert "outcome is unknown" not in waited
    assert len(studio.requests) == 1
