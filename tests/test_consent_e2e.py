"""Consent end to end (issue 35): the suppression list and the caps on a real Redis (and
on memory), through a restart of the bot and of Redis; each source of an opt-out (an
answer, Twilio's 21610, the command, a file an admin imports); each surface refusing an
opted-out or capped contact before any Studio call (the command, a bulk run, a schedule
when it fires, the workflow step, the terminal); an admin's override of a cap, audited;
and no start at all while the list cannot be read."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.results import Refused, Started
from bot.engage.consent import OPTOUTS, Consent
from bot.engage.start import StartRequest
from bot.runs import tracker as tracker_module
from bot.state.admission import ConsentCheck
from bot.state.store import Durable, RedisStore, Store
from tests.harness import Harness, buttons, harness, text_of, wired
from tests.peers import (
    CONSENT_KEY,
    ENGAGEMENT_SID,
    FLOW_SID,
    SURVEY_SID,
    FakeSlack,
    FakeStudio,
    RedisServer,
    free_port,
    redis_server,
)
from tests.test_bulk_e2e import preview, results, until
from tests.test_forms_e2e import flow, studio_with_flows, submission, text
from tests.test_records_e2e import end, survey_studio
from tests.test_schedules_e2e import MORNING_IN_BOSTON, Clock, controlled, dms, interact
from tests.test_workflow_step_e2e import run_step

BOSTON = "+16175551212"
ADMIN = "U0ADMIN"
ADMINS = {"ADMIN_SLACK_USERS": ADMIN}
UNSUBSCRIBED = (
    400,
    {"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400},
)


async def ack(run: Harness, text: str, user: str = "U0CALLER") -> str:
    """The text of the slash command's immediate answer."""
    response, _ = await run.command(text, user_id=user)
    assert response.status_code == 200
    return text_of(response.json())


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "bot.audit"]


# --- the list and the caps in the store ------------------------------------------------


async def test_the_list_and_the_caps_take_one_atomic_step(store: Store) -> None:
    """On memory and on a real Redis alike: an opted-out contact is refused with its
    entry, nothing counted or claimed; a capped one with when it may be reached again; a
    start admitted holds its place, given back by ``unhold``."""
    caps = ((2, 3600.0, ""), (1, 3600.0, f"{SURVEY_SID}|"))
    check = ConsentCheck(OPTOUTS, "k", "reach:k", caps, f"{FLOW_SID}|U1|a")
    assert (await store.admit("uses:u", 5, 60, "dup:a", 60, check)).claimed
    survey = ConsentCheck(OPTOUTS, "k", "reach:k", caps, f"{SURVEY_SID}|U1|b")
    assert (await store.admit("uses:u", 5, 60, None, 60, survey)).claimed
    before = time.time()
    capped = await store.admit("uses:u", 5, 60, "dup:c", 60, survey)
    assert not capped.claimed
    assert before + 3599 < capped.again < time.time() + 3601
    assert await store.get("dup:c") is None  # a refused start claims nothing
    # ... and counts nothing: two uses so far, so a third fits under 3 and a fourth not
    assert (await store.admit("uses:u", 3, 60, None, 60)).wait == 0
    assert (await store.admit("uses:u", 3, 60, None, 60)).wait > 0
    await store.unhold("reach:k", f"{SURVEY_SID}|U1|")  # Twilio refused it: given back
    assert (await store.admit("uses:u", 5, 60, None, 60, survey)).claimed

    entry = json.dumps({"at": 1.0, "source": "command", "contact": "+1 617-•••-1212"})
    assert await store.suppress(OPTOUTS, "k", entry, "command", 2)
    refused = await store.admit("uses:u", 5, 60, "dup:d", 60, check)
    assert refused.optout == entry
    assert await store.get("dup:d") is None
    for n in range(3):
        await store.suppress(OPTOUTS, f"k{n}", json.dumps({"source": "file"}), "file", 2)
    assert await store.hlen(OPTOUTS) == 4
    assert await store.hgetall(OPTOUTS + ":sources") == {"command": "1", "file": "3"}
    assert await store.zcard(OPTOUTS + ":latest") == 2  # trimmed to the latest
    screened = await store.screen(OPTOUTS, ["k9", "k", "k0"], "reach:", caps)
    assert screened == {1: "o" + entry, 2: "o" + json.dumps({"source": "file"})}
    await store.unsuppress(OPTOUTS, "k")
    capped_too = await store.screen(OPTOUTS, ["k9", "k"], "reach:", caps)
    assert list(capped_too) == [1]  # k is at its survey cap: judged for every flow here
    assert capped_too[1].startswith("c")
    await store.suppress(OPTOUTS, "k", entry, "command", 2)
    assert await store.unsuppress(OPTOUTS, "k") == entry
    assert await store.hgetall(OPTOUTS + ":sources") == {"file": "3"}
    assert await store.unsuppress(OPTOUTS, "k") is None


