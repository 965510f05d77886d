"""Each guardrail end to end through Slack-signed requests; Studio's request count proves
what was, and was not, sent."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.harness import block_action, harness
from tests.peers import FLOW_SID, SURVEY_SID, FakeStudio, RedisServer


def text_of(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


@pytest.mark.parametrize(
    ("env", "command", "user", "channel", "rule"),
    [
        (
            {"ALLOWED_SLACK_USERS": "U0BOSS"},
            "+16175551212",
            "U0CALLER",
            "C0CHANNEL",
            "ALLOWED_SLACK_USERS",
        ),
        (
            {"ALLOWED_SLACK_CHANNELS": "C0OPS"},
            "+16175551212",
            "U0CALLER",
            "C0CHANNEL",
            "ALLOWED_SLACK_CHANNELS",
        ),
        (
            {"STUDIO_FLOWS": f"onboarding={FLOW_SID},survey={SURVEY_SID};users=U0BOSS"},
            "survey +16175551212",
            "U0CALLER",
            "C0CHANNEL",
            "STUDIO_FLOWS survey users",
        ),
        (
            {"STUDIO_FLOWS": f"onboarding={FLOW_SID},survey={SURVEY_SID};channels=C0OPS"},
            f"+16175551212 --flow {SURVEY_SID}",
            "U0CALLER",
            "C0CHANNEL",
            "STUDIO_FLOWS survey channels",
        ),
        (
            {"ALLOWED_COUNTRIES": "US,CA"},
            "+4930123456",
            "U0CALLER",
            "C0CHANNEL",
            "ALLOWED_COUNTRIES=CA,US",
        ),
        ({}, "+19005551234", "U0CALLER", "C0CHANNEL", "premium-rate"),
    ],
)
async def test_refusals_name_the_rule_and_send_nothing(
    monkeypatch: pytest.MonkeyPatch,
    env: dict[str, str],
    command: str,
    user: str,
    channel: str,
    rule: str,
) -> None:
    async with harness(monkeypatch, FakeStudio(), **env) as run:
        response, _ = await run.command(command, user_id=user, channel_id=channel)
        ack = response.json()
        assert ack["response_type"] == "ephemeral"
        assert rule in ack["text"]
        assert "Nothing was sent" in ack["text"]
        await run.idle()
        assert run.studio.requests == []


@pytest.mark.parametrize(
    ("env", "command", "user", "channel"),
    [
        (
            {"ALLOWED_SLACK_USERS": "U0CALLER", "ALLOWED_SLACK_CHANNELS": "C0CHANNEL"},
            "+16175551212",
            "U0CALLER",
            "C0CHANNEL",
        ),
        (
            {"STUDIO_FLOWS": f"onboarding={FLOW_SID},survey={SURVEY_SID};users=U0BOSS"},
            "+16175551212",
            "U0CALLER",
            "C0CHANNEL",
        ),
        ({"ALLOWED_COUNTRIES": "US"}, "+16175551212", "U0CALLER", "C0CHANNEL"),
        ({"ALLOW_PREMIUM_NUMBERS": "true"}, "+19005551234", "U0CALLER", "C0CHANNEL"),
    ],
)
async def test_allowed_commands_go_through(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], command: str, user: str, channel: str
) -> None:
    async with harness(monkeypatch, FakeStudio(), **env) as run:
        response, _ = await run.command(command, user_id=user, channel_id=channel)
        assert "Starting" in response.json()["text"]
        (reply,) = await run.slack.wait_for_replies(1)
        assert reply["response_type"] == "in_channel"
        assert len(run.studio.requests) == 1


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_per_user_rate_limit(
    monkeypatch: pytest.MonkeyPatch, backend: str, request: pytest.FixtureRequest
) -> None:
    env = {"USER_RATE_LIMIT": "2/minute"}
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis")
        env["REDIS_URL"] = server.url.replace("/0", "/1")
    async with harness(monkeypatch, FakeStudio(), **env) as run:
        acks = [(await run.command(f"+1617555121{i}"))[0].json()["text"] for i in range(3)]
        other = (await run.command("+16175551219", user_id="U0OTHER"))[0].json()["text"]
        await run.slack.wait_for_replies(3)
    assert "Starting" in acks[0]
    assert "Starting" in acks[1]
    assert "USER_RATE_LIMIT" in acks[2]
    assert "Nothing was sent" in acks[2]
    assert "Starting" in other  # the limit is per user
    assert len(run.studio.requests) == 3


async def test_a_double_enter_asks_before_calling_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio()) as run:
        first, _ = await run.command("+16175551212 first_name=Zeke")
        second, _ = await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        assert "Starting" in first.json()["text"]
        prompt = second.json()
        assert prompt["response_type"] == "ephemeral"
        assert "Start it again?" in prompt["text"]
        assert len(run.studio.requests) == 1  # the second did not reach Studio

        buttons = prompt["blocks"][1]["elements"]
        again = next(b for b in buttons if b["action_id"] == "engage_again")
        assert again["confirm"]["title"]["text"] == "Start again?"
        token = again["value"]
        assert "+1617" not in token  # the payload carries a token, not the command
        assert FLOW_SID not in token

        # Someone else cannot confirm it (the prompt is ephemeral, but a payload can be forged).
        forged = block_action(
            "engage_again", token, user_id="U0MALLORY", response_url=f"{run.slack_url}/respond/9"
        )
        assert (await run.post(forged))[0].status_code == 200
        await run.slack.wait_for_replies(2)
        assert "only the person who typed the command" in text_of(run.slack.replies[1])
        assert len(run.studio.requests) == 1


async def test_start_again_and_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio()) as run:
        await run.command("+16175551212")
        prompt = (await run.command("+16175551212"))[0].json()
        token = prompt["blocks"][1]["elements"][0]["value"]
        await run.slack.wait_for_replies(1)

        click = block_action("engage_again", token, response_url=f"{run.slack_url}/respond/2")
        assert (await run.post(click))[0].status_code == 200
        replies = await run.slack.wait_for_replies(3)
        replaced = next(r for r in replies[1:] if r.get("replace_original"))
        assert "Starting" in replaced["text"]
        result = next(r for r in replies[1:] if not r.get("replace_original"))
        assert result["response_type"] == "in_channel"
        assert len(run.studio.requests) == 2

        # The same button again: already used, nothing sent.
        assert (await run.post(click))[0].status_code == 200
        await run.slack.wait_for_replies(4)
        assert "expired or was already used" in run.slack.replies[3]["text"]

        prompt = (await run.command("+16175551212"))[0].json()
        token = prompt["blocks"][1]["elements"][1]["value"]
        cancel = block_action("engage_cancel", token, response_url=f"{run.slack_url}/respond/3")
        await run.post(cancel)
        await run.slack.wait_for_replies(5)
        assert "Not started again" in run.slack.replies[4]["text"]
        assert len(run.studio.requests) == 2


async def test_a_definite_failure_is_not_a_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    async with harness(monkeypatch, FakeStudio(answers=[refusal])) as run:
        await run.command("+16175551212")
        await run.slack.wait_for_replies(1)
        retry, _ = await run.command("+16175551212")
        assert "Starting" in retry.json()["text"]


async def test_an_unknown_outcome_is_a_duplicate(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(answers=[(500, "boom")])) as run:
        await run.command("+16175551212")
        await run.slack.wait_for_replies(1)
        retry, _ = await run.command("+16175551212")
        assert "Start it again?" in retry.json()["text"]
        assert len(run.studio.requests) == 1


async def test_studio_requests_are_paced_not_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(), STUDIO_RATE_LIMIT="2/second") as run:
        started = time.monotonic()
        for i in range(5):
            response, elapsed = await run.command(f"+1617555120{i}", user_id=f"U0USER{i}")
            assert "Starting" in response.json()["text"]
            assert elapsed < 1.0  # the ack never waits for the pacing
        replies = await run.slack.wait_for_replies(5, within=15)
        assert all(r["response_type"] == "in_channel" for r in replies)
        assert time.monotonic() - started >= 2.0  # 5 at 2 per second: two waits
        assert len(run.studio.requests) == 5


async def test_masked_numbers_in_the_channel_full_number_to_the_caller(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(), MASK_NUMBERS="true") as run:
        ack = (await run.command("+16175551212"))[0].json()
        (reply,) = await run.slack.wait_for_replies(1)
    assert "+1 617-555-1212" in ack["text"]  # only the caller sees the ack
    channel = text_of(reply)
    assert "+1 617-•••-1212" in channel
    assert "555-1212" not in channel
    assert "6175551212" not in channel


async def test_one_json_audit_line_per_outcome(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    async with harness(monkeypatch, FakeStudio(), ALLOWED_COUNTRIES="US") as run:
        await run.command("+16175551212")
        await run.command("+4930123456")
        await run.command("nonsense")
        await run.slack.wait_for_replies(1)
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bot.audit"]
    outcomes = {line["outcome"]: line for line in lines}
    assert set(outcomes) == {"started", "refused", "invalid"}
    started = outcomes["started"]
    assert started["sid"] == "FN" + "d" * 32
    assert started["contact"] == "+1 617-•••-1212"
    assert (started["team"], started["user"], started["channel"]) == (
        "T0001",
        "U0CALLER",
        "C0CHANNEL",
    )
    assert started["flow"] == FLOW_SID
    assert started["latency_ms"] >= 0
    assert started["time"].endswith("+00:00")
    assert outcomes["refused"]["contact"] == "+49 30 ••3456"
