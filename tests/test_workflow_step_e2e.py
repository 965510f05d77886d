"""Workflow Builder's *Start a Studio flow* step (issue 26): ``function_executed``
envelopes over signed HTTP and over Socket Mode, against the fake Web API recording
``functions.completeSuccess``/``completeError`` with their outputs; the guardrails as
refusals; waiting for the end, across a restart on a real Redis; the manifest and the
code agreeing."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.runs import tracker as tracker_module
from bot.slack.workflow_step import CALLBACK_ID, DEFINITION
from tests import flow_definitions as defs
from tests.harness import Harness, wired
from tests.peers import (
    APP_TOKEN,
    FLOW_SID,
    STEP_TOKEN,
    FakeSlack,
    FakeStudio,
    RedisServer,
    bot_env,
    serve,
    signed_headers,
)
from tests.test_bulk_e2e import until
from tests.test_follow_e2e import quick
from tests.test_records_e2e import end, quick_records
from tests.test_server_process import running_bot, sigterm

__all__ = ["quick", "quick_records"]  # following's and records' faster clocks (fixtures)

REPO = Path(__file__).resolve().parent.parent
BOSTON = "+16175551212"


def function_event(
    inputs: dict[str, Any], *, execution: str = "Fx1", workflow: str = "Wx1"
) -> dict[str, Any]:
    """The Events API envelope Slack sends when a workflow runs the step."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T0001",
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": f"Ev{execution}",
        "event_time": int(time.time()),
        "event": {
            "type": "function_executed",
            "function": {
                "id": "Fn0STEP",
                "callback_id": CALLBACK_ID,
                "title": DEFINITION["title"],
                "type": "app",
                "app_id": "A0APP",
                "date_created": 1764000000,
                "date_updated": 1764000000,
                "date_deleted": 0,
            },
            "inputs": inputs,
            "function_execution_id": execution,
            "workflow_execution_id": workflow,
            "event_ts": f"{time.time():.6f}",
            "bot_access_token": STEP_TOKEN,
        },
        "authorizations": [
            {"team_id": "T0001", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
    }


async def run_step(run: Harness, inputs: dict[str, Any], execution: str = "Fx1") -> float:
    """Post the event, signed as Slack signs it; the seconds until Slack had its 200."""
    body = json.dumps(function_event(inputs, execution=execution))
    response, elapsed = await run.post(
        body, signed_headers(body) | {"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    return elapsed


def survey_studio() -> FakeStudio:
    studio = FakeStudio()
    studio.flows[FLOW_SID] = {"friendly_name": "Customer survey", "definition": defs.SMS_SURVEY}
    return studio


# --- the declaration ------------------------------------------------------------------


def test_the_manifest_declares_the_step_as_the_code_does() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text())
    assert manifest["functions"][CALLBACK_ID] == DEFINITION
    settings = manifest["settings"]
    assert settings["org_deploy_enabled"] is True
    assert settings["function_runtime"] == "remote"
    assert "function_executed" in settings["event_subscriptions"]["bot_events"]


# --- starting -----------------------------------------------------------------------------


async def test_the_step_starts_the_flow_and_completes_with_its_outputs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    studio, slack = survey_studio(), FakeSlack()
    async with wired(monkeypatch, studio, slack) as run:
        await run.idle()  # the flows are read at start-up
        inputs = {
            "flow": "customer survey",  # its name in Studio, any case
            "contact": "+1 (617) 555-1212",
            "parameters": "first_name=Zeke\nplan=gold\nvip:=true",
            "interactivity": {"interactor": {"id": "U0CALLER"}, "interactivity_pointer": "1.2"},
        }
        elapsed = await run_step(run, inputs)
        (done,) = await slack.wait_for_completions(1)
    assert elapsed < 3
    assert done["method"] == "functions.completeSuccess"
    assert done["execution"] == "Fx1"
    assert done["token"] == STEP_TOKEN  # the step's own token, not the bot's
    (create,) = studio.creates()
    assert create["form"]["To"] == BOSTON
    assert json.loads(create["form"]["Parameters"]) == {
        "first_name": "Zeke",
        "plan": "gold",
        "vip": True,
    }
    outputs = done["outputs"]
    assert outputs["run_sid"].startswith("FN")
    assert outputs["status"] == "active"
    assert outputs["run_sid"] in outputs["console_link"]
    audited = [json.loads(r.message) for r in caplog.records if r.name == "bot.audit"]
    (started,) = [a for a in audited if a["outcome"] == "started"]
    assert started["user"] == "U0CALLER"
    assert started["via"] == "workflow Wx1"


async def test_json_parameters_an_alias_a_sender_and_on_behalf_of_the_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack) as run:
        inputs = {
            "flow": "survey",
            "contact": BOSTON,
            "parameters": '{"first_name": "Zeke", "count": 3}',
            "sender": "+16175550199",
            "on_behalf_of": "U0CALLER",  # the person who ran it, as it must be
            "interactivity": {"interactor": {"id": "U0CALLER"}},
        }
        await run_step(run, inputs)
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeSuccess"
    (create,) = studio.creates()
    assert "/Flows/FW" + "c" * 32 in create["path"]
    assert create["form"]["From"] == "+16175550199"
    assert json.loads(create["form"]["Parameters"]) == {"first_name": "Zeke", "count": 3}


@pytest.mark.parametrize(
    ("env", "inputs", "says"),
    [
        (
            {"ALLOWED_SLACK_USERS": "U0ADMIN"},
            {"on_behalf_of": None, "interactivity": {"interactor": {"id": "U0CALLER"}}},
            "you are not allowed to use this flow (ALLOWED_SLACK_USERS)",
        ),
        ({}, {"on_behalf_of": "", "interactivity": None}, "Who ran it: nobody ran this workflow"),
        ({"ALLOWED_SLACK_CHANNELS": "C0OPS"}, {}, "Channel: channels are restricted here"),
        (
            {"ALLOWED_SLACK_CHANNELS": "C0OPS"},
            {"channel": "C0OTHER"},
            "cannot be used from this channel",
        ),
        ({"ALLOWED_COUNTRIES": "GB"}, {}, "numbers in US are not allowed here"),
        ({}, {"contact": "555-1212"}, "Contact:"),
        ({}, {"flow": "nonesuch"}, "Flow: unknown flow 'nonesuch'"),
        ({}, {"parameters": "first_name"}, "Parameters: write one key=value a line"),
        ({}, {"parameters": '{"a": NaN}'}, "Parameters: bad JSON"),
        (
            {},
            {"sender": "MG" + "0" * 32},
            "Send from: a Messaging Service (MG…) sender needs STUDIO_API=v2",
        ),
        ({"QUIET_HOURS": "00:00-23:59"}, {}, "it is quiet hours for the contact (QUIET_HOURS)"),
        ({"USER_RATE_LIMIT": "0/minute"}, {}, "USER_RATE_LIMIT"),
    ],
)
async def test_a_refusal_fails_the_step_saying_what_to_fix_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], inputs: dict[str, Any], says: str
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    given = {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER", **inputs}
    async with wired(monkeypatch, studio, slack, env=env) as run:
        await run_step(run, {k: v for k, v in given.items() if v is not None})
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeError"
    assert says.casefold() in done["error"].casefold(), done["error"]
    assert studio.creates() == []


async def test_a_parameter_finding_fails_the_step_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nobody can click *Start anyway* in a workflow: the finding fails the step."""
    studio, slack = survey_studio(), FakeSlack()
    async with wired(monkeypatch, studio, slack) as run:
        await run.idle()
        await run_step(run, {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"})
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeError"
    assert "first_name" in done["error"]
    assert studio.creates() == []


async def test_the_duplicate_window_holds_for_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    inputs = {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"}
    async with wired(monkeypatch, studio, slack) as run:
        await run_step(run, inputs, "Fx1")
        await slack.wait_for_completions(1)
        await run_step(run, inputs, "Fx2")
        first, second = await slack.wait_for_completions(2)
    assert first["method"] == "functions.completeSuccess"
    assert second["method"] == "functions.completeError"
    assert "DUPLICATE_WINDOW_SECONDS" in second["error"]
    assert len(studio.creates()) == 1


async def test_an_execution_delivered_twice_starts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slack retries an event it is unsure arrived: the same execution starts once."""
    studio, slack = FakeStudio(), FakeSlack()
    inputs = {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"}
    async with wired(monkeypatch, studio, slack) as run:
        await run_step(run, inputs, "Fx7")
        await run_step(run, inputs, "Fx7")
        await slack.wait_for_completions(1)
        await run.idle()
    assert len(studio.creates()) == 1
    (done,) = slack.completions
    assert done["method"] == "functions.completeSuccess"


async def test_an_outcome_unknown_fails_with_the_console_link_and_is_never_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio(
        answers=[(500, {"code": 20500, "message": "Internal error", "status": 500})]
    )
    slack = FakeSlack()
    async with wired(monkeypatch, studio, slack) as run:
        await run_step(run, {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"})
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeError"
    assert "It may have started" in done["error"]
    assert "console.twilio.com" in done["error"]
    assert len(studio.creates()) == 1  # sent once, never again


# --- waiting for the end ----------------------------------------------------------------

FAST = {"STUDIO_READ_RATE_LIMIT": "1000000/second"}


async def test_waiting_for_the_end_completes_with_the_final_status_and_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = survey_studio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=FAST) as run:
        await run.idle()
        inputs = {
            "flow": "onboarding",
            "contact": BOSTON,
            "parameters": "first_name=Zeke",
            "on_behalf_of": "U0CALLER",
            "wait_for_end": True,
        }
        await run_step(run, inputs)
        await until(lambda: len(studio.creates()) == 1)
        await run.idle()
        assert slack.completions == []  # still waiting
        (sid,) = studio.runs
        end(studio, sid, "5")
        outcomes = run.services.tracker
        assert outcomes is not None
        await outcomes.sweep()
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeSuccess"
    outputs = done["outputs"]
    assert outputs["run_sid"] == sid
    assert outputs["final_status"] == "ended"
    assert outputs["end_widget"] == "thanks"
    assert json.loads(outputs["answers"]) == {"start": "5"}


async def test_a_step_token_revoked_during_the_wait_is_told_to_its_person(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 32, 10: Slack documents no lifetime for the step token; when completing the
    step is refused, the workflow shows it running for ever. The person it acted for is
    told in a DM, and the audit keeps it."""
    caplog.set_level(logging.INFO, logger="bot.audit")
    studio, slack = survey_studio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=FAST) as run:
        await run.idle()
        inputs = {
            "flow": "onboarding",
            "contact": BOSTON,
            "parameters": "first_name=Zeke",
            "interactivity": {"interactor": {"id": "U0CALLER"}},
            "wait_for_end": True,
        }
        await run_step(run, inputs)
        await until(lambda: len(studio.creates()) == 1)
        await run.idle()
        slack.revoked_step_tokens = True  # hours later, the token is gone
        (sid,) = studio.runs
        end(studio, sid, "5")
        outcomes = run.services.tracker
        assert outcomes is not None
        await outcomes.sweep()
        await until(lambda: [p for p in slack.posts if p.get("channel") == "DU0CALLER"])
    (told,) = [p for p in slack.posts if p.get("channel") == "DU0CALLER"]
    assert "could not be completed" in told["text"]
    assert "token_revoked" in told["text"]
    assert sid in told["text"]  # the run's Console link
    audited = [json.loads(r.message) for r in caplog.records if r.name == "bot.audit"]
    (incomplete,) = [a for a in audited if a["outcome"] == "step_incomplete"]
    assert incomplete["user"] == "U0CALLER"


async def test_a_waiting_step_fails_when_following_stops_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    env = {**FAST, "BULK_FOLLOW_HOURS": "0"}  # following stops at once
    async with wired(monkeypatch, studio, slack, env=env) as run:
        inputs = {
            "flow": "onboarding",
            "contact": BOSTON,
            "on_behalf_of": "U0CALLER",
            "wait_for_end": True,
        }
        await run_step(run, inputs)
        await until(lambda: len(studio.creates()) == 1)
        await run.idle()
        outcomes = run.services.tracker
        assert outcomes is not None
        await outcomes.sweep()
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeError"
    assert "following stopped before the run ended (BULK_FOLLOW_HOURS=0)" in done["error"]


async def test_a_waiting_step_survives_a_restart_and_completes_once(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 0.1)  # the second process sweeps
    studio, slack = survey_studio(), FakeSlack()
    env = {**FAST, "REDIS_URL": redis.url.replace("/0", "/11")}
    inputs = {
        "flow": "onboarding",
        "contact": BOSTON,
        "parameters": "first_name=Zeke",
        "on_behalf_of": "U0CALLER",
        "wait_for_end": True,
    }
    async with wired(monkeypatch, studio, slack, env=env) as first:
        await run_step(first, inputs)
        await until(lambda: len(studio.creates()) == 1)
        await first.idle()
        await first.services.drain(1)
    assert slack.completions == []
    (sid,) = studio.runs
    end(studio, sid, "4")
    async with (
        wired(monkeypatch, studio, slack, env=env),
        wired(monkeypatch, studio, slack, env=env),
    ):
        await slack.wait_for_completions(1, within=15)
        await asyncio.sleep(1.0)  # both processes sweep several more rounds
    (done,) = slack.completions  # completed once
    assert done["method"] == "functions.completeSuccess"
    assert done["outputs"]["final_status"] == "ended"
    assert json.loads(done["outputs"]["answers"]) == {"start": "4"}


# --- over Socket Mode ------------------------------------------------------------------------


async def test_the_step_over_socket_mode() -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        env = bot_env(studio_url, slack_url, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="")
        async with running_bot(env) as proc:
            inputs = {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"}
            await slack.envelopes.put(
                {
                    "envelope_id": "env-step",
                    "type": "events_api",
                    "accepts_response_payload": False,
                    "payload": function_event(inputs),
                }
            )
            (ack,) = await slack.wait_for_socket_acks(1, within=30)
            assert ack["envelope_id"] == "env-step"
            (done,) = await slack.wait_for_completions(1, within=30)
            assert done["method"] == "functions.completeSuccess"
            assert studio.creates()[0]["form"]["To"] == BOSTON
            log = await sigterm(proc)
        assert proc.returncode == 0, log
        assert STEP_TOKEN not in log
