"""Quiet hours and scheduled starts (issue 25), end to end through signed HTTP, with a
clock the tests control: the contact's window, *Schedule for then*, an admin's *Start
now anyway*, ``--at``/``--in``, ``/engage scheduled`` and Cancel, the form's *When*,
the Home tab; a restart with a real Redis between scheduling and the due time, two
processes racing for the same due schedules, refusal at fire time, bulk rows waiting
for their morning."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from bot.domain.schedule import Scheduled
from bot.engage.bulk import worker as worker_module
from bot.infra.workers import Workers
from bot.state.jobs import MemoryJobs, RedisJobs
from bot.state.store import RedisStore
from tests.harness import Harness, buttons, text_of, wired
from tests.peers import FakeSlack, FakeStudio, RedisServer
from tests.test_bulk_e2e import rounds_pass, until
from tests.test_forms_e2e import flow, open_home, submission, text

BOSTON = "+16175551212"  # America/New_York
HONOLULU = "+18085551212"  # Pacific/Honolulu
NIGHT_IN_BOSTON = datetime(2026, 12, 2, 3, 0, tzinfo=UTC).timestamp()  # 22:00 EST
MORNING_IN_BOSTON = datetime(2026, 12, 2, 15, 0, tzinfo=UTC).timestamp()  # 10:00 EST
QUIET = {"QUIET_HOURS": "21:00-08:00"}


class Clock:
    """The wall clock as the bot reads it for quiet hours and schedules."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def controlled(run: Harness, clock: Clock) -> Harness:
    run.services.engager.clock.now = clock
    return run


def schedules_of(run: Harness) -> Workers:
    """The schedules' loop in ``run``'s process."""
    assert run.services.schedules is not None
    return run.services.schedules.workers


def bulk_of(run: Harness) -> Workers:
    """The bulk worker's loop in ``run``'s process."""
    assert run.services.bulk is not None
    return run.services.bulk.worker.workers


async def interact(run: Harness, payload: dict[str, Any], user: str = "U0CALLER") -> Any:
    payload = {"team": {"id": "T0001"}, "user": {"id": user}, **payload}
    response, _ = await run.post(urlencode({"payload": json.dumps(payload)}))
    assert response.status_code == 200
    return response


def dms(slack: FakeSlack, user: str) -> list[dict[str, Any]]:
    return [p for p in slack.posts if p.get("channel") == f"D{user}"]


async def schedule_ids(run: Harness) -> list[str]:
    schedules = run.services.schedules
    assert schedules is not None
    return [item.id for item in await schedules.waiting()]


# --- quiet hours -------------------------------------------------------------------------


async def test_a_contact_in_quiet_hours_is_not_reached_and_is_offered_their_morning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(NIGHT_IN_BOSTON)
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, clock)
        response, _ = await run.command(f"{BOSTON} first_name=Zeke")
        prompt = response.json()
        said = text_of(prompt)
        assert "quiet hours now for +1 617-555-1212" in said
        assert "08:00 EST (America/New_York), in 10 h" in said
        assert "Nothing was sent" in said
        offered = buttons(prompt)
        assert set(offered) == {"engage_schedule", "engage_cancel"}  # not an admin
        await run.idle()
        assert studio.creates() == []

        # Schedule for then: kept for 08:00 in Boston, said in Boston's time
        await run.click("engage_schedule", offered["engage_schedule"]["value"], n=1)
        await until(lambda: len(slack.replies) >= 2)
        confirmation = next(r for r in slack.replies if "Scheduled" in text_of(r))
        assert "08:00 EST (America/New_York), in 10 h" in text_of(confirmation)
        assert "lost if the bot restarts" in text_of(confirmation)  # no Redis here
        assert studio.creates() == []

        clock.now += 10 * 3600 - 5  # five seconds before the window: still nothing
        await rounds_pass(schedules_of(run))
        assert studio.creates() == []
        clock.now += 6
        await until(lambda: len(studio.creates()) == 1)
        (create,) = studio.creates()
        assert create["form"]["To"] == BOSTON
        assert json.loads(create["form"]["Parameters"]) == {"first_name": "Zeke"}
        # the card in the channel, the starter mentioned in its thread
        await until(lambda: len(slack.posts) >= 2)
        card, note = slack.posts[0], slack.posts[1]
        assert card["channel"] == "C0CHANNEL"
        assert "thread_ts" not in card
        assert note["thread_ts"] == card["ts"]
        assert "<@U0CALLER> this run was scheduled by you" in note["text"]
        assert await schedule_ids(run) == []


