"""Slack's tiers kept by the bot's own Web API calls (issue 27): a slot per method (per
channel for chat.postMessage) before each call, shared through the store; a call that
may not wait long gives up unsent; a 429 moves the schedule past Slack's Retry-After."""

from __future__ import annotations

import itertools

import pytest

from bot.slack.pace import TIERS, PacedWebClient, SlackBusy, SlackPace, within
from bot.state.store import BestEffort
from tests.peers import BOT_TOKEN, FakeSlack, serve

POST_INTERVAL = 60.0 / TIERS["chat.postMessage"][0]


def client(url: str) -> PacedWebClient:
    return PacedWebClient(token=BOT_TOKEN, base_url=f"{url}/api/", pace=SlackPace(BestEffort()))


def times(slack: FakeSlack, method: str) -> list[float]:
    return [at for name, at in slack.arrivals if name == method]


async def test_posts_in_one_channel_are_a_slot_apart_and_other_channels_do_not_wait() -> None:
    slack = FakeSlack()
    async with serve(slack.app()) as url:
        web = client(url)
        for _ in range(3):
            await web.chat_postMessage(channel="C1", text="x")
        await web.chat_postMessage(channel="C2", text="y")
    posts = times(slack, "chat.postMessage")
    gaps = [b - a for a, b in itertools.pairwise(posts[:3])]  # the three in C1
    assert all(gap >= POST_INTERVAL * 0.99 for gap in gaps), gaps  # never faster than the tier
    assert [p["channel"] for p in slack.posts] == ["C1", "C1", "C1", "C2"]


async def test_a_call_that_may_not_wait_gives_up_unsent() -> None:
    slack = FakeSlack()
    async with serve(slack.app()) as url:
        web = client(url)
        await web.chat_update(channel="C1", ts="1.1", text="first")
        with within(0.1), pytest.raises(SlackBusy) as busy:
            await web.chat_update(channel="C1", ts="1.1", text="second")
        assert busy.value.wait > 0.5
    assert [p["text"] for p in slack.posts] == ["first"]


async def test_a_429_holds_the_methods_schedule_for_retry_after() -> None:
    slack = FakeSlack(limited={"chat.update": 1}, retry_after="2")
    async with serve(slack.app()) as url:
        web = client(url)
        with pytest.raises(Exception, match="ratelimited"):
            await web.chat_update(channel="C1", ts="1.1", text="refused")
        with within(1.0), pytest.raises(SlackBusy) as busy:  # Slack said 2 s: not before
            await web.chat_update(channel="C1", ts="1.1", text="too soon")
        assert busy.value.wait > 1.0
    assert slack.posts == []


async def test_unpaced_methods_go_at_once() -> None:
    slack = FakeSlack()
    async with serve(slack.app()) as url:
        web = client(url)
        for _ in range(3):
            await web.auth_test()
    assert len(times(slack, "auth.test")) == 3
