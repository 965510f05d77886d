"""Start, check, refresh and end from Slack, on v1 and v2, with signed requests and clicks."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness import block_action, buttons, harness, text_of
from tests.peers import ENGAGEMENT_SID, FLOW_SID, SURVEY_SID, FakeStudio, prism

STEPS = [
    {
        "sid": "FT" + "1" * 32,
        "name": "Trigger",
        "type": "trigger",
        "transitioned_from": "Trigger",
        "transitioned_to": "greet",
        "date_created": "2026-11-23T10:00:01Z",
    },
    {
        "sid": "FT" + "2" * 32,
        "name": "greet",
        "type": "say-play",
        "transitioned_from": "greet",
        "transitioned_to": "Ended",
        "date_created": "2026-11-23T10:00:05Z",
    },
]


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_flows_lists_alias_sid_sender_and_restrictions(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    flows = f"onboarding={FLOW_SID},survey={SURVEY_SID};users=U0BOSS;channels=C0OPS"
    async with harness(monkeypatch, FakeStudio(), STUDIO_API=api, STUDIO_FLOWS=flows) as run:
        ack = (await run.command("flows"))[0].json()
        (listing,) = await run.slack.wait_for_replies(1)  # Studio cannot be asked here
    assert "Asking Studio" in ack["text"]
    text = text_of(listing)
    assert listing["response_type"] == "ephemeral"
    assert "parameters: not known" in text
    for expected in [
        "onboarding",
        "default",
        FLOW_SID,
        "survey",
        SURVEY_SID,
        "<@U0BOSS>",
        "<#C0OPS>",
        "+1 617-555-0100",
    ]:
        assert expected in text, expected


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_status_shows_steps_times_and_flow_data(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    async with harness(monkeypatch, FakeStudio(steps=STEPS), STUDIO_API=api) as run:
        await run.start()
        ack = (await run.command(f"status {ENGAGEMENT_SID}"))[0].json()
        assert "Looking up" in ack["text"]
        status = (await run.slack.wait_for_replies(2))[1]
    assert status["response_type"] == "ephemeral"
    text = text_of(status)
    for expected in [
        ENGAGEMENT_SID,
        "active",
        "greet (say-play): greet → Ended",
        "Trigger (trigger)",
        "first_name",
        "Zeke",
        "<!date^",
    ]:
        assert expected in text, expected
    kind = "Engagements" if api == "v1" else "Executions"
    paths = [r["path"] for r in run.studio.requests if r["method"] == "GET"]
    assert f"/{api}/Flows/{FLOW_SID}/{kind}/{ENGAGEMENT_SID}/Steps" in paths


async def test_status_looks_in_every_configured_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio()) as run:
        await run.start("survey +16175551212")
        await run.command(f"status {ENGAGEMENT_SID}")
        status = (await run.slack.wait_for_replies(2))[1]
        assert "survey" in status["text"]  # found in the second flow tried
        await run.command(f"status FN{'0' * 32}")
        missing = (await run.slack.wait_for_replies(3))[2]
        assert "No engagement" in missing["text"]


@pytest.mark.parametrize(
    "text", ["status", "status nope", f"status FN{'0' * 32} a=1", "flows extra"]
)
async def test_bad_status_and_flows_commands(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    async with harness(monkeypatch, FakeStudio()) as run:
        ack = (await run.command(text))[0].json()
        assert ack["response_type"] == "ephemeral"
        assert "usage" in ack["text"].casefold()
        assert run.studio.requests == []


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_refresh_replaces_the_card_with_the_latest_step(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    studio = FakeStudio(steps=STEPS)
    async with harness(monkeypatch, studio, STUDIO_API=api) as run:
        card = await run.start()
        refresh = buttons(card)["engage_refresh"]
        assert refresh["value"] == f"{FLOW_SID}:{ENGAGEMENT_SID}:U0CALLER"
        studio.runs[ENGAGEMENT_SID]["status"] = "ended"
        replaced = await run.click("engage_refresh", refresh["value"], user="U0ANYONE")
    assert replaced["replace_original"] is True
    text = text_of(replaced)
    for expected in [
        "ended",
        "greet (say-play): greet → Ended",
        "<@U0CALLER>",
        "first_name",
        "+1 617-555-0100",
    ]:
        assert expected in text, expected
    assert "engage_end" not in buttons(replaced)  # nothing left to end


async def test_end_on_v2_sets_status_ended(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v2") as run:
        card = await run.start()
        end = buttons(card)["engage_end"]
        assert "flow stops where it is" in end["confirm"]["text"]["text"]
        replaced = await run.click("engage_end", end["value"])
    update = [
        r for r in studio.requests if r["method"] == "POST" and r["path"].endswith(ENGAGEMENT_SID)
    ]
    assert [u["form"] for u in update] == [{"Status": "ended"}]
    assert replaced["replace_original"] is True
    assert "ended by <@U0CALLER>" in text_of(replaced)
    assert studio.runs[ENGAGEMENT_SID]["status"] == "ended"


async def test_end_on_v1_deletes_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v1") as run:
        card = await run.start()
        end = buttons(card)["engage_end"]
        assert "deletes it and its step log" in end["confirm"]["text"]["text"]
        replaced = await run.click("engage_end", end["value"])
    assert [r["method"] for r in studio.requests if r["path"].endswith(ENGAGEMENT_SID)] == [
        "GET",
        "DELETE",
    ]
    assert "deleted by <@U0CALLER>" in text_of(replaced)
    assert "engage_refresh" not in buttons(replaced)


@pytest.mark.parametrize(
    ("user", "admins", "allowed"),
    [
        ("U0CALLER", "", True),
        ("U0ADMIN", "U0ADMIN", True),
        ("U0OTHER", "U0ADMIN", False),
        ("U0OTHER", "", False),
    ],
)
async def test_only_the_starter_or_an_admin_may_end(
    monkeypatch: pytest.MonkeyPatch, user: str, admins: str, allowed: bool
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v2", ADMIN_SLACK_USERS=admins) as run:
        card = await run.start()
        answer = await run.click("engage_end", buttons(card)["engage_end"]["value"], user=user)
    ended = studio.runs[ENGAGEMENT_SID]["status"] == "ended"
    assert ended is allowed
    if not allowed:
        assert answer["response_type"] == "ephemeral"
        assert answer["replace_original"] is False
        assert "Only <@U0CALLER>" in answer["text"]
        shown = json.dumps(answer["blocks"])
        assert "<@U0CALLER>" in shown  # a mention, not the escaped text of one
        assert "&lt;@" not in shown


async def test_a_malformed_button_value_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v2") as run:
        await run.start()
        response, _ = await run.post(
            block_action("engage_end", "not:a:card", response_url=f"{run.slack_url}/respond/2")
        )
        assert response.status_code == 200
        await run.idle()
    assert studio.runs[ENGAGEMENT_SID]["status"] == "active"


async def test_a_well_formed_value_naming_the_clicker_as_starter_does_not_end_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The End rule asks the bot's own record of who started the run, not the button."""
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v2") as run:
        await run.start()  # started by U0CALLER
        forged = f"{FLOW_SID}:{ENGAGEMENT_SID}:U0MALLORY"
        answer = await run.click("engage_end", forged, user="U0MALLORY")
    assert "Only <@U0CALLER>, who started it" in answer["text"]
    assert studio.runs[ENGAGEMENT_SID]["status"] == "active"


