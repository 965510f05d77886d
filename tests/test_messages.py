from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.models.blocks import Block, ButtonElement

from bot.domain.command import Defaults, EngageCommand
from bot.domain.errors import (
    CommandError,
    StudioAPIError,
    StudioConnectionError,
    StudioOutcomeUnknown,
    StudioServerError,
)
from bot.domain.policy import Policy
from bot.domain.run import Engagement, Snapshot
from bot.slack import messages
from bot.slack.messages.blocks import FALLBACK_TEXT_MAX, clip
from tests.budget import examples
from tests.peers import FLOW_SID, SURVEY_SID, engagement_body

COMMAND = EngageCommand(
    FLOW_SID, "onboarding", "+16175551212", "+16175550100", {"first_name": "Zeke"}
)
ENGAGEMENT = Engagement.model_validate(engagement_body())


def within_limits(message: dict[str, Any]) -> None:
    """Our own limit checks, then slack_sdk's Block Kit models validate every block."""
    assert len(message["text"]) <= FALLBACK_TEXT_MAX
    assert len(message["blocks"]) <= 50
    for raw in message["blocks"]:
        model = Block.parse(raw)
        assert model is not None, raw
        model.validate_json()  # raises SlackObjectFormationError past any Block Kit limit
        for element in raw.get("elements", []):
            if element.get("type") == "button":
                ButtonElement(**{k: v for k, v in element.items() if k != "type"}).validate_json()
    for block in message["blocks"]:
        if "text" in block:
            assert len(block["text"]["text"]) <= 3000
        for field in block.get("fields", []):
            assert len(field["text"]) <= 2000
        assert len(block.get("fields", [])) <= 10
        for element in block.get("elements", []):
            if element.get("type") == "button":
                assert len(element["text"]["text"]) <= 75
                assert len(element.get("url", "")) <= 3000
                assert len(element.get("value", "")) <= 2000


def test_engaged_shows_everything_the_channel_needs() -> None:
    message = messages.engaged(COMMAND, ENGAGEMENT, "U123")
    assert message["response_type"] == "in_channel"
    assert ENGAGEMENT.sid in message["text"]
    assert "active" in message["text"]
    assert "https://console.twilio.com/" in message["text"]
    text = json.dumps(message["blocks"])
    for expected in [
        ENGAGEMENT.sid,
        "active",
        "onboarding",
        FLOW_SID,
        "+1 617-555-1212",
        "+1 617-555-0100",
        "<@U123>",
        "first_name",
        "Zeke",
        str(ENGAGEMENT.url),
    ]:
        assert expected in text
    buttons = {b["action_id"]: b for b in message["blocks"][-2]["elements"]}
    assert set(buttons) == {"open_console", "engage_refresh", "engage_end"}
    button = buttons["open_console"]
    assert button["url"].startswith("https://console.twilio.com/")
    assert FLOW_SID in button["url"]
    assert ENGAGEMENT.sid in button["url"]
    within_limits(message)


def test_user_text_is_escaped_for_mrkdwn() -> None:
    command = EngageCommand(
        FLOW_SID,
        None,
        "+16175551212",
        "+16175550100",
        {"x": "<!channel> & <@U1>", "y": "```break```"},
    )
    text = json.dumps(messages.engaged(command, ENGAGEMENT, "U123")["blocks"])
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp; &lt;@U1&gt;" in text
    assert "```break```" not in text


@settings(max_examples=examples(100), deadline=None)
@given(
    st.dictionaries(st.text(min_size=1, max_size=300), st.text(max_size=3000), max_size=30),
    st.text(min_size=1, max_size=200),
)
def test_any_input_stays_within_block_kit_limits(params: dict[str, str], alias: str) -> None:
    command = EngageCommand(FLOW_SID, alias, "+16175551212", "whatsapp:+16175550100", params)
    within_limits(messages.engaged(command, ENGAGEMENT, "U123"))
    within_limits(messages.starting(command))
    error = StudioAPIError("m" * 5000, status=400, code=21211, more_info="https://x/" + "y" * 500)
    within_limits(messages.engage_failed(command, error))
    within_limits(messages.invalid_command(CommandError("p" * 4000, "t" * 4000)))


