"""The Engager: work after the ack is tracked, drained on shutdown, and always reported."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import SecretStr

from bot.audit import Caller
from bot.command import EngageCommand
from bot.engage import Engager
from bot.studio import StudioClient
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
        assert "Starting" in (await engager.request(COMMAND, Caller("U1"), replies))["text"]
        assert "Starting" in (await engager.request(COMMAND, Caller("U2"), replies))["text"]
        assert engager.in_flight == 2
        await engager.drain(grace=10)
        await client.aclose()
    assert [m["response_type"] for m in replies.messages] == ["in_channel", "in_channel"]
    assert engager.in_flight == 0
    late = await engager.request(COMMAND, Caller("U3"), replies)  # no new work once draining
    assert "restarting" in late["text"]
    assert len(studio.requests) == 2


async def test_engagements_cut_short_by_the_grace_period_say_the_outcome_is_unknown() -> None:
    studio = FakeStudio(latency=3)  # outlasts the grace below
    async with serve(studio.app()) as url:
        client = StudioClient(base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN))
        engager, replies = Engager(client), Replies()
        await engager.request(COMMAND, Caller("U1"), replies)
        await engager.drain(grace=0.5)
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
        await engager.request(COMMAND, Caller("U1"), broken)
        await engager.drain(grace=10)
        await client.aclose()
    assert "could not deliver the reply for FN" in caplog.text
    assert '"outcome": "started"' in caplog.text