ALREADY = (
    409,
    {
        "code": 20409,
        "message": "Execution FN... is already active for this contact. End the active Execution before creating a new one.",
        "more_info": "https://www.twilio.com/docs/errors/20409",
        "status": 409,
    },
)


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_already_active_offers_to_end_it_and_start_again(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API=api, DUPLICATE_WINDOW_SECONDS="0") as run:
        await run.start()  # FN…d is now active for the contact
        studio.answers.append(ALREADY)
        await run.command("+16175551212 first_name=Again")
        prompt = (await run.slack.wait_for_replies(2))[1]
        assert prompt["response_type"] == "ephemeral"
        assert "already has an active run" in prompt["text"]
        assert ENGAGEMENT_SID in prompt["text"]
        assert "Twilio error 20409 (HTTP 409)" in prompt["text"]
        assert "https://www.twilio.com/docs/errors/20409" in prompt["text"]
        restart = buttons(prompt)["engage_restart"]
        verb = "End" if api == "v2" else "Delete"
        assert restart["text"]["text"] == f"{verb} it and start again"
        assert restart["confirm"]["title"]["text"] == f"{verb} the active run?"
        if api == "v1":
            assert "deletes it" in restart["confirm"]["text"]["text"]

        replaced = await run.click("engage_restart", restart["value"], n=3)
        assert "Starting" in replaced["text"]
        result = (await run.slack.wait_for_replies(4))[3]
        assert result["response_type"] == "in_channel"
    ended = [
        r
        for r in studio.requests
        if r["path"].endswith(ENGAGEMENT_SID) and r["method"] in ("POST", "DELETE")
    ]
    assert len(ended) == 1
    assert len(studio.creates()) == 3  # first, the refused one, the restart
    assert studio.creates()[-1]["form"]["Parameters"] == '{"first_name":"Again"}'


