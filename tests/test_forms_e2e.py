"""The form, the shortcuts and the Home tab (issue 13), end to end through signed HTTP:
every view validated by slack_sdk's models, views.open within Slack's 3 s."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.models.views import View

from bot.slack.forms import numbers_in
from tests import flow_definitions as defs
from tests.harness import Harness, harness
from tests.peers import FLOW_SID, SURVEY_SID, FakeStudio


def valid(view: dict[str, Any]) -> dict[str, Any]:
    View(**view).validate_json()  # raises past any Block Kit limit
    return view


def studio_with_flows() -> FakeStudio:
    studio = FakeStudio()
    studio.flows[FLOW_SID] = {"friendly_name": "Onboarding", "definition": defs.SMS_SURVEY}
    studio.flows[SURVEY_SID] = {"friendly_name": "Survey", "definition": defs.READS_EVERYTHING}
    return studio


async def interact(run: Harness, payload: dict[str, Any]) -> Any:
    payload = {"team": {"id": "T0001"}, "user": {"id": "U0CALLER"}, **payload}
    response, elapsed = await run.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code == 200
    return response, elapsed


def submission(values: dict[str, Any], run: Harness) -> dict[str, Any]:
    return {
        "type": "view_submission",
        "view": {"type": "modal", "callback_id": "engage_form", "state": {"values": values}},
        "response_urls": [
            {"response_url": f"{run.slack_url}/respond/1", "channel_id": "C0CHANNEL"}
        ],
    }


def text(action: str, value: str) -> dict[str, Any]:
    return {action: {"type": "plain_text_input", "value": value}}


def flow(sid: str) -> dict[str, Any]:
    return {"form_flow": {"type": "static_select", "selected_option": {"value": sid}}}


@pytest.fixture
async def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with harness(monkeypatch, studio_with_flows()) as running:
        await running.idle()  # the flows are read at start-up
        yield running


async def test_engage_with_no_text_opens_the_form_with_the_flows_parameters(run: Harness) -> None:
    response, elapsed = await run.command("")
    assert response.status_code == 200
    (opened,) = await run.slack.wait_for_views(1)
    assert opened["method"] == "views.open"
    assert opened["trigger_id"] == "1.2.3"
    view = valid(opened["view"])
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert "onboarding · Onboarding" in json.dumps(blocks["flow"], ensure_ascii=False)
    assert blocks["p:first_name"]["optional"] is False  # required
    assert blocks["p:plan"]["optional"] is True
    assert "channel" in blocks
    assert elapsed < 3


async def test_help_keeps_the_help(run: Harness) -> None:
    ack = (await run.command("help"))[0].json()
    assert "Usage:" in ack["text"]
    assert run.slack.views == []


async def test_the_form_opens_within_3_s_even_with_a_slow_studio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = studio_with_flows()
    studio.latency = 5.0  # only the creates are slow in the fake; flows are not read yet
    async with harness(monkeypatch, studio) as run:
        started = time.monotonic()
        await interact(run, {"type": "shortcut", "callback_id": "start_flow", "trigger_id": "9.9"})
        await run.slack.wait_for_views(1)
        assert run.slack.views[0]["trigger_id"] == "9.9"
        assert time.monotonic() - started < 3
        valid(run.slack.views[0]["view"])


async def test_choosing_a_flow_redraws_the_form(run: Harness) -> None:
    await interact(
        run,
        {
            "type": "block_actions",
            "view": {"type": "modal", "id": "V1", "hash": "h1", "state": {"values": {}}},
            "actions": [{"action_id": "form_flow", "selected_option": {"value": SURVEY_SID}}],
        },
    )
    await run.idle()
    (update,) = [v for v in run.slack.views if v["method"] == "views.update"]
    view = valid(update["view"])
    blocks = {b.get("block_id") for b in view["blocks"]}
    assert "more" in blocks  # the survey flow reads flow.data whole: free parameters
    assert "p:first_name" in blocks


async def test_submitting_runs_what_the_command_would(run: Harness) -> None:
    values = {
        "flow": flow(FLOW_SID),
        "contact": text("contact", "+1 617 555 1212"),
        "p:first_name": text("value", "Zeke"),
        "p:plan": text("value", ""),
    }
    response, _ = await interact(run, submission(values, run))
    assert response.text in ("", "null")
    (card,) = (await run.slack.wait_for_replies(2))[1:]
    assert card["response_type"] == "in_channel"
    (create,) = run.studio.creates()
    assert create["form"]["To"] == "+16175551212"
    assert json.loads(create["form"]["Parameters"]) == {"first_name": "Zeke"}


@pytest.mark.parametrize(
    ("values", "block", "problem"),
    [
        (
            {"contact": text("contact", "12"), "p:first_name": text("value", "Z")},
            "contact",
            "country code",
        ),
        (
            {"contact": text("contact", "+19005551234"), "p:first_name": text("value", "Z")},
            "contact",
            "premium-rate",
        ),
        (
            {"contact": text("contact", "+16175551212"), "more": text("value", "nonsense")},
            "more",
            "key=value",
        ),
    ],
)
async def test_bad_input_and_refusals_come_back_on_their_field(
    run: Harness, values: dict[str, Any], block: str, problem: str
) -> None:
    values = {"flow": flow(FLOW_SID), **values}
    response, _ = await interact(run, submission(values, run))
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert problem in answer["errors"][block]
    await run.idle()
    assert run.studio.creates() == []


async def test_the_message_shortcut_fills_in_the_contact_or_opens_the_bulk_preview(
    run: Harness,
) -> None:
    one = {
        "type": "message_action",
        "callback_id": "engage_contact",
        "trigger_id": "7.7",
        "channel": {"id": "C0CHANNEL"},
        "response_url": f"{run.slack_url}/respond/1",
        "message": {"text": "Please call Zeke back on +1 (617) 555-1212 today"},
    }
    await interact(run, one)
    await run.slack.wait_for_views(1)
    blocks = {b.get("block_id"): b for b in valid(run.slack.views[0]["view"])["blocks"]}
    assert blocks["contact"]["element"]["initial_value"] == "+16175551212"
    several = {**one, "message": {"text": "+16175551212 and +16175551213 asked"}}
    await interact(run, several)
    preview = (await run.slack.wait_for_replies(2))[-1]
    assert "2 valid" in preview["text"]


async def open_home(run: Harness, user: str = "U0CALLER") -> None:
    """The ``app_home_opened`` event, signed, as Slack sends it."""
    from tests.peers import signed_headers

    event = {
        "type": "event_callback",
        "team_id": "T0001",
        "api_app_id": "A0APP",
        "event": {"type": "app_home_opened", "user": user, "tab": "home"},
        "event_id": "Ev1",
        "event_time": int(time.time()),
    }
    body = json.dumps(event)
    response, _ = await run.post(body, signed_headers(body) | {"Content-Type": "application/json"})
    assert response.status_code == 200


async def test_the_home_tab_lists_recent_runs_and_the_flows(run: Harness) -> None:
    await open_home(run)
    await run.idle()  # the Home tab is drawn (after the ack) before the person types
    await run.command("+16175551212 first_name=Zeke")
    await run.slack.wait_for_replies(1)
    await run.idle()
    homes = [v for v in run.slack.views if v["method"] == "views.publish"]
    assert len(homes) == 2  # when opened, and after the start
    last = valid(homes[-1]["view"])
    shown = json.dumps(last, ensure_ascii=False)
    assert "+1 617-555-1212" in shown
    assert "onboarding · Onboarding" in shown
    assert "needs first_name" in shown


async def test_a_start_redraws_only_a_home_tab_opened_lately(run: Harness) -> None:
    """No Slack call per start for people who never look at the Home tab; their runs
    are there when they do."""
    await run.command("+16175551212 first_name=Zeke")
    await run.slack.wait_for_replies(1)
    await run.idle()
    assert [v for v in run.slack.views if v["method"] == "views.publish"] == []
    await open_home(run)
    await run.idle()
    (home,) = [v for v in run.slack.views if v["method"] == "views.publish"]
    assert "+1 617-555-1212" in json.dumps(home["view"], ensure_ascii=False)


def test_numbers_in_messages() -> None:
    assert numbers_in("call +1 617 555 1212 or +44 7911 123456", None) == [
        "+16175551212",
        "+447911123456",
    ]
    assert numbers_in("617-555-1212", "US") == ["+16175551212"]
    assert numbers_in("no numbers here, 12 apples", "US") == []


async def test_the_home_tab_has_the_cards_buttons(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, studio_with_flows(), STUDIO_API="v2") as run:
        await run.idle()
        await open_home(run)
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        home_view = [v for v in run.slack.views if v["method"] == "views.publish"][-1]["view"]
        controls = {
            e["action_id"]: e
            for b in home_view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if "value" in e
        }
        value = controls["home_end"]["value"]
        home = {"type": "home", "id": "VHOME"}
        base = {"type": "block_actions", "view": home, "container": {"type": "view"}}

        await interact(run, {**base, "actions": [{"action_id": "home_refresh", "value": value}]})
        await run.idle()
        await interact(
            run,
            {
                **base,
                "user": {"id": "U0OTHER"},
                "actions": [{"action_id": "home_end", "value": value}],
            },
        )
        await run.idle()
        refused = [v for v in run.slack.views if v["method"] == "views.publish"][-1]
        assert "U0CALLER&gt;, who started it" in json.dumps(refused["view"])
        assert run.studio.runs["FN" + "d" * 32]["status"] == "active"

        await interact(run, {**base, "actions": [{"action_id": "home_end", "value": value}]})
        await run.idle()
    last = [v for v in run.slack.views if v["method"] == "views.publish"][-1]
    valid(last["view"])
    assert "was ended" in json.dumps(last["view"])
    assert "ended" in json.dumps(last["view"])
    assert run.studio.runs["FN" + "d" * 32]["status"] == "ended"


async def test_a_second_submission_asks_as_the_command_would(run: Harness) -> None:
    values = {
        "flow": flow(FLOW_SID),
        "contact": text("contact", "+16175551212"),
        "p:first_name": text("value", "Zeke"),
    }
    await interact(run, submission(values, run))
    await run.slack.wait_for_replies(2)  # "Starting…" and the card
    response, _ = await interact(run, submission(values, run))
    assert response.text in ("", "null")  # the modal closes: a question, not an error
    prompt = (await run.slack.wait_for_replies(3))[2]
    assert "Start it again?" in prompt["text"]
    assert len(run.studio.creates()) == 1


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"p:$weird key!": text("value", "x")}, "bad key"),
        ({"p:a..b": text("value", "x")}, "empty key"),
        ({"more": text("value", "$weird key!=x")}, "bad key"),
        ({"more": text("value", "first_name=again")}, "conflicting keys"),
        ({"more": text("value", "n:=NaN")}, "bad json"),
    ],
)
async def test_a_tampered_submission_meets_the_commands_key_rules(
    run: Harness, values: dict[str, Any], problem: str
) -> None:
    values = {
        "flow": flow(FLOW_SID),
        "contact": text("contact", "+16175551212"),
        "p:first_name": text("value", "Zeke"),
        **values,
    }
    response, _ = await interact(run, submission(values, run))
    answer = response.json()
    assert answer["response_action"] == "errors"
    assert problem in answer["errors"]["more"].lower()
    await run.idle()
    assert run.studio.creates() == []


async def test_the_forms_dotted_keys_reach_studio_as_the_commands_do(run: Harness) -> None:
    values = {  # the survey flow reads anything: no parameter is questioned
        "flow": flow(SURVEY_SID),
        "contact": text("contact", "+16175551212"),
        "more": text("value", "first_name=Zeke\nflow.data=x\ncustomer.tier=gold\nscore:=3"),
    }
    await interact(run, submission(values, run))
    await run.slack.wait_for_replies(2)
    (create,) = run.studio.creates()
    assert json.loads(create["form"]["Parameters"]) == {
        "first_name": "Zeke",
        "flow": {"data": "x"},
        "customer": {"tier": "gold"},
        "score": 3,
    }


async def test_with_allowed_channels_the_home_tab_and_the_form_still_work_where_allowed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"STUDIO_API": "v2", "ALLOWED_SLACK_CHANNELS": "C0CHANNEL"}
    async with harness(monkeypatch, studio_with_flows(), **env) as run:
        await run.idle()
        # The form from the Home tab (no channel yet) lists the flows; the channel is
        # chosen in it and checked on submission.
        await interact(run, {"type": "shortcut", "callback_id": "start_flow", "trigger_id": "9"})
        opened = (await run.slack.wait_for_views(1))[-1]["view"]
        assert "onboarding · Onboarding" in json.dumps(opened, ensure_ascii=False)
        values = {
            "flow": flow(FLOW_SID),
            "contact": text("contact", "+16175551212"),
            "p:first_name": text("value", "Zeke"),
        }
        elsewhere = submission(values, run)
        elsewhere["response_urls"][0]["channel_id"] = "C0OTHER"
        answer = (await interact(run, elsewhere))[0].json()
        assert "cannot be used from this channel" in answer["errors"]["contact"]
        await interact(run, submission(values, run))
        await run.slack.wait_for_replies(2)
        await open_home(run)
        await run.idle()
        home_view = [v for v in run.slack.views if v["method"] == "views.publish"][-1]["view"]
        value = next(
            e["value"]
            for b in home_view["blocks"]
            if b["type"] == "actions"
            for e in b["elements"]
            if e.get("action_id") == "home_end"
        )
        home = {"type": "home", "id": "VHOME"}
        base = {"type": "block_actions", "view": home, "container": {"type": "view"}}
        # Refresh and End from the Home tab: judged by the card's channel, C0CHANNEL.
        await interact(run, {**base, "actions": [{"action_id": "home_refresh", "value": value}]})
        await run.idle()
        refreshed = [v for v in run.slack.views if v["method"] == "views.publish"][-1]
        assert "cannot be used from this channel" not in json.dumps(refreshed["view"])
        await interact(run, {**base, "actions": [{"action_id": "home_end", "value": value}]})
        await run.idle()
    assert run.studio.runs["FN" + "d" * 32]["status"] == "ended"


async def test_an_upper_case_flow_sid_in_a_button_does_not_bypass_a_flows_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"STUDIO_FLOWS": f"onboarding={FLOW_SID};users=U0CALLER,survey={SURVEY_SID}"}
    async with harness(monkeypatch, studio_with_flows(), **env) as run:
        await run.idle()
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)  # the card
        forged = f"FW{FLOW_SID[2:].upper()}:{'FN' + 'D' * 32}:U0CALLER"
        await run.click("engage_refresh", forged, user="U0OTHER", n=2)
        await run.idle()
    (said,) = run.slack.replies[1:]
    assert "not allowed to use this flow" in said["text"]
    assert [
        r for r in run.studio.requests if r["method"] == "GET" and "/Engagements/" in r["path"]
    ] == []


async def test_every_interaction_is_acked_within_3_s_while_the_flows_api_takes_5(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Listeners ack first: Studio describing a flow slowly, or Slack's views, never hold
    the HTTP answer Slack is waiting for."""
    studio = studio_with_flows()
    studio.flow_latency = 5.0
    async with harness(monkeypatch, studio) as run:
        elapsed = {}
        response, elapsed["/engage (the form)"] = await run.command("")
        assert response.status_code == 200
        _, elapsed["global shortcut"] = await interact(
            run, {"type": "shortcut", "callback_id": "start_flow", "trigger_id": "9.9"}
        )
        home = {"type": "home", "id": "VHOME"}
        _, elapsed["Home tab's button"] = await interact(
            run,
            {
                "type": "block_actions",
                "view": home,
                "container": {"type": "view"},
                "trigger_id": "8.8",
                "actions": [{"action_id": "open_form", "value": "open"}],
            },
        )
        _, elapsed["choosing a flow"] = await interact(
            run,
            {
                "type": "block_actions",
                "view": {"id": "V1", "hash": "h1", "state": {"values": {}}},
                "container": {"type": "view"},
                "actions": [{"action_id": "form_flow", "selected_option": {"value": SURVEY_SID}}],
            },
        )
        _, elapsed["the contact shortcut"] = await interact(
            run,
            {
                "type": "message_action",
                "callback_id": "engage_contact",
                "trigger_id": "7.7",
                "channel": {"id": "C0CHANNEL"},
                "response_url": f"{run.slack_url}/respond/5",
                "message": {"text": "call +1 617 555 1212 and +1 617 555 1213"},
            },
        )
        values = {
            "flow": flow(FLOW_SID),
            "contact": text("contact", "+16175551212"),
            "p:first_name": text("value", "Zeke"),
        }
        _, elapsed["submitting"] = await interact(run, submission(values, run))
        started = time.monotonic()
        await open_home(run)
        elapsed["opening the Home tab"] = time.monotonic() - started
        await run.idle()
    slow = {what: round(seconds, 2) for what, seconds in elapsed.items() if seconds >= 3}
    assert slow == {}
    opened = [v for v in run.slack.views if v["method"] == "views.open"]
    assert len(opened) == 3  # the form was still opened each time
    assert any(v["method"] == "views.update" for v in run.slack.views)


