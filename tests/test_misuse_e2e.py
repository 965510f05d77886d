"""Holes found by trying to misuse the bot (issue 17), each through signed requests."""

from __future__ import annotations

import json
import logging

import pytest

from tests.harness import buttons, harness, text_of
from tests.peers import (
    ENGAGEMENT_SID,
    FLOW_SID,
    SURVEY_SID,
    FakeStudio,
    RedisServer,
    free_port,
    redis_server,
)

OTHER_FLOW = "FW" + "9" * 32


# --- 17.2: status and the buttons follow the access rules ------------------------


@pytest.mark.parametrize(
    ("env", "text", "user", "channel", "rule"),
    [
        ({"ALLOWED_SLACK_USERS": "U0CALLER"}, "", "U0OTHER", "C0CHANNEL", "ALLOWED_SLACK_USERS"),
        (
            {"ALLOWED_SLACK_CHANNELS": "C0CHANNEL"},
            "",
            "U0CALLER",
            "C0ELSEWHERE",
            "ALLOWED_SLACK_CHANNELS",
        ),
        (
            {"STUDIO_FLOWS": f"onboarding={FLOW_SID};users=U0CALLER,survey={SURVEY_SID}"},
            " --flow onboarding",
            "U0OTHER",
            "C0CHANNEL",
            "STUDIO_FLOWS onboarding users",
        ),
        ({}, f" --flow {OTHER_FLOW}", "U0CALLER", "C0CHANNEL", "not configured here"),
    ],
)
async def test_status_applies_the_access_rules(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    text: str,
    user: str,
    channel: str,
    rule: str,
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, **env) as run:
        await run.start()
        studio.requests.clear()
        response, _ = await run.command(
            f"status {ENGAGEMENT_SID}{text}", user_id=user, channel_id=channel
        )
        ack = response.json()
        await run.idle()
    assert ack["response_type"] == "ephemeral"
    assert rule in ack["text"]
    assert "+1 617-555-1212" not in text_of(ack)
    assert studio.requests == []  # nothing read from Studio
    assert len(run.slack.replies) == 1  # only the card


async def test_an_admin_may_read_a_flow_that_is_not_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(), ADMIN_SLACK_USERS="U0ADMIN") as run:
        await run.start()
        response, _ = await run.command(
            f"status {ENGAGEMENT_SID} --flow {OTHER_FLOW}", user_id="U0ADMIN"
        )
        assert "Looking up" in response.json()["text"]
        answer = (await run.slack.wait_for_replies(2))[1]
    assert answer["text"].startswith(f"No engagement {ENGAGEMENT_SID}")  # not in that flow


@pytest.mark.parametrize(("user", "masked"), [("U0CALLER", False), ("U0OTHER", True)])
async def test_status_masks_the_number_except_for_the_starter(
    monkeypatch: pytest.MonkeyPatch, user: str, masked: bool
) -> None:
    async with harness(monkeypatch, FakeStudio(), MASK_NUMBERS="true") as run:
        await run.start()
        await run.command(f"status {ENGAGEMENT_SID}", user_id=user)
        answer = (await run.slack.wait_for_replies(2))[1]
    shown = text_of(answer)
    assert ("+1 617-•••-1212" in shown) is masked
    assert ("+1 617-555-1212" in shown) is not masked


async def test_status_refresh_and_end_count_against_a_per_user_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(), USER_RATE_LIMIT="3/minute") as run:
        card = await run.start()  # a start: counted apart from looks at runs
        acks = [(await run.command(f"status {ENGAGEMENT_SID}"))[0].json()["text"] for _ in range(3)]
        await run.slack.wait_for_replies(4)  # the card and three status answers
        answer = await run.click(
            "engage_refresh", buttons(card)["engage_refresh"]["value"], user="U0CALLER", n=5
        )
        assert all("Looking up" in ack for ack in acks)
        assert "USER_RATE_LIMIT" in answer["text"]  # the fourth look in a minute
        assert answer["replace_original"] is False
        started = (await run.command("+16175551213"))[0].json()["text"]
    assert "Starting" in started  # starts have their own count


