"""Knowing the flows (issue 10), end to end: signed requests, a fake Studio that serves
definitions through the Flows API, Prism for the Flows API's contract."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from bot.studio.client import StudioClient
from tests import flow_definitions as defs
from tests.harness import buttons, harness, text_of
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, FLOW_SID, SURVEY_SID, FakeStudio, prism


def studio_with(**flows: dict[str, Any]) -> FakeStudio:
    """A fake Studio serving the flows of ``bot_env``: onboarding and survey."""
    sids = {"onboarding": FLOW_SID, "survey": SURVEY_SID}
    studio = FakeStudio()
    for alias, definition in flows.items():
        studio.flows[sids[alias]] = {
            "friendly_name": alias.title() + " flow",
            "definition": definition,
        }
    return studio


async def test_a_typo_in_a_parameter_asks_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = studio_with(survey=defs.SMS_SURVEY)
    async with harness(monkeypatch, studio) as run:
        ack = (await run.command("survey +16175551212 frist_name=Zeke"))[0].json()
        (prompt,) = await run.slack.wait_for_replies(1)
        assert studio.creates() == []
        assert prompt["response_type"] == "ephemeral"
        assert "it needs `first_name`" in prompt["text"]
        assert "did you mean `first_name`?" in prompt["text"]
        assert "survey · Survey flow" in prompt["text"]
        anyway = buttons(prompt)["engage_anyway"]
        assert anyway["confirm"]["title"]["text"] == "Start anyway?"
        replaced = await run.click("engage_anyway", anyway["value"], n=2)
        card = (await run.slack.wait_for_replies(3))[2]
    assert "Starting" in ack["text"]
    assert "Starting" in replaced["text"]
    assert card["response_type"] == "in_channel"
    (create,) = studio.creates()
    assert json.loads(create["form"]["Parameters"]) == {"frist_name": "Zeke"}


async def test_parameters_that_fit_start_at_once_and_the_card_names_the_flow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = studio_with(survey=defs.SMS_SURVEY)
    async with harness(monkeypatch, studio) as run:
        await run.idle()  # the configured flows are read at start-up
        ack = (await run.command("survey +16175551212 first_name=Zeke plan=gold"))[0].json()
        (card,) = await run.slack.wait_for_replies(1)
        await run.command("survey +16175551213 first_name=Ann")
        await run.slack.wait_for_replies(2)
    assert "survey · Survey flow" in ack["text"]  # known by then: named in the ack too
    assert card["response_type"] == "in_channel"
    assert "survey · Survey flow" in text_of(card["blocks"])
    assert len(studio.creates()) == 2
    assert studio.flow_requests.count(f"/v2/Flows/{SURVEY_SID}") == 1  # cached


@pytest.mark.parametrize(("mode", "sent"), [("refuse", 0), ("off", 1)])
async def test_flow_parameter_check_refuse_and_off(
    monkeypatch: pytest.MonkeyPatch, mode: str, sent: int
) -> None:
    studio = studio_with(survey=defs.SMS_SURVEY)
    async with harness(monkeypatch, studio, FLOW_PARAMETER_CHECK=mode) as run:
        await run.command("survey +16175551212 frist_name=Zeke")
        (reply,) = await run.slack.wait_for_replies(1)
    assert len(studio.creates()) == sent
    if mode == "refuse":
        assert "Not started" in reply["text"]
        assert "did you mean `first_name`?" in reply["text"]
        assert "engage_anyway" not in text_of(reply)


async def test_a_flow_whose_rest_trigger_is_not_connected_is_refused(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    studio = studio_with(onboarding=defs.NOT_REST_READY)
    async with harness(monkeypatch, studio) as run:
        await run.command("+16175551212 first_name=Zeke")
        (reply,) = await run.slack.wait_for_replies(1)
        again = (await run.command("+16175551212 first_name=Zeke"))[0].json()
        await run.slack.wait_for_replies(2)
    assert studio.creates() == []
    assert "REST API trigger" in reply["text"]
    assert "connect the Trigger widget's REST API transition" in reply["text"]
    assert "Starting" in again["text"]  # not a duplicate: nothing was sent
    assert '"outcome": "refused"' in caplog.text


async def test_when_the_flows_api_fails_commands_run_as_before_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    studio = FakeStudio()  # serves no flow: 404 for every one
    async with harness(monkeypatch, studio) as run:
        for i in range(3):
            await run.command(f"+1617555121{i} anything=1")
        replies = await run.slack.wait_for_replies(3)
    assert all(r["response_type"] == "in_channel" for r in replies)
    assert len(studio.creates()) == 3
    lines = [r for r in caplog.records if "flow checks are off" in r.getMessage()]
    assert len(lines) == 2  # one per configured flow, read at start-up; not one per command


async def test_flows_and_help_list_the_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = studio_with(survey=defs.SMS_SURVEY, onboarding=defs.NOT_REST_READY)
    async with harness(monkeypatch, studio) as run:
        await run.idle()
        listing = (await run.command("flows"))[0].json()
        helped = (await run.command("help survey"))[0].json()
    text = text_of(listing)
    assert "survey · Survey flow" in text
    assert "needs first_name" in text
    assert "may use plan, vip" in text
    assert "REST API trigger not connected" in text  # onboarding is marked
    assert "needs first_name" in helped["text"]
    assert "/engage survey +16175551212 first_name=…" in helped["text"]


# --- the Flows API's contract: Prism serving Twilio's v2 spec ---------------------


@pytest.fixture(scope="module")
def prism_v2() -> Iterator[str]:
    with prism("twilio_studio_v2.yaml") as url:
        yield url


@pytest.mark.prism
@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_the_flows_api_satisfies_the_v2_spec(prism_v2: str, api: str) -> None:
    """Whichever STUDIO_API runs engagements, flows are read from /v2/Flows."""
    async with StudioClient(
        base_url=prism_v2,
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        api=api,  # type: ignore[arg-type]
    ) as studio:
        flow = await studio.fetch_flow(FLOW_SID)
        flows = await studio.list_flows()
    assert flow.sid.startswith("FW")
    assert flow.revision >= 0
    assert all(f.sid.startswith("FW") for f in flows)


async def test_a_failing_flows_api_is_not_asked_by_every_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio) as run:
        await run.idle()
        for i in range(3):
            await run.command(f"+1617555121{i}")
        await run.slack.wait_for_replies(3)
    assert studio.flow_requests.count(f"/v2/Flows/{FLOW_SID}") == 1


async def test_status_and_refresh_name_the_flow_as_studio_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.harness import buttons as card_buttons

    studio = studio_with(onboarding=defs.SMS_SURVEY)
    async with harness(monkeypatch, studio) as run:
        await run.idle()
        card = await run.start("+16175551212 first_name=Zeke")
        refreshed = await run.click("engage_refresh", card_buttons(card)["engage_refresh"]["value"])
        await run.command(f"status {card_buttons(card)['engage_refresh']['value'].split(':')[1]}")
        status = (await run.slack.wait_for_replies(3))[2]
    assert "onboarding · Onboarding flow" in text_of(refreshed["blocks"])
    assert "onboarding · Onboarding flow" in status["text"]