@pytest.mark.parametrize(
    ("clicker", "admins", "offered"),
    [("U0OTHER", "", False), ("U0OTHER", "U0OTHER", True), ("U0CALLER", "", True)],
)
async def test_end_it_and_start_again_follows_the_end_rule(
    monkeypatch: pytest.MonkeyPatch, clicker: str, admins: str, offered: bool
) -> None:
    """Someone who may not End the run on the card cannot end it by starting it again."""
    studio = FakeStudio()
    env = {"STUDIO_API": "v2", "DUPLICATE_WINDOW_SECONDS": "0", "ADMIN_SLACK_USERS": admins}
    async with harness(monkeypatch, studio, **env) as run:
        await run.start()  # U0CALLER's run is now active for the contact
        studio.answers.append(ALREADY)
        await run.command("+16175551212", user_id=clicker)
        prompt = (await run.slack.wait_for_replies(2))[1]
        assert ENGAGEMENT_SID in prompt["text"]
        if offered:
            restart = buttons(prompt)["engage_restart"]
            await run.click("engage_restart", restart["value"], user=clicker, n=3)
            await run.slack.wait_for_replies(4)
        else:
            assert "engage_restart" not in buttons(prompt)
            assert "Only <@U0CALLER>, who started it" in text_of(prompt["blocks"])
    assert (studio.runs[ENGAGEMENT_SID]["status"] == "ended") is offered


@pytest.mark.parametrize("api", ["v1", "v2"])
async def test_already_active_is_recognised_by_409_alone_and_links_the_executions(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    studio = FakeStudio()
    conflict = {"code": 29999, "message": "Conflict", "more_info": "https://x.example/29999"}
    async with harness(monkeypatch, studio, STUDIO_API=api) as run:
        studio.answers.append((409, {**conflict, "status": 409}))
        await run.command("+16175551212")
        (prompt,) = await run.slack.wait_for_replies(1)
    assert "already has an active run" in prompt["text"]
    assert "Twilio error 29999 (HTTP 409)" in prompt["text"]
    assert "https://x.example/29999" in prompt["text"]
    link = buttons(prompt)["open_console"]["url"]
    assert "executions" in link
    assert FLOW_SID in link
    assert "engage_restart" not in buttons(prompt)


@pytest.fixture(scope="module")
def prism_v2() -> Iterator[str]:
    with prism("twilio_studio_v2.yaml") as url:
        yield url


@pytest.mark.prism
async def test_start_refresh_and_end_against_prism_v2(
    monkeypatch: pytest.MonkeyPatch, prism_v2: str
) -> None:
    async with harness(monkeypatch, FakeStudio(), studio_url=prism_v2, STUDIO_API="v2") as run:
        card = await run.start()
        assert card["response_type"] == "in_channel", card["text"]
        end = buttons(card)["engage_end"]
        replaced = await run.click("engage_end", end["value"])
        assert "ended by <@U0CALLER>" in text_of(replaced), replaced["text"]
        await run.command(f"status {end['value'].split(':')[1]}")
        status = (await run.slack.wait_for_replies(3))[2]
        assert "Could not" not in status["text"], status["text"]
        assert run.studio.requests == []


@pytest.mark.parametrize("action", ["engage_refresh", "engage_end"])
async def test_button_errors_are_reported_privately(
    monkeypatch: pytest.MonkeyPatch, action: str
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, STUDIO_API="v2") as run:
        card = await run.start()
        studio.runs.clear()  # Studio no longer has it: 404 for every operation
        answer = await run.click(action, buttons(card)[action]["value"])
    assert answer["response_type"] == "ephemeral"
    assert answer["replace_original"] is False
    assert "Could not" in answer["text"]
    assert "20404" in answer["text"]


async def test_status_errors_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.peers import free_port

    async with harness(
        monkeypatch, FakeStudio(), studio_url=f"http://127.0.0.1:{free_port()}"
    ) as run:
        await run.command(f"status {ENGAGEMENT_SID}")
        (answer,) = await run.slack.wait_for_replies(1, within=15)
    assert answer["response_type"] == "ephemeral"
    assert f"Could not look up {ENGAGEMENT_SID}" in answer["text"]