@pytest.mark.parametrize("action", ["engage_refresh", "engage_end"])
async def test_the_buttons_apply_the_access_rules(
    monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    studio = FakeStudio()
    env = {"STUDIO_API": "v2", "ALLOWED_SLACK_CHANNELS": "C0CHANNEL", "ADMIN_SLACK_USERS": "U0ADM"}
    async with harness(monkeypatch, studio, **env) as run:
        card = await run.start()
        studio.requests.clear()
        answer = await run.click(
            action, buttons(card)[action]["value"], user="U0ADM", channel="C0ELSE", n=2
        )
    assert answer["replace_original"] is False
    assert "ALLOWED_SLACK_CHANNELS" in answer["text"]
    assert studio.requests == []
    assert studio.runs[ENGAGEMENT_SID]["status"] == "active"


# --- 17.4: Redis errors fall back, whichever operation meets them first -----------


@pytest.fixture
def dead_redis() -> str:
    """A Redis URL where nothing listens: every operation raises redis-py's errors."""
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_with_redis_down_every_command_and_click_still_gets_its_answer(
    monkeypatch: pytest.MonkeyPatch, dead_redis: str
) -> None:
    """No start goes out on a list the bot cannot read (the opt-out list lives in Redis;
    issue 35), and a confirmation, which must not be split between processes, is not
    parked on memory: each is answered, nothing is sent. A look at a run, whose limit
    falls back to memory, still reads Studio."""
    async with harness(monkeypatch, FakeStudio(), REDIS_URL=dead_redis) as run:
        first = (await run.command("+16175551212"))[0].json()
        again = (await run.command("+16175551212"))[0].json()
        cancel = await run.click("engage_cancel", "some-token", n=1)
        await run.command(f"status {ENGAGEMENT_SID}")
        await run.slack.wait_for_replies(2)
    assert "the opt-out list could not be read" in first["text"]
    assert "Nothing was sent" in first["text"]
    assert "the opt-out list could not be read" in again["text"]
    assert "shared state (Redis) is not answering" in cancel["text"]
    assert {r["method"] for r in run.studio.requests} == {"GET"}  # the status read, no start


async def test_redis_stopping_mid_run_loses_no_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    server: RedisServer
    with redis_server() as server:
        async with harness(monkeypatch, FakeStudio(), REDIS_URL=server.url) as run:
            await run.command("+16175551212")
            prompt = (await run.command("+16175551212"))[0].json()
            await run.slack.wait_for_replies(1)
            server.stop()
            again = buttons(prompt)["engage_again"]["value"]
            answer = await run.click("engage_again", again, n=2)
    # The parked command lives in Redis, which is gone: the button says so, and sends nothing.
    assert "shared state (Redis) is not answering" in answer["text"]
    assert len(run.studio.requests) == 1


# --- 17.5 and 17.10: every command ends in a reply and an audit line, masked ------


async def test_invalid_commands_are_audited_with_the_number_masked(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    async with harness(monkeypatch, FakeStudio()) as run:
        await run.command("6175551212 first_name=Zeke")
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bot.audit"]
    assert line["outcome"] == "invalid"
    assert "1212" in line["detail"]
    assert "6175551212" not in line["detail"]
    assert "617555" not in line["detail"]


async def test_a_command_too_deep_to_encode_is_refused_before_the_ack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deep = "+16175551212 " + ".".join(["a"] * 1000) + "=1"
    async with harness(monkeypatch, FakeStudio()) as run:
        ack = (await run.command(deep))[0].json()
        again = (await run.command("+16175551212 a=1"))[0].json()
        await run.slack.wait_for_replies(1)
    assert "nested too deeply" in ack["text"]
    assert "Starting" in again["text"]  # no duplicate window was claimed for it


# --- 17.8: a SID typed in capitals is the same flow ---------------------------------


async def test_a_flow_sid_in_capitals_meets_the_same_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    flows = f"onboarding={FLOW_SID},survey={SURVEY_SID};users=U0BOSS"
    upper = "FW" + SURVEY_SID[2:].upper()
    async with harness(monkeypatch, FakeStudio(), STUDIO_FLOWS=flows) as run:
        refused = (await run.command(f"+16175551212 --flow {upper}"))[0].json()
        await run.command(f"+16175551212 --flow {SURVEY_SID}", user_id="U0BOSS")
        again = (await run.command(f"+16175551212 --flow {upper}", user_id="U0BOSS"))[0].json()
        await run.slack.wait_for_replies(1)
    assert "STUDIO_FLOWS survey users" in refused["text"]
    assert "Start it again?" in again["text"]  # the same duplicate key, whatever the case
    assert len(run.studio.requests) == 1
