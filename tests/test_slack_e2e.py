"""/engage end to end: the real server on loopback, requests signed as Slack signs
them, a fake Slack (Web API + response_url sink) and Studio as a fake or as Prism.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.harness import Harness, block_action, harness, wired
from tests.peers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    BOT_TOKEN,
    FLOW_SID,
    SENDER,
    SIGNING_SECRET,
    SURVEY_SID,
    FakeSlack,
    FakeStudio,
    free_port,
    prism,
    signed_headers,
    slash_command,
)


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    async with harness(monkeypatch, FakeStudio()) as running:
        yield running


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


async def test_engage_acks_then_reports_in_channel(h: Harness) -> None:
    response, _ = await h.command(
        '+1 617 555 1212 first_name=Zeke plan=gold vip:=true name="Zeke Smith"'
    )
    assert response.status_code == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    assert "Starting" in ack["text"]

    (reply,) = await h.slack.wait_for_replies(1)
    assert reply["response_type"] == "in_channel"
    sid = "FN" + "d" * 32
    assert sid in reply["text"]
    assert "active" in reply["text"]
    assert "https://console.twilio.com/" in reply["text"]
    blocks = all_text(reply["blocks"])
    for expected in [
        sid,
        "active",
        "onboarding",
        FLOW_SID,
        "+1 617-555-1212",
        "+1 617-555-0100",
        "<@U0CALLER>",
        "first_name",
        "Zeke Smith",
        "Open in Twilio Console",
        f"https://studio.twilio.com/v1/Flows/{FLOW_SID}/Engagements/{sid}",
    ]:
        assert expected in blocks, expected

    (request,) = h.studio.requests
    assert request["flow"] == FLOW_SID
    assert request["form"] == {
        "To": "+16175551212",
        "From": SENDER,
        "Parameters": '{"first_name":"Zeke","plan":"gold","vip":true,"name":"Zeke Smith"}',
    }
    assert request["authorization"] == httpx.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)._auth_header
    assert request["user_agent"].startswith("studio-engage/")
    assert h.slack.api_calls == ["auth.test"]


async def test_flow_alias_and_sender(h: Harness) -> None:
    await h.command("survey +16175551212 --from +14155550000")
    (reply,) = await h.slack.wait_for_replies(1)
    assert "survey" in reply["text"]
    assert h.studio.requests[0]["flow"] == SURVEY_SID
    assert h.studio.requests[0]["form"]["From"] == "+14155550000"


async def test_ack_does_not_wait_for_a_slow_studio(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(latency=5.0)) as slow:
        response, elapsed = await slow.command("+16175551212 first_name=Zeke")
        assert response.status_code == 200
        assert elapsed < 1.0, f"ack took {elapsed:.2f} s"
        assert slow.slack.replies == []
        (reply,) = await slow.slack.wait_for_replies(1, within=15)
        assert reply["response_type"] == "in_channel"


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-www-form-urlencoded"},  # unsigned
        "wrong-secret",
        "stale",
    ],
)
async def test_unverified_requests_get_401_and_reach_nothing(h: Harness, headers: Any) -> None:
    body = slash_command("+16175551212", response_url=f"{h.slack_url}/respond/1")
    if headers == "wrong-secret":
        headers = signed_headers(body, secret="not-" + SIGNING_SECRET)
    elif headers == "stale":
        headers = signed_headers(body, timestamp=int(time.time()) - 6 * 60)
    response, _ = await h.post(body, headers)
    assert response.status_code == 401
    assert h.studio.requests == []
    assert h.slack.replies == []
    assert [c for c in h.slack.api_calls if c != "auth.test"] == []  # only start-up's


async def test_a_tampered_body_gets_401(h: Harness) -> None:
    body = slash_command("+16175551212", response_url=f"{h.slack_url}/respond/1")
    headers = signed_headers(body)
    tampered = body.replace("%2B16175551212", "%2B14155551212")
    response, _ = await h.post(tampered, headers)
    assert response.status_code == 401
    assert h.studio.requests == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("+18001234567", "not a valid number"),
        ("+16175551212 a=1 a=2", "conflicting keys"),
        ("+16175551212 a:={oops", "bad JSON"),
        ("nope +16175551212", "known flows: onboarding, survey"),
        ("+16175551212 --to x", "unknown option"),
    ],
)
async def test_invalid_commands_get_an_ephemeral_error_and_nothing_is_sent(
    h: Harness, text: str, problem: str
) -> None:
    response, _ = await h.command(text)
    assert response.status_code == 200
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    assert problem in all_text(ack)
    assert "Nothing was sent" in ack["text"]
    assert h.studio.requests == []
    assert h.slack.replies == []


async def test_help_lists_usage_examples_and_flows(h: Harness) -> None:
    response, _ = await h.command("help", command="/engage-staging")
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    text = all_text(ack)
    for expected in ["/engage-staging", "key:=json", "onboarding", "survey", SURVEY_SID]:
        assert expected in text
    assert h.studio.requests == []


TWILIO_ERRORS = [
    (
        (
            400,
            {
                "code": 21211,
                "message": "Invalid 'To' Phone Number",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
        ),
        [
            "Could not start",
            "Invalid 'To' Phone Number",
            "21211",
            "https://www.twilio.com/docs/errors/21211",
        ],
        ["outcome is unknown"],
    ),
    (
        (
            404,
            {
                "code": 20404,
                "message": "The requested resource was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404",
                "status": 404,
            },
        ),
        ["Could not start", "20404", "https://www.twilio.com/docs/errors/20404"],
        ["outcome is unknown"],
    ),
    (
        (
            401,
            {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
        ),
        ["Could not start", "Authenticate", "20003"],
        [AUTH_TOKEN],
    ),
    (
        (500, {"code": 20500, "message": "Internal Server Error", "status": 500}),
        ["Not sure whether", "outcome is unknown", "20500", "does not retry"],
        [],
    ),
    (
        (502, "<html>Bad Gateway</html>"),
        ["Not sure whether", "HTTP 502", "outcome is unknown"],
        [],
    ),
    (
        (201, "not json at all"),
        ["Not sure whether", "probably started", "outcome is unknown"],
        [],
    ),
]


@pytest.mark.parametrize(("answer", "present", "absent"), TWILIO_ERRORS)
async def test_each_twilio_error_gets_the_right_ephemeral_message(
    monkeypatch: pytest.MonkeyPatch, answer: tuple[int, Any], present: list[str], absent: list[str]
) -> None:
    async with harness(monkeypatch, FakeStudio(answers=[answer])) as run:
        response, _ = await run.command("+16175551212")
        assert response.status_code == 200
        (reply,) = await run.slack.wait_for_replies(1)
        assert reply["response_type"] == "ephemeral"
        text = all_text(reply)
        for expected in present:
            assert expected in text, expected
        for unexpected in absent:
            assert unexpected not in text, unexpected
        assert len(run.studio.requests) == 1  # never retried


async def test_unreachable_studio_says_nothing_started(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(
        monkeypatch, FakeStudio(), studio_url=f"http://127.0.0.1:{free_port()}"
    ) as run:
        await run.command("+16175551212")
        (reply,) = await run.slack.wait_for_replies(1, within=15)
        assert reply["response_type"] == "ephemeral"
        assert "nothing started" in reply["text"]
        assert "outcome is unknown" not in reply["text"]


async def test_huge_input_stays_within_block_kit_limits(h: Harness) -> None:
    params = " ".join(f"key{i}={'x' * 150}" for i in range(20))
    await h.command(f"+16175551212 {params}")
    (reply,) = await h.slack.wait_for_replies(1)
    for block in reply["blocks"]:
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= 3000
            for field in block.get("fields", []):
                assert len(field["text"]) <= 2000
    assert len(reply["blocks"]) <= 50
    assert "…" in all_text(reply)  # the parameters were clipped, and it shows
    assert len(h.studio.requests[0]["form"]["Parameters"]) > 3000  # but Studio got them all


async def test_console_button_click_is_acknowledged(h: Harness) -> None:
    body = block_action("open_console", "", response_url=f"{h.slack_url}/respond/2")
    response, _ = await h.post(body)
    assert response.status_code == 200


async def test_health(h: Harness) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{h.bot_url}/healthz")
    assert response.status_code == 200
    assert response.json()["ok"] is True


async def test_no_secret_in_any_reply_or_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    answers = [(401, {"code": 20003, "message": "Authenticate", "status": 401}), (500, "boom")]
    async with harness(monkeypatch, FakeStudio(answers=answers)) as run:
        acks = [
            (await run.command(text))[0].json()
            for text in ["+16175551212", "+16175551213", "+16175551214 a=1", "bad", "help"]
        ]
        replies = await run.slack.wait_for_replies(3)
    everything = caplog.text + json.dumps(acks) + json.dumps(replies)
    for secret in (AUTH_TOKEN, BOT_TOKEN, SIGNING_SECRET):
        assert secret not in everything


@pytest.fixture(scope="module")
def prism_v1() -> Iterator[str]:
    with prism("twilio_studio_v1.yaml") as url:
        yield url


@pytest.mark.prism
async def test_engage_against_prism(monkeypatch: pytest.MonkeyPatch, prism_v1: str) -> None:
    async with harness(monkeypatch, FakeStudio(), studio_url=prism_v1) as run:
        response, _ = await run.command("+16175551212 first_name=Zeke")
        assert response.status_code == 200
        (reply,) = await run.slack.wait_for_replies(1)
        assert reply["response_type"] == "in_channel", reply["text"]
        assert "FN" in reply["text"]
        assert run.studio.requests == []  # Prism answered, not the fake


async def test_a_messaging_service_sender_shows_as_one(monkeypatch: pytest.MonkeyPatch) -> None:
    mg = "MG" + "ab" * 16
    async with harness(monkeypatch, FakeStudio(), STUDIO_API="v2", STUDIO_FROM=mg) as run:
        await run.command("+16175551212")
        (card,) = await run.slack.wait_for_replies(1)
    assert f"Messaging Service {mg}" in all_text(card["blocks"])
    assert run.studio.requests[0]["form"]["From"] == mg


async def test_a_messaging_service_sender_on_v1_is_refused_before_sending(h: Harness) -> None:
    response, _ = await h.command("+16175551212 --from MG" + "ab" * 16)
    ack = response.json()
    assert ack["response_type"] == "ephemeral"
    assert "STUDIO_API=v2" in ack["text"]
    assert h.studio.requests == []


async def test_auth_test_is_asked_once_at_start_up_not_by_the_first_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Bolt would call auth.test before the first command's ack (a round trip to Slack
    on every start or deploy): the bot asks at start-up, once, and every command uses
    the answer."""
    async with harness(monkeypatch, FakeStudio()) as run:
        await run.idle()  # start-up's background work is done: no command yet
        asked_before = list(run.slack.api_calls)
        for n in range(3):
            await run.command(f"+1617555121{n}")
        await run.slack.wait_for_replies(3)
        identity = run.services.identity
        assert identity is not None
    assert asked_before == ["auth.test"]
    assert run.slack.api_calls.count("auth.test") == 1
    assert identity.asked == 1


async def test_the_first_command_is_acked_without_waiting_for_auth_test(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack(auth_latency=2.0)  # Slack slow to say who the bot is
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        response, _ = await run.command("+16175551212")
        answered_at_ack = slack.auth_answered
        assert response.status_code == 200
        assert "Starting" in response.json()["text"]
        await slack.wait_for_replies(1)
    assert answered_at_ack == 0  # acked before auth.test had answered