async def test_an_admin_may_start_now_anyway_and_it_is_audited(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.audit")
    studio, slack = FakeStudio(), FakeSlack()
    env = {**QUIET, "ADMIN_SLACK_USERS": "U0CALLER"}
    async with wired(monkeypatch, studio, slack, env=env) as running:
        run = controlled(running, Clock(NIGHT_IN_BOSTON))
        response, _ = await run.command(BOSTON)
        offered = buttons(response.json())
        now = offered["engage_now_anyway"]
        assert now["confirm"]["title"]["text"] == "Start in quiet hours?"
        await run.click("engage_now_anyway", now["value"], n=2)
        await until(lambda: len(studio.creates()) == 1)
    audited = [json.loads(r.message) for r in caplog.records if r.name == "bot.audit"]
    overridden = [a for a in audited if a["outcome"] == "quiet_hours_overridden"]
    assert len(overridden) == 1
    assert "window opens" in overridden[0]["detail"]
    assert [a["outcome"] for a in audited].count("started") == 1


async def test_only_admins_may_start_in_quiet_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-admin who crafts the admin's button value gets a refusal, nothing sent."""
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(NIGHT_IN_BOSTON))
        response, _ = await run.command(BOSTON)
        token = buttons(response.json())["engage_schedule"]["value"]
        answer = await run.click("engage_now_anyway", token, n=1)
        assert "only admins (ADMIN_SLACK_USERS)" in text_of(answer)
        await run.idle()
        assert studio.creates() == []


async def test_a_flow_exempt_by_configuration_is_not_held(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.peers import FLOW_SID, SURVEY_SID

    studio, slack = FakeStudio(), FakeSlack()
    env = {**QUIET, "STUDIO_FLOWS": f"onboarding={FLOW_SID},codes={SURVEY_SID};quiet=off"}
    async with wired(monkeypatch, studio, slack, env=env) as running:
        run = controlled(running, Clock(NIGHT_IN_BOSTON))
        await run.command(f"codes {BOSTON}")
        await until(lambda: len(studio.creates()) == 1)
        response, _ = await run.command(f"onboarding {BOSTON}")
        assert "quiet hours" in text_of(response.json())
        await run.idle()
        assert len(studio.creates()) == 1


# --- --at, --in, /engage scheduled, Cancel -----------------------------------------------


async def test_at_and_in_schedule_list_and_cancel(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(MORNING_IN_BOSTON)
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, clock)
        response, _ = await run.command(f"{BOSTON} --in 2h")
        assert "Scheduling" in text_of(response.json())
        (confirmation,) = await slack.wait_for_replies(1)
        assert "12:00 EST (America/New_York), in 2 h" in text_of(confirmation)
        cancel = buttons(confirmation)["engage_unschedule"]
        await run.command(f'{HONOLULU} --at "11:00"')  # Honolulu's 11:00: 21:00 UTC
        await slack.wait_for_replies(2)
        assert "11:00 HST (Pacific/Honolulu), in 6 h" in text_of(slack.replies[1])

        await run.command("scheduled")
        listed = (await slack.wait_for_replies(3))[2]
        assert "Your scheduled starts* (2)" in text_of(listed)
        assert text_of(listed).index("617") < text_of(listed).index("808")  # soonest first
        await run.command("scheduled", user_id="U0OTHER")
        assert "You have no scheduled starts" in text_of((await slack.wait_for_replies(4))[3])

        other = await run.click("engage_unschedule", cancel["value"], user="U0OTHER", n=5)
        assert "Only whoever scheduled it, or an admin" in text_of(other)
        mine = await run.click("engage_unschedule", cancel["value"], n=6)
        assert "Cancelled" in text_of(mine)
        again = await run.click("engage_unschedule", cancel["value"], n=7)
        assert "Too late to cancel: it has already been cancelled" in text_of(again)

        clock.now += 7 * 3600
        await until(lambda: len(studio.creates()) == 1)
        await rounds_pass(schedules_of(run))  # the cancelled one never goes
        assert [c["form"]["To"] for c in studio.creates()] == [HONOLULU]


async def test_a_time_in_quiet_hours_is_refused_with_the_next_allowed_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(MORNING_IN_BOSTON))
        response, _ = await run.command(f"{BOSTON} --at 23:00")
        said = text_of(response.json())
        assert "quiet hours at Wed 2 Dec 23:00 EST" in said  # the time asked for, with its day
        assert "window opens at Thu 3 Dec 08:00 EST" in said
        token = buttons(response.json())["engage_schedule"]["value"]
        await run.click("engage_schedule", token, n=1)
        await until(lambda: any("Scheduled" in text_of(r) for r in slack.replies))
        (item,) = await run.services.schedules.waiting()
        assert item.due == datetime(2026, 12, 3, 13, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ('--at "2027-06-01 09:00"', "more than 30 days ahead (SCHEDULE_MAX_DAYS)"),
        ('--at "2026-12-01 09:00"', "has passed"),
        ("--in 31d", "more than 30 days ahead"),
    ],
)
async def test_a_time_past_or_too_far_is_refused(
    monkeypatch: pytest.MonkeyPatch, typed: str, says: str
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(MORNING_IN_BOSTON))
        response, _ = await run.command(f"{BOSTON} {typed}")
        assert says in text_of(response.json())
        assert "Not scheduled" in text_of(response.json())
        assert await schedule_ids(run) == []


