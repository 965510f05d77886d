"""Holes found by trying to misuse the new surfaces (issue 21), through signed requests:
SIGTERM during a bulk run, numbers typed badly in the audit, floods of forged deliveries.
The CSV findings are in ``test_bulk_files_e2e``, Slack's 429s in ``test_rate_limits_e2e``,
the form and Home tab in ``test_forms_e2e``."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from bot.infra import workers
from tests.harness import buttons, harness
from tests.peers import FakeStudio, free_port
from tests.test_bulk_e2e import preview, until
from tests.test_follow_e2e import FOLLOW, cloud_event, post_events


async def test_sigterm_during_a_bulk_run_stops_taking_commands_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio = FakeStudio(latency=0.5)
    contacts = " ".join(f"+1617555121{i}" for i in range(6))
    async with harness(monkeypatch, studio, STUDIO_RATE_LIMIT="1/second") as run:
        shown = await preview(run, contacts)
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: studio.creates())  # a paced row is in flight
        draining = asyncio.create_task(run.services.drain(10))  # SIGTERM
        await until(lambda: not run.services.tasks.accepting)
        assert not draining.done()  # still winding down the row in flight
        async with httpx.AsyncClient() as http:
            health = await http.get(f"{run.bot_url}/readyz")
        ack = (await run.command("+16175559999"))[0].json()
        flows = (await run.command("survey +16175559998 +16175559997"))[0].json()
        await draining
    assert health.status_code == 503
    assert "restarting" in ack["text"]
    assert "restarting" in flows["text"]
    assert all(c["form"]["To"] not in ("+16175559999", "+16175559998") for c in studio.creates())


@pytest.mark.parametrize(
    "typed", ["+1_617_555_1212", "+16175551212abc", "x_16175551212", "+1617555-1212zz"]
)
async def test_a_number_typed_badly_is_masked_in_the_audit(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, typed: str
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    async with harness(monkeypatch, FakeStudio()) as run:
        await run.command(f"{typed} first_name=Zeke")
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "bot.audit"]
    assert line["outcome"] == "invalid"
    digits = "".join(ch for ch in line["detail"] if ch.isdigit())
    assert "617555" not in digits  # at most the last four of the number show
    assert "1212" in line["detail"]


async def test_a_flood_of_forged_deliveries_is_summarised_not_logged_line_by_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.app.server")
    async with harness(monkeypatch, FakeStudio(), **FOLLOW) as run:
        for _ in range(300):
            response = await post_events(run, [cloud_event("execution.ended")], token="forged")
            assert response.status_code == 401
    lines = [r.getMessage() for r in caplog.records if r.name == "bot.app.server"]
    assert lines == ["refused an Event Streams delivery: bad signature"]


async def test_with_redis_down_the_bulk_worker_logs_the_outage_once_not_every_round(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(workers, "OUTAGE_PAUSE", 0.02)  # many attempts in the time below
    caplog.set_level(logging.DEBUG)
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    async with harness(monkeypatch, FakeStudio(), REDIS_URL=dead) as run:
        bulk = run.services.bulk
        assert bulk is not None
        await asyncio.sleep(1.0)
        attempts = bulk.worker.outage.failures
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert attempts >= 10  # the worker kept trying
    assert len([r for r in errors if r.name == "bot.engage.bulk.worker"]) == 1
    assert not any(r.exc_info for r in errors)  # no traceback per attempt
