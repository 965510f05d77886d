"""A bulk run's plan, tally and progress (bot.domain.bulk_plan): pure, every branch."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from bot.domain.bulk_input import Row
from bot.domain.bulk_plan import Ends, Plan, Progress, bar, end_moves, ends_from, merged, plan
from bot.domain.command import EngageCommand
from bot.domain.contact_clock import After, AtClock, ContactClock, Instant, QuietHours
from bot.domain.policy import Policy

FLOW = "FW" + "a" * 32
SENDER = "+16175550100"
BOSTON, HONOLULU, LONDON = "+16175551212", "+18085551212", "+442079460958"
NOON_UTC = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()  # 07:00 Boston, 02:00 Honolulu
NIGHTS = QuietHours(time(21, 0), time(8, 0))


def row(number: int, to: str | None, **parameters: object) -> Row:
    return Row(number, to or "junk", to, dict(parameters), None if to else "not a number")


def made(rows: list[Row], **options: object) -> Plan:
    settings: dict[str, object] = {
        "flow_sid": FLOW,
        "flow_alias": "survey",
        "sender": SENDER,
        "shared": {},
        "policy": Policy(),
        "info": None,
        "per_second": 2.0,
    }
    settings.update(options)
    return plan(rows, **settings)  # type: ignore[arg-type]


# -- ends_from: the second tally, from the counts its ends moved ----------------------


def ends_of(states: list[tuple[str, str]], started: int, every: float = 0.0) -> Ends:
    """The tally of these ends, as the counts they moved say it."""
    counts: dict[str, int] = {}
    for state, widget in states:
        for name, n in end_moves(state, widget).items():
            counts[name] = counts.get(name, 0) + n
    return ends_from(counts, started, every)


def test_ends_are_counted_by_widget_most_first_then_by_name() -> None:
    states = [
        ("ended", "thanks"),
        ("ended", "no_reply"),
        ("ended", "thanks"),
        ("ended", "a_widget"),
        ("ended", "no_reply"),
        ("ended", ""),  # ended, its widget unknown
        ("failed", "send"),
        ("failed", ""),
        ("unfollowed", ""),
    ]
    ends = ends_of(states, started=12, every=60.0)
    assert ends == Ends(
        ended=(("no_reply", 2), ("thanks", 2), ("?", 1), ("a_widget", 1)),
        failed=2,
        active=3,  # 12 started, 9 ended one way or another
        unfollowed=1,
        every=60.0,
    )
    assert ends.ended_count == 6


def test_ends_with_more_records_than_starts_are_never_negative() -> None:
    assert ends_of([("ended", "x")] * 3, started=2).active == 0
    assert ends_of([], started=0) == Ends()
    assert ends_of([("active", "")], started=1) == Ends(active=0)  # neither ended nor failed


# -- plan: every row sorted ----------------------------------------------------------


def test_rows_are_sorted_and_merged_over_the_shared_parameters() -> None:
    rows = [
        row(1, BOSTON, first_name="Zeke"),
        row(2, None),
        row(3, BOSTON),  # the same contact again
        row(4, HONOLULU, plan="own"),
    ]
    result = made(rows, shared={"plan": "gold", "team": "ops"}, per_second=4.0)
    assert [r.number for r in result.valid] == [1, 4]
    assert [r.number for r in result.invalid] == [2]
    assert [r.number for r in result.duplicates] == [3]
    assert result.valid[0].parameters == {"plan": "gold", "team": "ops", "first_name": "Zeke"}
    assert result.valid[1].parameters == {"plan": "own", "team": "ops"}  # its own wins
    assert result.seconds == 0.5  # two rows at four a second
    assert result.dues == {}
    assert result.waiting == []
    assert (result.flow_sid, result.flow_alias, result.flow_name) == (FLOW, "survey", None)
    assert result.command(result.valid[0]) == EngageCommand(
        FLOW, "survey", BOSTON, SENDER, {"plan": "gold", "team": "ops", "first_name": "Zeke"}
    )


def test_no_pace_means_no_estimate() -> None:
    assert made([row(1, BOSTON)], per_second=0.0).seconds == 0.0


def test_refused_rows_say_why() -> None:
    rows = [row(1, BOSTON), row(2, LONDON), row(3, "whatsapp:" + HONOLULU)]
    result = made(rows, policy=Policy(countries=frozenset({"US"})))
    assert [r.number for r in result.valid] == [1]
    reasons = dict((r.number, why) for r, why in result.refused)
    assert reasons[2].startswith("numbers in GB are not allowed here (ALLOWED_COUNTRIES=US)")
    assert reasons[3].startswith("whatsapp:+18085551212 is a WhatsApp contact but the sender")


def test_a_time_gives_each_row_its_due_moment() -> None:
    result = made([row(1, BOSTON), row(2, HONOLULU)], when=After(600), now=NOON_UTC)
    assert result.dues == {1: NOON_UTC + 600, 2: NOON_UTC + 600}
    past = made([row(1, BOSTON)], when=Instant(NOON_UTC - 1), now=NOON_UTC)
    assert [why for _, why in past.refused] == ["--at: that time has passed"]


def test_at_a_clock_time_each_contact_has_their_own() -> None:
    result = made([row(1, BOSTON), row(2, HONOLULU)], when=AtClock(time(9, 0)), now=NOON_UTC)
    boston = datetime(2026, 12, 2, 14, 0, tzinfo=UTC).timestamp()  # 09:00 EST
    honolulu = datetime(2026, 12, 2, 19, 0, tzinfo=UTC).timestamp()  # 09:00 HST
    assert result.dues == {1: boston, 2: honolulu}


def test_quiet_hours_make_rows_wait_for_their_window() -> None:
    clock = ContactClock(NIGHTS, now=lambda: NOON_UTC)
    result = made([row(1, BOSTON), row(2, LONDON)], clock=clock, now=NOON_UTC)
    assert [r.number for r in result.valid] == [1, 2]
    (waits,) = result.waiting  # 07:00 in Boston is quiet; noon in London is not
    assert waits[0].number == 1
    assert waits[1] == datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp()  # 08:00 EST
    exempt = ContactClock(NIGHTS, exempt=frozenset({FLOW}), now=lambda: NOON_UTC)
    assert made([row(1, BOSTON)], clock=exempt, now=NOON_UTC).waiting == []


def test_merged() -> None:
    assert merged({"a": 1, "b": 2}, {"b": 3}) == {"a": 1, "b": 3}
    assert merged({}, {}) == {}


# -- progress ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("done", "total", "width", "drawn"),
    [
        (0, 10, 10, "░" * 10 + " 0%"),
        (10, 10, 10, "▓" * 10 + " 100%"),
        (1, 3, 6, "▓▓░░░░ 33%"),
        (2, 3, 6, "▓▓▓▓░░ 67%"),
        (0, 0, 4, "▓▓▓▓ 100%"),  # nothing to do is done
        (1, 8, 20, "▓▓" + "░" * 18 + " 12%"),
    ],
)
def test_bar(done: int, total: int, width: int, drawn: str) -> None:
    assert bar(done, total, width=width) == drawn


def test_bar_defaults_to_twenty() -> None:
    assert bar(5, 10) == "▓" * 10 + "░" * 10 + " 50%"


def test_progress_counts() -> None:
    p = Progress("r", "survey", "U1", 10, started=4, failed=1, unknown=2, cancelled=1, elapsed=4)
    assert (p.done, p.left, p.rate) == (8, 2, 1.75)  # cancelled rows were never sent
    idle = Progress("r", "survey", "U1", 3, started=0, failed=0, unknown=0, cancelled=0, elapsed=0)
    assert (idle.done, idle.left, idle.rate) == (0, 3, 0.0)