@pytest.mark.parametrize(
    ("error", "present", "absent"),
    [
        (
            StudioAPIError(
                "Invalid 'To' Phone Number",
                status=400,
                code=21211,
                more_info="https://www.twilio.com/docs/errors/21211",
            ),
            [
                "Could not start",
                "Twilio error 21211 (HTTP 400)",
                "https://www.twilio.com/docs/errors/21211",
            ],
            ["outcome is unknown"],
        ),
        (
            StudioServerError(
                "Studio answered HTTP 502 Bad Gateway without a Twilio error body", status=502
            ),
            ["Not sure whether", "HTTP 502", "outcome is unknown"],
            [],
        ),
        (
            StudioOutcomeUnknown("Studio did not answer in time (ReadTimeout)"),
            ["Not sure whether", "did not answer in time", "outcome is unknown"],
            ["Twilio error"],
        ),
        (
            StudioConnectionError("could not connect; nothing was sent, nothing started"),
            ["Could not start", "nothing started"],
            ["outcome is unknown"],
        ),
    ],
)
def test_failures_say_what_happened(error: Any, present: list[str], absent: list[str]) -> None:
    message = messages.engage_failed(COMMAND, error)
    assert message["response_type"] == "ephemeral"
    text = message["text"] + json.dumps(message["blocks"])
    for expected in present:
        assert expected in text
    for unexpected in absent:
        assert unexpected not in text


def test_invalid_command_names_the_token_and_the_usage() -> None:
    message = messages.invalid_command(CommandError("bad JSON: Expecting value", "a:={oops"))
    assert message["response_type"] == "ephemeral"
    text = json.dumps(message["blocks"])
    assert "a:={oops" in text
    assert "Usage" in text
    assert "Nothing was sent" in message["text"]


def test_help_lists_the_flows_and_the_sender() -> None:
    defaults = Defaults(
        {"onboarding": FLOW_SID, "survey": SURVEY_SID}, FLOW_SID, "+16175550100", "US"
    )
    text = messages.help_text(defaults)
    assert "onboarding: " + FLOW_SID + " (default)" in text
    assert "survey: " + SURVEY_SID in text
    assert "+1 617-555-0100" in text
    assert "read as US numbers" in text
    within_limits(messages.help_message(defaults))


def test_clip() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "ab…"


def test_status_stays_within_block_kit_limits_however_long_the_run() -> None:
    from bot.domain.run import Step

    steps = [
        Step(
            sid=f"FT{i:032x}",
            name="w" * 300,
            type="send-and-wait-for-reply",
            transitioned_from="x" * 200,
            transitioned_to="y" * 200,
        )
        for i in range(200)
    ]
    context = {"flow": {"data": {f"k{i}": "v" * 500 for i in range(50)}}}
    message = messages.status_message(Snapshot(FLOW_SID, ENGAGEMENT, steps, context), "onboarding")
    within_limits(message)
    text = json.dumps(message)
    assert "180 earlier steps not shown" in text


PATHS = st.from_regex(r"[a-z_]{1,40}(\.[a-z_]{1,40}){0,3}", fullmatch=True)


@settings(max_examples=examples(100), deadline=None)
@given(
    st.lists(PATHS, max_size=60),
    st.lists(PATHS, max_size=60),
    st.text(min_size=1, max_size=300),
    st.booleans(),
)
def test_flow_messages_stay_within_block_kit_limits(
    required: list[str], optional: list[str], name: str, ready: bool
) -> None:
    from bot.domain.flows import Analysis, Findings, FlowInfo, Parameters

    read = Parameters(frozenset(required), frozenset(optional) - frozenset(required))
    info = FlowInfo(SURVEY_SID, name, "draft", 3, Analysis(ready, read))
    defaults = Defaults({"survey": SURVEY_SID, "o" * 50: FLOW_SID}, FLOW_SID, "+16175550100")
    infos = {SURVEY_SID: info, FLOW_SID: None}
    within_limits(messages.flows_message(defaults, Policy(), infos))
    within_limits(messages.flow_help("survey", SURVEY_SID, info))
    found = Findings(tuple(required), tuple((p, p[::-1]) for p in optional))
    named = EngageCommand(FLOW_SID, "survey", "+16175551212", "+16175550100", {}, name)
    within_limits(messages.confirm_parameters(named, found, "token"))
    within_limits(messages.parameters_refused(named, found))
    within_limits(messages.not_rest_ready(named))