async def test_the_form_schedules_with_its_when_field(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.peers import FLOW_SID

    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(MORNING_IN_BOSTON))
        at = int(MORNING_IN_BOSTON + 3600)
        values = {
            "flow": flow(FLOW_SID),
            "contact": text("contact", BOSTON),
            "when": {"when": {"type": "datetimepicker", "selected_date_time": at}},
        }
        response = await interact(run, submission(values, run))
        assert response.text in ("", "null")
        await until(lambda: any("Scheduled" in text_of(r) for r in slack.replies))
        (item,) = await run.services.schedules.waiting()
        assert item.due == at
        assert item.channel == "C0CHANNEL"
        # a time in the contact's quiet hours comes back on the When field... as a prompt
        night = int(NIGHT_IN_BOSTON + 86400)
        values["when"] = {"when": {"type": "datetimepicker", "selected_date_time": night}}
        await interact(run, submission(values, run))
        await until(lambda: any("window opens" in text_of(r) for r in slack.replies))
        # a time past is refused on the field, nothing kept
        values["when"] = {"when": {"type": "datetimepicker", "selected_date_time": at - 7200}}
        refused = (await interact(run, submission(values, run))).json()
        assert refused["response_action"] == "errors"
        assert "has passed" in refused["errors"]["when"]
        assert studio.creates() == []


async def test_the_home_tab_lists_your_schedules_with_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(MORNING_IN_BOSTON))
        await run.command(f"{BOSTON} --in 90m")
        await slack.wait_for_replies(1)
        await open_home(run)
        (home,) = await slack.wait_for_views(1)
        blocks = home["view"]["blocks"]
        assert "Your scheduled starts" in json.dumps(blocks)
        (cancel,) = [
            b["accessory"]
            for b in blocks
            if b.get("accessory", {}).get("action_id") == "engage_unschedule"
        ]
        await interact(
            run,
            {"type": "block_actions", "actions": [cancel], "container": {"type": "view"}},
        )
        await slack.wait_for_views(2)
        redrawn = slack.views[1]["view"]
        assert "Cancelled" in json.dumps(redrawn)
        assert "Your scheduled starts" not in json.dumps(redrawn)
        assert await schedule_ids(run) == []


# --- durable and exactly once --------------------------------------------------------------