async def test_the_form_says_why_when_there_is_no_flow_to_offer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slack refuses a select with no options: the form would open to nothing (issue 32,
    20). Someone not allowed sees why instead, and the Home tab offers no button."""
    env = {"ALLOWED_SLACK_USERS": "U0BOSS"}
    async with harness(monkeypatch, studio_with_flows(), **env) as run:
        await interact(run, {"type": "shortcut", "callback_id": "start_flow", "trigger_id": "9.9"})
        (opened,) = await run.slack.wait_for_views(1)
        await open_home(run)
        await run.idle()
    view = valid(opened["view"])
    said = json.dumps(view)
    assert "static_select" not in said
    assert "submit" not in view
    assert "not allowed to use this flow (ALLOWED_SLACK_USERS)" in said
    (home,) = [v for v in run.slack.views if v["method"] == "views.publish"]
    assert "open_form" not in json.dumps(home["view"])


def test_past_100_flows_the_form_keeps_the_chosen_one_and_counts_the_rest() -> None:
    from bot.slack.messages.views import FlowChoice, form

    flows = [FlowChoice("FW" + f"{i:032x}", f"flow{i}", None) for i in range(130)]
    view = valid(form(flows, flows[120]))
    (select,) = [b["element"] for b in view["blocks"] if b.get("block_id") == "flow"]
    assert len(select["options"]) == 100
    assert select["initial_option"] in select["options"]
    assert "…and 30 more flows are not listed" in json.dumps(view, ensure_ascii=False)