async def test_no_number_is_kept_in_the_clear(redis: RedisServer) -> None:
    """A copy of the store lists no numbers: every key and value is read back."""
    store = RedisStore(redis.url.replace("/0", "/5"))
    await store.redis.flushdb()
    consent = Consent(Durable(store), secret=CONSENT_KEY.encode())
    await consent.opt_out(BOSTON, "command", by="U0CALLER", reason="asked by phone")
    await consent.opt_out("whatsapp:+16175551213", "answer", reason="STOP")
    dumped = []
    async for key in store.redis.scan_iter("*"):
        kind = await store.redis.type(key)
        value = (
            await store.redis.hgetall(key)
            if kind == "hash"
            else await store.redis.zrange(key, 0, -1)
        )
        dumped.append(f"{key} {value}")
    await store.aclose()
    assert len(dumped) == 3  # the list, its latest additions, its counts
    text = "\n".join(dumped)
    assert "5551212" not in text
    assert "5551213" not in text
    assert "+1 617-•••-1212" in text  # masked, as shown to admins


async def test_the_list_survives_a_restart_of_the_bot_and_of_redis(tmp_path: Path) -> None:
    port = free_port()
    with redis_server(persist=tmp_path, port=port) as server:
        store = RedisStore(server.url)
        consent = Consent(Durable(store), secret=CONSENT_KEY.encode())
        assert await consent.opt_out(BOSTON, "command", by="U0CALLER")
        await store.aclose()
    with redis_server(persist=tmp_path, port=port) as server:
        store = RedisStore(server.url)
        again = Consent(Durable(store), secret=CONSENT_KEY.encode())  # another process
        entry = await again.entry(BOSTON)
        other_key = Consent(Durable(store), secret=b"x" * 32)
        elsewhere = await other_key.entry(BOSTON)
        await store.aclose()
    assert entry is not None
    assert (entry.source, entry.by) == ("command", "U0CALLER")
    assert elsewhere is None  # keyed: another key finds no one


# --- the sources of an opt-out ---------------------------------------------------------


