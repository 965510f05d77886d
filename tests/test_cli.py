"""``python -m bot trigger`` as a person runs it: a real process, real HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bot.domain.grammar import argv_to_text
from tests import flow_definitions as defs
from tests.peers import (
    ACCOUNT_SID,
    API_SECRET,
    AUTH_TOKEN,
    FLOW_SID,
    SENDER,
    SURVEY_SID,
    FakeStudio,
    free_port,
    prism,
    serve,
)

# Anything not on loopback goes to a proxy where nothing listens: a command that would
# reach studio.twilio.com (the Flows API, for --dry-run's checks) fails here, offline.
DEAD_PROXY = f"http://127.0.0.1:{free_port()}"
OFFLINE = {"HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "NO_PROXY": "127.0.0.1,localhost"}


def environment(env: dict[str, str]) -> dict[str, str]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STUDIO_", "SLACK_"))
    }
    return {**base, **OFFLINE, **env}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def arun(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """``run`` without blocking the loop that serves the fake Studio."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=environment(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


ENV = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "STUDIO_FLOW_SID": FLOW_SID,
    "STUDIO_FLOWS": f"survey={SURVEY_SID}",
    "STUDIO_FROM": SENDER,
    "QUIET_HOURS": "off",  # the quiet-hours test sets hours around the real time
}


