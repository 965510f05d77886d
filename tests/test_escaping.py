"""Text from outside reaches Slack escaped (issue 32, 2): a contact's answer, Studio's
flow and widget names, Twilio's error messages, CSV cells. Whatever they hold, a message
the bot builds carries no ``<!channel>``, ``<@…>``, ``<#…>`` or ``<http…|…>`` made of
them: the only ``<…>`` left are the bot's own (the starter's mention, the channel, a
date)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.bulk_plan import Ends, Progress
from bot.domain.command import EngageCommand
from bot.domain.errors import StudioError
from bot.domain.run import Step
from bot.domain.schedule import Scheduled
from bot.domain.summary import Summary
from bot.slack import messages
from bot.slack.messages.blocks import escape
from bot.slack.messages.bulk import bulk_progress, undelivered_note
from bot.slack.messages.cards import RunCard, run_card
from bot.slack.messages.report import report_message
from bot.slack.messages.schedules import fire_problem
from tests.budget import examples

STARTER, CHANNEL = "U0STARTER", "C0CHANNEL"
FLOW = "FW" + "0" * 32
HOSTILE = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0BOSS>",
    "<#C0SECRET>",
    "<https://evil.example/login|Verify your Slack account>",
    "<mailto:a@b.c|x>",
    "&lt;!channel&gt;",
    "&",
]
outside = st.lists(
    st.one_of(st.sampled_from(HOSTILE), st.text(alphabet="<>&!@#|:/ hU0`*_~", max_size=12)),
    min_size=1,
    max_size=5,
).map("".join)
THE_BOTS_OWN = re.compile(rf"<@{STARTER}>|<#{CHANNEL}>|<!date\^\d+\^[^|<>]*\|[^<>]*>")


def strings(message: Any) -> list[str]:
    """Every string in a message (text, blocks, fields, buttons)."""
    if isinstance(message, str):
        return [message]
    if isinstance(message, dict):
        return [s for value in message.values() for s in strings(value)]
    if isinstance(message, list):
        return [s for value in message for s in strings(value)]
    return []


def assert_no_markup_from_outside(message: Any) -> None:
    for text in strings(message):
        left = THE_BOTS_OWN.sub("", text)
        assert "<" not in left, text
        assert ">" not in left, text


@given(outside)
def test_escape_leaves_no_angle_brackets(text: str) -> None:
    escaped = escape(text)
    assert "<" not in escaped
    assert ">" not in escaped
    assert escaped.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&") == text


def test_the_finding_a_contacts_reply_does_not_ping_the_channel() -> None:
    reply = "<!channel> <!here> <https://evil.example/login|Verify your Slack account>"
    note = messages.end_note(STARTER, "survey", "FN1", "ended at `ask`", {"reply": reply})
    assert "<!channel>" not in json.dumps(note)
    assert "&lt;!channel&gt;" in note["text"]
    assert note["text"].startswith(f"<@{STARTER}>")  # the starter is still mentioned


@settings(max_examples=examples(200))
@given(outside, outside, outside, outside)
def test_notes_and_cards(flow: str, widget: str, answer: str, field: str) -> None:
    assert_no_markup_from_outside(messages.end_note(STARTER, flow, "FN1", widget, {field: answer}))
    assert_no_markup_from_outside(messages.card_stuck_note(STARTER, "FN1", widget, CHANNEL))
    step = Step(sid="FT1", name=widget, type=widget, transitioned_from=field)
    card = RunCard(
        sid="FN1",
        status=answer,
        flow_sid=FLOW,
        flow_alias="survey",
        contact="+16175551212",
        sender="+16175550100",
        starter=STARTER,
        parameters={field: answer},
        url="https://studio.twilio.com/v2/Flows/x",
        latest_step=step,
        updated=datetime(2026, 12, 3, tzinfo=UTC),
        flow_name=flow,
        widget=widget,
        outcome=answer,
    )
    assert_no_markup_from_outside(run_card(card))


@settings(max_examples=examples(200))
@given(outside, outside, outside)
def test_reports_bulk_runs_failures_and_schedules(flow: str, widget: str, answer: str) -> None:
    summary = Summary(
        total=3,
        by_state=(("ended", 2), (widget, 1)),
        funnel=((widget, 2),),
        answers=((widget, ((answer, 2),)),),
        failures=((answer, 1),),
        answered=2,
    )
    assert_no_markup_from_outside(report_message(summary, flow, 86400))
    progress = Progress(
        run_id="r1",
        flow=flow,
        starter=STARTER,
        total=10,
        started=3,
        ends=Ends(ended=((widget, 2),), failed=1),
    )
    assert_no_markup_from_outside(bulk_progress(progress))
    assert_no_markup_from_outside(undelivered_note(progress, CHANNEL, ["the results file"], 30))
    command = EngageCommand(FLOW, "survey", "+16175551212", "+16175550100", {}, flow_name=flow)
    error = StudioError(answer, status=400, code=21211, more_info="https://www.twilio.com/docs")
    assert_no_markup_from_outside(messages.engage_failed(command, error))
    item = Scheduled(
        id="s1",
        flow_sid=FLOW,
        flow_alias="survey",
        flow_name=flow,
        to="+16175551212",
        sender="+16175550100",
        user=STARTER,
        channel=CHANNEL,
        due=1.8e9,
        state="failed",
    )
    assert_no_markup_from_outside(fire_problem(item, answer))