async def test_schedules_survive_a_restart_and_are_checked_again_when_they_fire(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    """Scheduled in one process; the process stops (a deploy); another, configured to
    allow only U0CALLER now, fires them: U0CALLER's starts with its card and thread
    mention; U0OTHER's is refused and U0OTHER is told in a DM."""
    clock = Clock(MORNING_IN_BOSTON)
    studio, slack = FakeStudio(), FakeSlack()
    env = {**QUIET, "REDIS_URL": redis.url.replace("/0", "/8")}
    async with wired(monkeypatch, studio, slack, env=env) as first:
        controlled(first, clock)
        await first.command(f"{BOSTON} --in 1h")
        await first.command("+16175551213 --in 1h", user_id="U0OTHER")
        await slack.wait_for_replies(2)
        assert all("lost if the bot restarts" not in text_of(r) for r in slack.replies)
        await first.idle()
        await first.services.drain(1)
    assert studio.creates() == []
    clock.now += 3601
    env = {**env, "ALLOWED_SLACK_USERS": "U0CALLER"}
    async with wired(monkeypatch, studio, slack, env=env) as second:
        controlled(second, clock)
        await until(lambda: len(studio.creates()) == 1 and dms(slack, "U0OTHER"))
        await until(lambda: any(p.get("thread_ts") for p in slack.posts))
    assert studio.creates()[0]["form"]["To"] == BOSTON
    (told,) = dms(slack, "U0OTHER")
    assert "was not started at its time" in told["text"]
    assert "ALLOWED_SLACK_USERS" in told["text"]
    assert "Nothing was sent" in told["text"]


async def test_two_processes_fire_each_due_schedule_once(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    clock = Clock(MORNING_IN_BOSTON)
    studio, slack = FakeStudio(latency=0.05), FakeSlack()
    env = {
        **QUIET,
        "REDIS_URL": redis.url.replace("/0", "/9"),
        "STUDIO_RATE_LIMIT": "50/second",
        "USER_RATE_LIMIT": "100/minute",
    }
    contacts = [f"+1617555{1200 + i}" for i in range(12)]
    async with (
        wired(monkeypatch, studio, slack, env=env) as first,
        wired(monkeypatch, studio, slack, env=env) as second,
    ):
        for i, contact in enumerate(contacts):  # a channel each: Slack's one post a second
            await controlled(first, clock).command(f"{contact} --in 10m", channel_id=f"C0CH{i}")
        controlled(second, clock)
        await until(lambda: len(slack.replies) == len(contacts))
        assert len(await schedule_ids(first)) == len(contacts)
        clock.now += 601
        await until(lambda: len(studio.creates()) == len(contacts), within=20)
        await rounds_pass(schedules_of(first), schedules_of(second))  # more rounds in both
    to = [c["form"]["To"] for c in studio.creates()]
    assert sorted(to) == sorted(contacts)  # every one, once


async def test_a_schedule_claimed_by_a_process_that_stopped_is_unknown_never_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, Clock(MORNING_IN_BOSTON))
        schedules = run.services.schedules
        assert schedules is not None
        await run.command(f"{BOSTON} --in 1h")
        await slack.wait_for_replies(1)
        (schedule_id,) = await schedule_ids(run)
        # another process claimed it and marked it sending, then died before the answer
        store = run.services.store
        await store.add(f"sched:{schedule_id}:claim", "deadbeef", 3600)
        await store.hset(f"sched:{schedule_id}", {"state": "sending"}, 3600)
        await schedules.fire(schedule_id)
        item = await schedules.get(schedule_id)
        assert isinstance(item, Scheduled)
        assert item.state == "unknown"
        await until(lambda: dms(slack, "U0CALLER"))  # told in a task of its own
        (told,) = dms(slack, "U0CALLER")
        assert "may or may not have started" in told["text"]
        cancelled = await run.click("engage_unschedule", schedule_id, n=2)  # too late, and says why
        assert "its outcome unknown" in text_of(cancelled)
        assert studio.creates() == []


@pytest.mark.parametrize("kind", ["memory", "redis"])
async def test_jobs_for_later_wake_once_when_due(redis: RedisServer, kind: str) -> None:
    if kind == "memory":
        jobs: Any = MemoryJobs()
        store = None
    else:
        store = RedisStore(redis.url.replace("/0", "/10"))
        await store.redis.flushdb()
        jobs = RedisJobs(store, "me", "test:jobs")
    await jobs.later({"a": 100.0, "b": 200.0, "c": 300.0})
    assert await jobs.waiting() == (3, 100.0)
    assert await jobs.wake(99.0) == 0
    assert await jobs.wake(200.0) == 2
    assert await jobs.waiting() == (1, 300.0)
    assert await jobs.wake(250.0) == 0  # woken once: not again
    taken = [await jobs.take(), await jobs.take(), await jobs.take()]
    assert [t[1] for t in taken if t] == ["a", "b"]
    await jobs.unlater("c")
    assert await jobs.wake(1000.0) == 0
    if store is not None:
        await store.aclose()


# --- bulk runs ------------------------------------------------------------------------------


async def test_bulk_rows_in_quiet_hours_wait_for_their_morning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At 22:00 in Boston and 17:00 in Honolulu: Honolulu's row goes now; Boston's waits
    for 08:00 there, shown in the preview and the progress message; then it goes."""
    monkeypatch.setattr(worker_module, "IDLE_SECONDS", 0.2)
    clock = Clock(NIGHT_IN_BOSTON)
    studio, slack = FakeStudio(), FakeSlack()
    env = {**QUIET, "FOLLOW_MINUTES": "60"}
    async with wired(monkeypatch, studio, slack, env=env) as running:
        run = controlled(running, clock)
        await run.command(f"{BOSTON} {HONOLULU}")
        (preview,) = await slack.wait_for_replies(1)
        said = text_of(preview)
        assert "1 row(s) fall in their contact's quiet hours" in said
        assert "1 wait for their contact's quiet hours to end" in said
        await run.click("bulk_start", buttons(preview)["bulk_start"]["value"], n=2)
        await until(lambda: len(studio.creates()) == 1)
        assert studio.creates()[0]["form"]["To"] == HONOLULU
        await until(lambda: any("1 waiting for their morning" in text_of(p) for p in slack.posts))
        await rounds_pass(bulk_of(run))
        assert len(studio.creates()) == 1
        clock.now += 10 * 3600 + 1  # 08:00:01 in Boston
        await until(lambda: len(studio.creates()) == 2)
        assert studio.creates()[1]["form"]["To"] == BOSTON
        await until(lambda: slack.uploads)  # the run finished: its results file


async def test_a_bulk_run_started_at_a_time_goes_at_each_contacts_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--at 09:00`` is 09:00 for each contact: Honolulu's (19:00 UTC) comes first,
    Boston's (14:00 UTC the next day) after."""
    monkeypatch.setattr(worker_module, "IDLE_SECONDS", 0.2)
    clock = Clock(MORNING_IN_BOSTON)  # 10:00 in Boston, 05:00 in Honolulu
    studio, slack = FakeStudio(), FakeSlack()
    async with wired(monkeypatch, studio, slack, env=QUIET) as running:
        run = controlled(running, clock)
        await run.command(f"{BOSTON} {HONOLULU} --at 09:00")
        (preview,) = await slack.wait_for_replies(1)
        assert "Starts at" in text_of(preview)
        assert "Scheduled." in text_of(preview)
        await run.click("bulk_start", buttons(preview)["bulk_start"]["value"], n=2)
        await rounds_pass(bulk_of(run))
        assert studio.creates() == []
        clock.now = datetime(2026, 12, 2, 19, 0, 1, tzinfo=UTC).timestamp()
        await until(lambda: len(studio.creates()) == 1)
        assert studio.creates()[0]["form"]["To"] == HONOLULU
        clock.now = datetime(2026, 12, 3, 14, 0, 1, tzinfo=UTC).timestamp()
        await until(lambda: len(studio.creates()) == 2)
        assert studio.creates()[1]["form"]["To"] == BOSTON
