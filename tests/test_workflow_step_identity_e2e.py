"""Whom the Workflow Builder step acts for (issue 32, 1 and 11): the person Slack says ran
the workflow, never a name the workflow's builder typed; malformed inputs and failures
inside the bot complete the step with what to fix, never leave it hanging."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot.engage.start import Engager
from tests.harness import wired
from tests.peers import FakeSlack, FakeStudio
from tests.test_workflow_step_e2e import BOSTON, run_step

BOSS = {"ALLOWED_SLACK_USERS": "U0BOSS"}


def ran_by(user: Any) -> dict[str, Any]:
    """The interactivity input Slack fills when a person runs the workflow."""
    return {"interactor": {"id": user, "secret": "c2VjcmV0"}, "interactivity_pointer": "1.2"}


async def completed(
    monkeypatch: pytest.MonkeyPatch, inputs: dict[str, Any], env: dict[str, str]
) -> tuple[dict[str, Any], FakeStudio]:
    studio, slack = FakeStudio(), FakeSlack()
    given = {"flow": "onboarding", "contact": BOSTON, **inputs}
    async with wired(monkeypatch, studio, slack, env=env) as run:
        await run_step(run, given)
        (done,) = await slack.wait_for_completions(1)
    return done, studio


async def test_a_builder_cannot_act_as_someone_else_by_naming_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The finding: Mallory runs a workflow whose On behalf of names the boss."""
    done, studio = await completed(
        monkeypatch, {"on_behalf_of": "U0BOSS", "interactivity": ran_by("U0MALLORY")}, BOSS
    )
    assert done["method"] == "functions.completeError"
    assert "acts only for the person who ran the workflow" in done["error"]
    assert studio.creates() == []


async def test_the_person_who_ran_it_is_the_one_every_rule_applies_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done, studio = await completed(monkeypatch, {"interactivity": ran_by("U0MALLORY")}, BOSS)
    assert done["method"] == "functions.completeError"
    assert "not allowed to use this flow (ALLOWED_SLACK_USERS)" in done["error"]
    assert studio.creates() == []


async def test_the_allowed_person_who_ran_it_starts_the_flow(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    done, studio = await completed(
        monkeypatch, {"on_behalf_of": "U0BOSS", "interactivity": ran_by("U0BOSS")}, BOSS
    )
    assert done["method"] == "functions.completeSuccess"
    assert len(studio.creates()) == 1
    audited = [json.loads(r.message) for r in caplog.records if r.name == "bot.audit"]
    (started,) = [a for a in audited if a["outcome"] == "started"]
    assert started["user"] == "U0BOSS"


async def test_an_unattended_workflow_is_refused_while_users_are_restricted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scheduled or event-triggered workflow has no interactor: nobody vouches for it."""
    done, studio = await completed(monkeypatch, {"on_behalf_of": "U0BOSS"}, BOSS)
    assert done["method"] == "functions.completeError"
    assert "not started by a person" in done["error"]
    assert "WORKFLOW_UNATTENDED_USERS" in done["error"]
    assert studio.creates() == []


async def test_an_admin_list_restricts_unattended_workflows_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done, studio = await completed(
        monkeypatch, {"on_behalf_of": "U0BOSS"}, {"ADMIN_SLACK_USERS": "U0BOSS"}
    )
    assert done["method"] == "functions.completeError"
    assert "WORKFLOW_UNATTENDED_USERS" in done["error"]
    assert studio.creates() == []


async def test_an_unattended_workflow_acts_only_for_the_users_named_for_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    env = {**BOSS, "WORKFLOW_UNATTENDED_USERS": "U0BOSS"}
    done, studio = await completed(monkeypatch, {"on_behalf_of": "U0BOSS"}, env)
    assert done["method"] == "functions.completeSuccess"
    assert len(studio.creates()) == 1
    audited = [json.loads(r.message) for r in caplog.records if r.name == "bot.audit"]
    assert [a["user"] for a in audited if a["outcome"] == "started"] == ["U0BOSS"]
    other, studio = await completed(monkeypatch, {"on_behalf_of": "U0OTHER"}, env)
    assert other["method"] == "functions.completeError"
    assert "WORKFLOW_UNATTENDED_USERS does not name U0OTHER" in other["error"]
    assert studio.creates() == []


async def test_an_unattended_workflow_needs_someone_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done, studio = await completed(monkeypatch, {}, {})
    assert done["method"] == "functions.completeError"
    assert "nobody ran this workflow by hand" in done["error"]
    assert studio.creates() == []


@pytest.mark.parametrize(
    ("inputs", "says"),
    [
        ({"interactivity": "U0BOSS"}, "Who ran it: must be the workflow's interactivity"),
        ({"interactivity": ran_by({"id": "U0BOSS"})}, "Who ran it: Slack named no user"),
        (
            {"interactivity": ran_by("U0BOSS"), "on_behalf_of": {"id": "U0BOSS"}},
            "On behalf of: must be text",
        ),
        ({"interactivity": ran_by("U0BOSS"), "on_behalf_of": "boss"}, "must be a Slack user"),
        (
            {"interactivity": ran_by("U0BOSS"), "parameters": "[" * 3000 + "]" * 3000},
            "Parameters:",
        ),
        (
            {"interactivity": ran_by("U0BOSS"), "parameters": '{"a":' * 3000 + "1" + "}" * 3000},
            "nested too deeply",
        ),
        (
            {"interactivity": ran_by("U0BOSS"), "parameters": "a." * 40 + "b=1"},
            "nested too deeply",
        ),
        ({"interactivity": ran_by("U0BOSS"), "contact": 16175551212}, "Contact: must be text"),
        ({"interactivity": ran_by("U0BOSS"), "flow": ["onboarding"]}, "Flow: must be text"),
    ],
)
async def test_malformed_inputs_fail_the_step_saying_what_to_fix(
    monkeypatch: pytest.MonkeyPatch, inputs: dict[str, Any], says: str
) -> None:
    done, studio = await completed(monkeypatch, inputs, BOSS)
    assert done["method"] == "functions.completeError"
    assert says in done["error"]
    assert studio.creates() == []


async def test_a_failure_inside_the_bot_still_completes_the_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Engager, "start", broken)
    done, _ = await completed(monkeypatch, {"interactivity": ran_by("U0BOSS")}, BOSS)
    assert done["method"] == "functions.completeError"
    assert "the bot failed while running the step (RuntimeError)" in done["error"]
    assert "may have started" in done["error"]