def test_dry_run_prints_the_exact_request_and_masks_credentials() -> None:
    result = run(
        ["trigger", "--dry-run", "+16175551212", "first_name=Zeke", "name=Zeke Smith"], ENV
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"POST https://studio.twilio.com/v1/Flows/{FLOW_SID}/Engagements" in out
    assert "To=+16175551212" in out
    assert f"From={SENDER}" in out
    assert 'Parameters={"first_name":"Zeke","name":"Zeke Smith"}' in out
    assert "content-type: application/x-www-form-urlencoded" in out
    assert "Authorization: Basic TWILIO_ACCOUNT_SID:TWILIO_AUTH_TOKEN" in out
    assert "nothing was sent" in out
    assert AUTH_TOKEN not in out + result.stderr


def test_dry_run_with_an_alias_and_api_key() -> None:
    env = {
        **ENV,
        "TWILIO_API_KEY": "SK" + "f" * 32,
        "TWILIO_API_SECRET": API_SECRET,
        "TWILIO_REGION": "ie1",
    }
    result = run(["trigger", "--dry-run", "survey", "+1 617 555 1212"], env)
    assert result.returncode == 0, result.stderr
    assert f"POST https://studio.ie1.twilio.com/v1/Flows/{SURVEY_SID}/Engagements" in result.stdout
    assert "TWILIO_API_KEY:TWILIO_API_SECRET" in result.stdout
    assert API_SECRET not in result.stdout + result.stderr


def test_dry_run_on_v2_targets_executions() -> None:
    result = run(["trigger", "--dry-run", "+16175551212"], {**ENV, "STUDIO_API": "v2"})
    assert result.returncode == 0, result.stderr
    assert f"POST https://studio.twilio.com/v2/Flows/{FLOW_SID}/Executions" in result.stdout


def test_destination_rules_apply_to_trigger() -> None:
    result = run(["trigger", "--dry-run", "+19005551234"], ENV)
    assert result.returncode == 2
    assert "premium-rate" in result.stderr
    assert "POST" not in result.stdout


def test_a_real_trigger_goes_through_the_same_rules_and_audit() -> None:
    result = run(["trigger", "+19005551234"], ENV)
    assert result.returncode == 2
    assert "premium-rate" in result.stderr
    assert '"outcome": "refused"' in result.stderr
    assert result.stdout == ""
    said = next(line for line in result.stderr.splitlines() if line.startswith("error:"))
    assert said.startswith("error: not started: the contact is")
    assert ":no_entry:" not in said  # the terminal gets text, not Slack's mrkdwn


def test_bad_command_exits_2_and_names_the_token() -> None:
    result = run(["trigger", "+16175551212", "a=1", "a=2"], ENV)
    assert result.returncode == 2
    assert "conflicting keys" in result.stderr
    assert "Usage:" in result.stderr


def test_missing_configuration_exits_2_listing_every_problem() -> None:
    result = run(["trigger", "--dry-run", "+16175551212"], {"TWILIO_AUTH_TOKEN": AUTH_TOKEN})
    assert result.returncode == 2
    for name in ["TWILIO_ACCOUNT_SID", "STUDIO_FLOW_SID", "STUDIO_FROM", ".env.example"]:
        assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert AUTH_TOKEN not in result.stderr


def test_help() -> None:
    result = run(["trigger", "help"], ENV)
    assert result.returncode == 0
    assert "key:=json" in result.stdout
    assert "survey" in result.stdout


@pytest.fixture(scope="module")
def prism_v1() -> Iterator[str]:
    with prism("twilio_studio_v1.yaml") as url:
        yield url


@pytest.mark.prism
def test_trigger_against_prism_prints_sid_status_and_link(prism_v1: str) -> None:
    result = run(
        ["trigger", "+16175551212", "first_name=Zeke"], {**ENV, "STUDIO_BASE_URL": prism_v1}
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    sid, status, link = first.split()
    assert '"outcome": "started"' in result.stderr  # the audit line, as for Slack's starts
    assert sid.startswith("FN")
    assert status == "active"
    assert link.startswith("https://console.twilio.com/")


def test_unreachable_studio_exits_1() -> None:
    from tests.peers import free_port

    env = {**ENV, "STUDIO_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    result = run(["trigger", "+16175551212"], env)
    assert result.returncode == 1
    assert "nothing started" in result.stderr


@pytest.mark.parametrize(
    ("words", "text"),
    [
        (["+16175551212", "name=Zeke Smith"], '+16175551212 name="Zeke Smith"'),
        (["+16175551212", 'q=say "hi"'], '+16175551212 q="say \\"hi\\""'),
        (["+16175551212", 'tags:=["a", "b"]'], '+16175551212 tags:=["a", "b"]'),
        (["survey", "+1 617 555 1212"], 'survey "+1 617 555 1212"'),
        (["+16175551212", "--from=+1 617 555 0100"], '+16175551212 --from="+1 617 555 0100"'),
        (["+16175551212", "--from", "+1 617 555 0100"], '+16175551212 --from "+1 617 555 0100"'),
    ],
)
def test_argv_to_text(words: list[str], text: str) -> None:
    assert argv_to_text(words) == text


def test_argv_to_text_round_trips_through_the_parser() -> None:
    from bot.domain.command import Defaults, EngageCommand
    from bot.domain.grammar import parse

    words = ["+1 617 555 1212", 'name=Zeke "Z" Smith', "--from", "+1 617 555 0100", "n:=[1, 2]"]
    command = parse(argv_to_text(words), Defaults(flow_sid=FLOW_SID, sender=SENDER))
    assert isinstance(command, EngageCommand)
    assert command.to == "+16175551212"
    assert command.sender == "+16175550100"
    assert command.parameters == {"name": 'Zeke "Z" Smith', "n": [1, 2]}


async def test_flows_lists_names_readiness_and_parameters() -> None:
    studio = FakeStudio()
    studio.flows[SURVEY_SID] = {"friendly_name": "Customer survey", "definition": defs.SMS_SURVEY}
    studio.flows[FLOW_SID] = {"definition": defs.NOT_REST_READY}
    async with serve(studio.app()) as url:
        code, out, err = await arun(["flows"], {**ENV, "STUDIO_BASE_URL": url})
    assert code == 0, err
    assert "survey · Customer survey" in out
    assert "needs first_name · may use plan, vip" in out
    assert "REST API trigger not connected" in out


async def test_trigger_applies_the_flow_checks_and_force_overrides_them() -> None:
    studio = FakeStudio()
    studio.flows[SURVEY_SID] = {"definition": defs.SMS_SURVEY}
    async with serve(studio.app()) as url:
        env = {**ENV, "STUDIO_BASE_URL": url}
        words = ["trigger", "survey", "+16175551212", "frist_name=Zeke"]
        dry = await arun([*words[:1], "--dry-run", *words[1:]], env)
        stopped = await arun(words, env)
        forced = await arun([*words, "--force"], env)
    assert dry[0] == 0
    assert "did you mean `first_name`?" in dry[1]
    assert stopped[0] == 2
    assert "did you mean `first_name`?" in stopped[2]
    assert forced[0] == 0, forced[2]
    assert len(studio.creates()) == 1


def test_dry_run_without_studio_says_the_checks_are_off() -> None:
    result = run(["trigger", "--dry-run", "+16175551212"], ENV)
    assert result.returncode == 0, result.stderr
    assert "flow checks: off" in result.stdout


def test_trigger_keeps_the_contacts_quiet_hours() -> None:
    """The terminal is held to the contact's clock too: quiet hours around the present
    moment in Boston refuse the start, saying when the window opens; nothing is sent
    (the Studio URL is a closed port: a request would fail differently)."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    boston = datetime.now(ZoneInfo("America/New_York"))
    quiet = f"{boston - timedelta(hours=1):%H:%M}-{boston + timedelta(hours=2):%H:%M}"
    env = {**ENV, "QUIET_HOURS": quiet, "STUDIO_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    result = run(["trigger", "+16175551212"], env)
    assert result.returncode == 2, result.stderr
    assert "quiet hours for the contact (QUIET_HOURS)" in result.stderr
    opens_in = re.search(r"\(America/New_York\), in (\d+) h(?: (\d+) min)?", result.stderr)
    assert opens_in is not None, result.stderr
    minutes = int(opens_in.group(1)) * 60 + int(opens_in.group(2) or 0)
    assert 118 <= minutes <= 121  # the window closes 2 h from now, to the minute
    assert "nothing was sent" in result.stderr
    scheduled = run(["trigger", "+16175551212", "--in", "2h"], env)
    assert scheduled.returncode == 2
    assert "--at and --in schedule starts from Slack" in scheduled.stderr


def test_help_gives_examples_that_work_in_a_shell() -> None:
    """Issue 37, 3: the Slack examples with the command swapped in lost their quotes in
    a shell. Every example line, split as a shell splits it, parses as a start."""
    import shlex

    from bot.domain.command import Defaults, EngageCommand
    from bot.domain.grammar import parse

    result = run(["trigger", "help"], ENV)
    assert result.returncode == 0
    examples = [
        line.strip().split("   (")[0]
        for line in result.stdout.splitlines()
        if line.strip().startswith("python -m bot trigger") and "+1" in line
    ]
    assert len(examples) >= 6
    defaults = Defaults({"survey": SURVEY_SID}, FLOW_SID, SENDER)
    for example in examples:
        words = [w for w in shlex.split(example)[4:] if w not in ("--dry-run", "--force")]
        assert words, example
        command = parse(argv_to_text(words), defaults)
        assert isinstance(command, EngageCommand), example
    assert "--at" not in result.stdout.split("In Slack only")[0]  # the terminal starts now
    assert "In Slack only: /engage status, /engage report, /engage scheduled" in result.stdout


@pytest.mark.parametrize("args", [["trigger", "--help"], ["flows", "--help"], ["trigger", "-h"]])
def test_help_flags_print_the_usage(args: list[str]) -> None:
    result = run(args, ENV)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m bot" in result.stdout


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["status", "FN" + "0" * 32], "/engage status FN… in Slack"),
        (["report"], "/engage report in Slack"),
        (["scheduled"], "/engage scheduled in Slack"),
    ],
)
def test_slack_only_commands_say_where_they_are(words: list[str], says: str) -> None:
    result = run(["trigger", *words], ENV)
    assert result.returncode == 2
    assert says in result.stderr
    assert "flows and status are Slack commands" not in result.stderr


async def test_trigger_flows_and_trigger_help_of_a_flow() -> None:
    studio = FakeStudio()
    studio.flows[SURVEY_SID] = {"friendly_name": "Customer survey", "definition": defs.SMS_SURVEY}
    async with serve(studio.app()) as url:
        env = {**ENV, "STUDIO_BASE_URL": url}
        listed = await arun(["trigger", "flows"], env)
        one = await arun(["trigger", "help", "survey"], env)
    assert listed[0] == 0, listed[2]
    assert "survey · Customer survey" in listed[1]
    assert one[0] == 0, one[2]
    assert "survey · Customer survey" in one[1]
    assert "Example: python -m bot trigger survey +16175551212 first_name=…" in one[1]
    assert "Usage:" not in one[1]  # that flow, not the whole help


def test_a_dry_run_refusal_says_nothing_was_sent() -> None:
    result = run(["trigger", "--dry-run", "+16175551212"], {**ENV, "ALLOWED_COUNTRIES": "GB"})
    assert result.returncode == 2
    assert result.stderr.strip().endswith("; nothing was sent")


async def test_the_terminal_names_the_flow_as_studio_does_once_it_read_it() -> None:
    """Issue 37, 4: the terminal printed ``survey (FW…)`` after the checks read the name."""
    studio = FakeStudio()
    studio.flows[SURVEY_SID] = {"friendly_name": "Customer survey", "definition": defs.SMS_SURVEY}
    async with serve(studio.app()) as url:
        env = {**ENV, "STUDIO_BASE_URL": url}
        code, out, err = await arun(["trigger", "survey", "+16175551212", "first_name=Zeke"], env)
    assert code == 0, err
    assert "  flow:    survey · Customer survey" in out
