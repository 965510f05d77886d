"""Operable in production (issue 36, in part): ``/metrics`` in Prometheus' text format
(parsed by the client library's own parser), its counters moving with their events, no
label carrying a number or a user ID, ``METRICS_TOKEN``; ``/healthz`` (alive) apart from
``/readyz`` (ready: not draining, Slack's identity known, Redis answering);
``LOG_FORMAT=json``."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.infra.audit import LogFormatter
from bot.infra.logs import about
from tests.harness import Harness, harness, wired
from tests.peers import (
    ENGAGEMENT_SID,
    METRICS_TOKEN,
    FakeSlack,
    FakeStudio,
    bot_env,
    free_port,
    redis_server,
    serve,
)
from tests.test_follow_e2e import EVENTS_URL, cloud_event, post_events
from tests.test_server_process import running_bot, sigterm, wait_healthy


async def scrape(
    run: Harness, token: str | None = None
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{run.bot_url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, found), v in samples.items()
        if n == name and all((k, w) in found for k, w in labels.items())
    )


async def test_metrics_move_with_their_events_and_carry_no_number_or_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with harness(monkeypatch, FakeStudio(), TWILIO_EVENTS_URL=EVENTS_URL) as run:
        before = await scrape(run)
        await run.command("+16175551212 first_name=Zeke")
        await run.slack.wait_for_replies(1)
        await run.idle()
        assert run.services.slack is not None
        await run.services.slack.auth_test()  # one of the bot's own Web API calls
        await post_events(run, [cloud_event("execution.ended")], token="forged")
        await run.idle()
        after = await scrape(run)
        async with httpx.AsyncClient() as http:
            text = (await http.get(f"{run.bot_url}/metrics")).text

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved("engage_outcomes_total", outcome="started", surface="slack", flow="onboarding") == 1
    )
    assert moved("engage_studio_answers_total", method="create", status="201") == 1
    assert moved("engage_studio_request_seconds_count", method="create") == 1
    assert moved("engage_slack_calls_total", method="auth.test", result="ok") == 1
    assert moved("engage_ack_seconds_count") == 1  # the one slash command
    assert moved("engage_event_deliveries_total", result="refused", reason="signature") == 1
    assert moved("engage_pace_wait_seconds_count", pace="studio") == 1
    labels = re.findall(r'\w+="([^"]*)"', text)
    assert labels
    assert not [v for v in labels if re.search(r"\d{7,}", v)]  # no phone number
    assert not [v for v in labels if re.fullmatch(r"[UW][A-Z0-9]{6,}", v)]  # no user ID


async def test_a_refusal_is_counted_by_its_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(), ALLOWED_COUNTRIES="GB") as run:
        before = await scrape(run)
        await run.command("+16175551212")
        await run.idle()
        after = await scrape(run)
    assert (
        value(after, "engage_outcomes_total", outcome="refused", rule="ALLOWED_COUNTRIES")
        - value(before, "engage_outcomes_total", outcome="refused", rule="ALLOWED_COUNTRIES")
        == 1
    )


async def test_metrics_token_guards_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    token = METRICS_TOKEN  # in the suite's leak check: never in a log line
    async with harness(monkeypatch, FakeStudio(), METRICS_TOKEN=token) as run:
        async with httpx.AsyncClient() as http:
            bare = await http.get(f"{run.bot_url}/metrics")
            wrong = await http.get(
                f"{run.bot_url}/metrics", headers={"Authorization": "Bearer nope"}
            )
        samples = await scrape(run, token)
    assert bare.status_code == 401
    assert wrong.status_code == 401
    assert samples


async def test_ready_needs_slacks_identity_and_redis_and_not_draining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with redis_server() as server:
        studio, slack = FakeStudio(), FakeSlack()
        async with wired(monkeypatch, studio, slack, env={"REDIS_URL": server.url}) as run:
            await run.idle()
            async with httpx.AsyncClient() as http:
                ready = await http.get(f"{run.bot_url}/readyz")
                os.kill(server.proc.pid, signal.SIGSTOP)  # Redis stops answering
                try:
                    stalled = await http.get(f"{run.bot_url}/readyz")
                    alive = await http.get(f"{run.bot_url}/healthz")
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)
                back = await http.get(f"{run.bot_url}/readyz")
                draining = asyncio.create_task(run.services.drain(5))
                await asyncio.sleep(0.1)
                drained = await http.get(f"{run.bot_url}/readyz")
                await draining
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"accepting": True, "slack_identity": True, "redis": True}
    assert stalled.status_code == 503
    assert stalled.json()["checks"]["redis"] is False
    assert alive.status_code == 200
    assert back.status_code == 200
    assert drained.status_code == 503
    assert drained.json()["checks"]["accepting"] is False


def test_json_log_lines_say_what_they_concern() -> None:
    record = logging.LogRecord(
        "bot.slack.follow", logging.WARNING, __file__, 1, "edit of %s refused", ("FN1",), None
    )
    with about(run="FN" + "1" * 32, bulk_run="3f9a"):
        line = json.loads(LogFormatter(json_lines=True).format(record))
    assert line["level"] == "warning"
    assert line["logger"] == "bot.slack.follow"
    assert line["message"] == "edit of FN1 refused"
    assert line["run"] == "FN" + "1" * 32
    assert line["bulk_run"] == "3f9a"
    text = LogFormatter().format(record)
    assert "WARNING bot.slack.follow: edit of FN1 refused" in text
    audit_line = logging.LogRecord(
        "bot.audit", logging.INFO, __file__, 1, json.dumps({"outcome": "started"}), (), None
    )
    with about(run="FN" + "2" * 32):
        audited = json.loads(LogFormatter(json_lines=True).format(audit_line))
    assert audited == {
        "outcome": "started",
        "level": "info",
        "logger": "bot.audit",
        "run": "FN" + "2" * 32,
    }
    assert json.loads(LogFormatter().format(audit_line)) == {"outcome": "started"}


async def test_a_process_with_log_format_json_logs_json_lines() -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        port = free_port()
        env = bot_env(studio_url, slack_url, PORT=str(port), LOG_FORMAT="json")
        async with running_bot(env) as proc:
            await wait_healthy(f"http://127.0.0.1:{port}", proc)
            output = await sigterm(proc)
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]  # every line is JSON
    assert any(p.get("message", "").startswith("listening on") for p in parsed)


async def test_queue_depths_are_sampled(monkeypatch: pytest.MonkeyPatch) -> None:
    async with harness(monkeypatch, FakeStudio(), QUIET_HOURS="off") as run:
        await run.command("+16175551212 --in 1h")
        await run.command("+16175551213 --in 2h")
        await run.idle()
        sampler = run.services.sampler
        assert sampler is not None
        await sampler.sample()
        samples = await scrape(run)
    assert value(samples, "engage_queue_depth", queue="schedules_waiting") == 2
    assert value(samples, "engage_queue_depth", queue="schedules_due") == 0  # not yet
    assert value(samples, "engage_queue_depth", queue="runs_followed_for_records") == 0


async def test_a_429_and_its_retry_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    limited = (
        429,
        {"code": 20429, "message": "Too Many Requests", "status": 429},
        {"Retry-After": "0"},
    )
    async with harness(monkeypatch, FakeStudio(answers=[limited])) as run:
        before = await scrape(run)
        await run.command("+16175551212")
        await run.slack.wait_for_replies(1)
        await run.idle()
        after = await scrape(run)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("engage_studio_answers_total", method="create", status="429") == 1
    assert moved("engage_studio_answers_total", method="create", status="201") == 1
    assert moved("engage_studio_retries_total", reason="429") == 1


async def test_a_store_outage_and_its_fallbacks_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with redis_server() as server:
        async with wired(
            monkeypatch, FakeStudio(), FakeSlack(), env={"REDIS_URL": server.url}
        ) as run:
            await run.idle()
            before = await scrape(run)
            os.kill(server.proc.pid, signal.SIGSTOP)
            try:
                # a look at a run: its limit answers from memory meanwhile (a start is
                # refused instead: the opt-out list cannot be read, tests/test_consent_e2e.py)
                await run.command(f"status {ENGAGEMENT_SID}")
                await asyncio.sleep(2.0)  # the loops meet the outage too
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            await run.idle()
            after = await scrape(run)
    assert value(after, "engage_store_fallbacks_total") > value(
        before, "engage_store_fallbacks_total"
    )
    assert value(after, "engage_store_outages_total") > value(before, "engage_store_outages_total")


async def test_metrics_can_be_turned_off() -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        port = free_port()
        env = bot_env(studio_url, slack_url, PORT=str(port), METRICS_ENABLED="false")
        async with running_bot(env) as proc, httpx.AsyncClient() as http:
            await wait_healthy(f"http://127.0.0.1:{port}", proc)
            off = await http.get(f"http://127.0.0.1:{port}/metrics")
            await sigterm(proc)
    assert off.status_code == 404


def test_the_surface_label_comes_from_what_acted() -> None:
    from bot.domain.caller import Caller
    from bot.infra.audit import surface

    assert surface(Caller("U1")) == "slack"
    assert surface(Caller("terminal", terminal=True)) == "terminal"
    assert surface(Caller("U1", via="workflow Wx1")) == "workflow"
    assert surface(Caller("U1", via="schedule 0a1b")) == "schedule"
    assert surface(Caller("U1", via="bulk run 3f9a")) == "bulk"


async def test_ready_comes_back_when_slack_answers_after_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """auth.test failed at start-up (Slack unreachable): /readyz asks again, so the bot
    does not stay out of rotation for ever."""
    from bot.slack import identity as slack_identity

    monkeypatch.setattr(slack_identity, "RETRY_SECONDS", 0.0)
    studio, slack = FakeStudio(), FakeSlack(down={"auth.test"})
    async with wired(monkeypatch, studio, slack) as run:
        await run.idle()
        async with httpx.AsyncClient() as http:
            unknown = await http.get(f"{run.bot_url}/readyz")
            slack.down.clear()  # Slack answers again
            ready = await http.get(f"{run.bot_url}/readyz")
    assert unknown.status_code == 503
    assert unknown.json()["checks"]["slack_identity"] is False
    assert ready.status_code == 200, ready.text