async def test_the_command_opts_out_and_every_start_is_refused_before_studio(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    studio = FakeStudio()
    async with harness(monkeypatch, studio) as run:
        added = await ack(run, "optout +1 (617) 555-1212 asked by phone")
        again = await ack(run, f"optout {BOSTON}")
        refused = await ack(run, f"{BOSTON} first_name=Zeke")
        whatsapp = await ack(run, f"survey whatsapp:{BOSTON} --from whatsapp:+16175550100")
        await run.idle()
    assert "+1 617-555-1212 is on the opt-out list" in added
    assert "was on the opt-out list already: opted out" in again
    assert "opted out with /engage optout (asked by phone), by U0CALLER" in refused
    assert "Nothing was sent to Twilio" in refused
    assert "opted out" in whatsapp  # one contact on every channel
    assert studio.requests == []
    lines = audit_lines(caplog)
    assert [line["outcome"] for line in lines] == ["opt_out_added", "opted_out", "opted_out"]
    assert "5551212" not in caplog.text
    assert lines[1]["contact"] == "+1 617-•••-1212"


async def test_only_admins_opt_in_with_a_reason_and_it_is_audited(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    studio = FakeStudio()
    async with harness(monkeypatch, studio, **ADMINS) as run:
        await ack(run, f"optout {BOSTON}")
        not_admin = await ack(run, f"optin {BOSTON} they called back")
        no_reason = await ack(run, f"optin {BOSTON}", user=ADMIN)
        opted_in = await ack(run, f"optin {BOSTON} signed consent form 12", user=ADMIN)
        not_listed = await ack(run, f"optin {BOSTON} twice", user=ADMIN)
        await run.command(BOSTON)
        await run.slack.wait_for_replies(1)
    assert "only admins (ADMIN_SLACK_USERS) can take a contact off" in not_admin
    assert "say why (it goes in the audit log)" in no_reason
    assert "is off the opt-out list" in opted_in
    assert "is not on the opt-out list" in not_listed
    assert len(studio.creates()) == 1  # reachable again
    (opt_in,) = [line for line in audit_lines(caplog) if line["outcome"] == "opt_in"]
    assert opt_in["user"] == ADMIN
    assert "signed consent form 12" in str(opt_in["detail"])


async def test_admins_see_how_many_opted_out_by_source_and_the_latest_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(answers=[UNSUBSCRIBED]), **ADMINS) as run:
        await ack(run, f"optout {BOSTON}")
        await ack(run, "optout +16175551213 wrong person")
        await run.command("+16175551214")  # Twilio answers 21610
        await run.slack.wait_for_replies(1)
        await run.idle()
        refused = await ack(run, "optouts")
        listed = await ack(run, "optouts", user=ADMIN)
    assert "only admins (ADMIN_SLACK_USERS) can see the opt-out list" in refused
    assert "3 contact(s) opted out: 1 Twilio said the recipient unsubscribed (21610)," in listed
    assert "2 opted out with /engage optout." in listed
    assert "+1 617-•••-1214" in listed
    assert "+1 617-•••-1213" in listed
    assert "5551213" not in listed
    assert listed.index("1214") < listed.index("1212")  # newest first


async def test_a_start_twilio_refuses_with_21610_opts_the_contact_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twilio blocks that one SMS sender; the list keeps every flow, channel and sender
    from reaching the contact after it."""
    studio = FakeStudio(answers=[UNSUBSCRIBED])
    async with harness(monkeypatch, studio) as run:
        await run.command(BOSTON)
        (failed,) = await run.slack.wait_for_replies(1)
        await run.idle()
        voice = await ack(run, f"survey {BOSTON}")
    assert "21610" in text_of(failed)
    assert "Twilio said the recipient unsubscribed (21610)" in voice
    assert len(studio.creates()) == 1


@pytest.mark.parametrize("answer", ["Stop", " stop all ", "UNSUBSCRIBE"])
async def test_an_opt_out_answer_opts_the_contact_out(
    monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    monkeypatch.setattr(tracker_module, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 3600.0)  # sweeps run by the test
    studio = survey_studio()
    async with harness(monkeypatch, studio, STUDIO_READ_RATE_LIMIT="1000000/second") as run:
        await run.command(f"{BOSTON} first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, answer)
        await run.services.tracker.sweep()
        entry = await run.services.engager.consent.entry(BOSTON)
        refused = await ack(run, f"survey {BOSTON}")
    assert entry is not None
    assert (entry.source, entry.sid, entry.flow_sid) == ("answer", ENGAGEMENT_SID, FLOW_SID)
    assert "replied with an opt-out word" in refused
    assert len(studio.creates()) == 1


async def test_a_run_whose_context_carries_21610_opts_the_contact_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run started; its Send Message widget failed with 21610 (the contact had
    replied STOP to that sender): Twilio blocks that sender alone, the bot every flow."""
    monkeypatch.setattr(tracker_module, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 3600.0)
    studio = survey_studio()
    async with harness(monkeypatch, studio, STUDIO_READ_RATE_LIMIT="1000000/second") as run:
        await run.command(f"{BOSTON} first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, None, widget="send_failed")
        studio.runs[ENGAGEMENT_SID]["context"]["widgets"] = {
            "send_1": {"status": "failed", "ErrorCode": "21610"}
        }
        await run.services.tracker.sweep()
        entry = await run.services.engager.consent.entry(BOSTON)
    assert entry is not None
    assert (entry.source, entry.sid) == ("21610", ENGAGEMENT_SID)


async def test_an_answer_that_is_not_an_opt_out_word_keeps_the_contact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracker_module, "MIN_INTERVAL", 0.0)
    monkeypatch.setattr(tracker_module, "TICK_SECONDS", 3600.0)
    studio = survey_studio()
    async with harness(monkeypatch, studio, STUDIO_READ_RATE_LIMIT="1000000/second") as run:
        await run.command(f"{BOSTON} first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        end(studio, ENGAGEMENT_SID, "stop by tomorrow")
        await run.services.tracker.sweep()
        entry = await run.services.engager.consent.entry(BOSTON)
    assert entry is None


async def optout_shortcut(run: Harness, name: str | None, user: str, text: str = "") -> None:
    """The admins' *Opt out each row* shortcut on a message sharing file ``name`` (None:
    a message with no file)."""
    files = [{"id": f"F-{name}", "name": name}] if name is not None else []
    await interact(
        run,
        {
            "type": "message_action",
            "callback_id": "optout_csv",
            "trigger_id": "1.2",
            "channel": {"id": "C0CHANNEL"},
            "response_url": f"{run.slack_url}/respond/1",
            "message": {"text": text, "files": files},
        },
        user=user,
    )


async def test_an_admin_imports_an_opt_out_file_after_a_preview(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    slack = FakeSlack()
    slack.files["stop.csv"] = b"phone,date\n+16175551212,2025-01-02\n+1 617 555 1213,x\nnope,y\n"
    studio = FakeStudio()
    async with wired(monkeypatch, studio, slack, env=ADMINS) as run:
        await ack(run, f"optout {BOSTON}")  # on the list already
        await optout_shortcut(run, "stop.csv", "U0CALLER")
        (refused,) = await slack.wait_for_replies(1)
        await optout_shortcut(run, "stop.csv", ADMIN)
        shown = (await slack.wait_for_replies(3))[2]
        value = buttons(shown)["optout_import"]["value"]
        done = await run.click("optout_import", value, user=ADMIN, n=4)
        twice = await run.click("optout_import", value, user=ADMIN, n=5)
        refused_start = await ack(run, "+16175551213")
    assert "only admins (ADMIN_SLACK_USERS) can import an opt-out list" in text_of(refused)
    assert (
        "1 number(s) to add to the opt-out list, 1 on it already, 1 row(s) not a number"
        in text_of(shown)
    )
    assert "Added 1 contact(s) to the opt-out list" in text_of(done)
    assert "expired" in text_of(twice).lower()
    assert "imported from an opt-out file" in refused_start
    assert studio.requests == []
    assert "5551213" not in caplog.text


# --- every surface --------------------------------------------------------------------


async def test_a_bulk_preview_skips_opted_out_and_capped_rows_and_the_results_say_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio, CONTACT_CAP="1/24h") as run:
        await ack(run, "optout +16175551213")
        await run.command("+16175551214")  # reached once today: at the cap
        await run.slack.wait_for_replies(1)
        await run.idle()
        await run.command("survey +16175551212 +16175551213 +16175551214")
        shown = (await run.slack.wait_for_replies(2))[1]
        text = text_of(shown)
        assert "1 valid" in text
        assert "1 opted out: skipped. 1 at their cap: skipped." in text
        assert "row 2: +1 617-555-1213 opted out" in text
        assert "may be reached again" in text
        assert "Start 1" in text
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"], n=3)
        await until(lambda: run.slack.uploads)
    rows = {r["contact"]: r for r in results(run.slack)}
    assert rows["'+16175551212"]["outcome"] == "started"
    assert rows["'+16175551213"]["outcome"] == "suppressed"
    assert rows["'+16175551214"]["outcome"] == "suppressed"
    assert [c["form"]["To"] for c in studio.creates()] == ["+16175551214", "+16175551212"]


async def test_a_row_that_opts_out_after_the_preview_is_not_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio()
    async with harness(monkeypatch, studio) as run:
        shown = await preview(run, "survey +16175551212 +16175551213")
        assert "2 valid" in text_of(shown)
        await ack(run, "optout +16175551213")  # between the preview and Start
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"], n=2)
        await until(lambda: run.slack.uploads)
    rows = {r["contact"]: r for r in results(run.slack)}
    assert rows["'+16175551213"]["outcome"] == "suppressed"
    assert "opted out with /engage optout" in rows["'+16175551213"]["message"]
    assert [c["form"]["To"] for c in studio.creates()] == [BOSTON]


async def test_a_schedule_checks_the_list_again_when_it_fires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(MORNING_IN_BOSTON)
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack) as running:
        run = controlled(running, clock)
        await run.command(f"{BOSTON} --in 1h")
        await slack.wait_for_replies(1)
        await ack(run, f"optout {BOSTON}")
        clock.now += 3601
        await until(lambda: dms(slack, "U0CALLER"))
    assert studio.creates() == []
    (told,) = dms(slack, "U0CALLER")
    assert "was not started at its time" in told["text"]
    assert "opted out" in told["text"]


async def test_a_workflow_step_is_refused_for_an_opted_out_contact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack) as run:
        await ack(run, f"optout {BOSTON} no more calls")
        await run_step(run, {"flow": "onboarding", "contact": BOSTON, "on_behalf_of": "U0CALLER"})
        (done,) = await slack.wait_for_completions(1)
    assert done["method"] == "functions.completeError"
    assert "opted out with /engage optout (no more calls)" in done["error"]
    assert studio.creates() == []


async def test_the_terminal_and_every_start_request_honour_the_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The use-case itself, as the terminal's ``trigger`` and a bulk row call it."""
    studio = FakeStudio()
    async with harness(monkeypatch, studio) as run:
        engager = run.services.engager
        await engager.consent.opt_out(BOSTON, "command")
        command = EngageCommand(FLOW_SID, None, BOSTON, "+16175550100", {})
        terminal = await engager.start(StartRequest(command, Caller("terminal", terminal=True)))
        row = await engager.start(
            StartRequest(command, Caller("U0CALLER"), rules="destination", turn="bulk")
        )
    assert isinstance(terminal, Refused)
    assert terminal.kind == "opted_out"
    assert isinstance(row, Refused)
    assert row.kind == "opted_out"
    assert studio.requests == []


# --- caps -------------------------------------------------------------------------------


async def test_the_cap_counts_starts_twilio_accepted_not_refused_ones(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    refused = (400, {"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400})
    studio = FakeStudio(answers=[refused])
    env = {"CONTACT_CAP": "1/24h", "DUPLICATE_WINDOW_SECONDS": "0"}
    async with harness(monkeypatch, studio, **env) as run:
        await run.command(BOSTON)  # Twilio refuses: not counted
        await run.slack.wait_for_replies(1)
        await run.idle()
        await run.command(BOSTON)
        await run.slack.wait_for_replies(2)
        await run.idle()
        capped = await ack(run, f"survey {BOSTON}")  # any flow: CONTACT_CAP
    assert len(studio.creates()) == 2
    assert "was reached as often as the cap allows (1 per 1 d across flows (CONTACT_CAP))" in capped
    assert "they may be reached again in 1 d" in capped
    assert [line["outcome"] for line in audit_lines(caplog)][-1] == "capped"


async def test_a_flow_cap_counts_that_flow_only(monkeypatch: pytest.MonkeyPatch) -> None:
    studio = FakeStudio()
    flows = f"onboarding={FLOW_SID},survey={SURVEY_SID};cap=1/7d"
    env = {"STUDIO_FLOWS": flows, "DUPLICATE_WINDOW_SECONDS": "0"}
    async with harness(monkeypatch, studio, **env) as run:
        for n, flow in enumerate(["survey", "onboarding", "onboarding"], start=1):
            await run.command(f"{flow} {BOSTON}")
            await run.slack.wait_for_replies(n)
            await run.idle()
        capped = await ack(run, f"survey {BOSTON}")
    assert len(studio.creates()) == 3
    assert "(1 per 7 d for this flow (;cap=))" in capped


async def test_an_admin_may_start_over_the_cap_with_a_confirm_and_it_is_audited(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    studio = FakeStudio()
    env = {**ADMINS, "CONTACT_CAP": "1/24h", "DUPLICATE_WINDOW_SECONDS": "0"}
    async with harness(monkeypatch, studio, **env) as run:
        await run.command(BOSTON)
        await run.slack.wait_for_replies(1)
        await run.idle()
        plain = await ack(run, BOSTON)  # not an admin: refused, no button
        response, _ = await run.command(BOSTON, user_id=ADMIN)
        asked = response.json()
        token = buttons(asked)["engage_over_cap"]["value"]
        stranger = await run.click("engage_over_cap", token, user="U0CALLER", n=2)
        response, _ = await run.command(BOSTON, user_id=ADMIN)
        token = buttons(response.json())["engage_over_cap"]["value"]
        await run.click("engage_over_cap", token, user=ADMIN, n=3)
        await run.slack.wait_for_replies(4)
        await run.idle()
    assert "engage_over_cap" not in plain
    assert "As an admin you may start it anyway" in text_of(asked)
    assert "only the person who typed the command can confirm it" in text_of(stranger)
    assert len(studio.creates()) == 2
    overrides = [line for line in audit_lines(caplog) if line["outcome"] == "cap_overridden"]
    assert len(overrides) == 1
    assert overrides[0]["user"] == ADMIN


async def test_simultaneous_starts_cannot_slip_past_the_cap_together(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    """Ten rows of ten bulk runs for one contact at once (no duplicate window between
    them): the cap's place is held at the check, so two are sent, not ten."""
    studio = FakeStudio(latency=0.2)
    env = {"REDIS_URL": redis.url.replace("/0", "/6"), "CONTACT_CAP": "2/24h"}
    async with harness(monkeypatch, studio, **env) as run:
        engager = run.services.engager
        command = EngageCommand(FLOW_SID, None, BOSTON, "+16175550100", {})
        outcomes = await asyncio.gather(
            *(
                engager.start(
                    StartRequest(command, Caller(f"U{n}"), rules="destination", turn="bulk")
                )
                for n in range(10)
            )
        )
    assert sum(isinstance(o, Started) for o in outcomes) == 2
    assert {o.kind for o in outcomes if isinstance(o, Refused)} == {"capped"}
    assert len(studio.creates()) == 2


# --- when the list cannot be read --------------------------------------------------------


async def test_with_redis_down_nothing_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    studio = FakeStudio()
    async with harness(monkeypatch, studio, REDIS_URL=dead) as run:
        refused = await ack(run, BOSTON)
        await run.idle()
    assert "the opt-out list could not be read" in refused
    assert "Nothing was sent to Twilio" in refused
    assert studio.requests == []


async def test_the_form_is_refused_for_an_opted_out_contact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, studio_with_flows()) as run:
        await run.idle()
        await ack(run, f"optout {BOSTON}")
        values = {
            "flow": flow(FLOW_SID),
            "contact": text("contact", "+1 617 555 1212"),
            "p:first_name": text("value", "Zeke"),
        }
        response = await interact(run, submission(values, run))
        await run.idle()
        said = response.text + text_of(run.slack.replies)
    assert "opted out with /engage optout" in said
    assert run.studio.creates() == []


async def test_an_import_without_a_csv_file_says_so_and_adds_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack()
    async with wired(monkeypatch, FakeStudio(), slack, env=ADMINS) as run:
        await optout_shortcut(run, None, ADMIN, "our list")
        (said,) = await slack.wait_for_replies(1)
        listed = await run.services.engager.consent.listing()
    assert "this message has no CSV file of numbers to opt out" in text_of(said)
    assert listed.total == 0
