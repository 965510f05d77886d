"""The contact's clock (pure): quiet hours in the contact's zones, across daylight-saving
changes and regions with several zones; and when ``--at``/``--in`` are due."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.command import BulkCommand, Defaults, EngageCommand
from bot.domain.contact_clock import (
    After,
    AtClock,
    ContactClock,
    Instant,
    Opening,
    QuietHours,
    due_at,
    local_time,
    next_open,
    opening_text,
    parse_at,
    parse_in,
    quiet_in,
    relative,
    zone,
    zones_of,
)
from bot.domain.errors import CommandError
from bot.domain.grammar import parse
from tests.budget import examples

NIGHT = QuietHours(time(21), time(8))
NY = ("America/New_York",)
BOSTON = "+16175551212"
HONOLULU = "+18085551212"
PORTUGAL = "+351912345678"  # a mobile number: Lisbon and the Azores
RUSSIA = "+79123456789"  # a mobile number: sixteen zones, Kaliningrad's time to Kamchatka's
FLOW = "FW" + "0" * 32


def known(at: float | None) -> float:
    """``at``, which the test expects to be a moment."""
    assert at is not None
    return at


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M")


# --- quiet hours ------------------------------------------------------------------------


def test_quiet_hours_parse_and_cover() -> None:
    assert QuietHours.parse("21:00-08:00") == NIGHT
    assert QuietHours.parse(" 22:30 - 7:15 ") == QuietHours(time(22, 30), time(7, 15))
    assert QuietHours.parse("off") is None
    assert str(NIGHT) == "21:00-08:00"
    assert NIGHT.covers(time(21))
    assert NIGHT.covers(time(3))
    assert NIGHT.covers(time(7, 59))
    assert not NIGHT.covers(time(8))
    assert not NIGHT.covers(time(20, 59))
    lunch = QuietHours(time(12), time(13))  # not crossing midnight
    assert lunch.covers(time(12, 30))
    assert not lunch.covers(time(13))
    for bad in ("21:00", "25:00-08:00", "21:00-08:60", "9pm-8am", "08:00-08:00"):
        with pytest.raises(ValueError, match=r"HH:MM-HH:MM|the same time"):
            QuietHours.parse(bad)


def test_zones_come_from_the_number() -> None:
    assert zones_of(BOSTON) == NY
    assert zones_of("whatsapp:" + HONOLULU) == ("Pacific/Honolulu",)
    assert set(zones_of(PORTUGAL)) == {"Atlantic/Azores", "Europe/Lisbon"}
    # phonenumbers 9.x: a valid UK mobile has four zones, all on London's time
    assert set(zones_of("+447911123456")) == {
        "Europe/Guernsey",
        "Europe/Isle_of_Man",
        "Europe/Jersey",
        "Europe/London",
    }
    # a number from a range libphonenumber has no zone for: QUIET_HOURS_TZ stands in
    assert zones_of("+447700900123", "Europe/London") == ("Europe/London",)
    assert zones_of("not a number", "UTC") == ("UTC",)


def reachable_hours(address: str, fallback: str = "UTC") -> float:
    """Hours a day (2026-12-03, every quarter hour) the default quiet hours let through."""
    start = utc(2026, 12, 3, 0, 0)
    zones = zones_of(address, fallback)
    return sum(0.25 for i in range(96) if not quiet_in(NIGHT, zones, start + i * 900))


@pytest.mark.parametrize(
    ("number", "zones", "hours"),
    [
        # toll-free: libphonenumber gave all 42 zones of +1 (2.5 h a day); not geographic
        ("+18005551212", ("America/Chicago",), 13.0),
        # a Russian mobile: sixteen zones (3 h a day); Russia's main zones
        (RUSSIA, ("Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg"), 11.0),
        # an Australian mobile: eight zones (8.5 h a day); the eastern and central ones
        (
            "+61412345678",
            ("Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Australia/Adelaide"),
            12.0,
        ),
        # a Caribbean +1 mobile libphonenumber gives 42 zones: its island's one zone
        ("+12684641234", ("America/Antigua",), 13.0),
    ],
)
def test_numbers_whose_zones_say_little_are_reached_by_a_rule(
    number: str, zones: tuple[str, ...], hours: float
) -> None:
    """Issue 32, 7: not geographic -> QUIET_HOURS_TZ; zones wider than 3 h -> the
    country's main zones (or its one zone in the tz database)."""
    assert zones_of(number, "America/Chicago") == zones
    assert reachable_hours(number, "America/Chicago") == hours


def test_a_contact_at_night_waits_for_their_morning() -> None:
    clock = ContactClock(NIGHT, now=lambda: utc(2026, 12, 2, 3, 0))  # 22:00 in Boston
    opening = clock.opens(FLOW, BOSTON)
    assert opening is not None
    assert iso(known(opening.at)) == "2026-12-02 13:00"  # 08:00 EST
    assert "08:00 EST (America/New_York), in 10 h" in opening_text(opening)
    assert clock.opens(FLOW, HONOLULU) is None  # 17:00 there
    assert ContactClock(NIGHT, exempt=frozenset({FLOW}), now=clock.now).opens(FLOW, BOSTON) is None
    assert ContactClock(None, now=clock.now).opens(FLOW, BOSTON) is None


def test_daylight_saving_starts_in_new_york() -> None:
    """2026-03-08: 02:00 EST becomes 03:00 EDT, so 08:00 that morning is 12:00 UTC."""
    at = utc(2026, 3, 8, 6, 0)  # 01:00 EST
    assert quiet_in(NIGHT, NY, at)
    assert iso(known(next_open(NIGHT, NY, at))) == "2026-03-08 12:00"
    assert iso(due_at(AtClock(time(9)), NY, utc(2026, 3, 7, 23, 0))) == "2026-03-08 13:00"
    # a window ending at a local time the change skips still opens, once, just after it
    skipped = QuietHours(time(1), time(2, 30))
    opened = next_open(skipped, NY, utc(2026, 3, 8, 6, 30))
    assert opened is not None
    assert not quiet_in(skipped, NY, opened)
    assert iso(opened) == "2026-03-08 07:30"  # 03:30 EDT: 02:30 EST never happened


def test_daylight_saving_ends_in_new_york() -> None:
    """2026-11-01: 02:00 EDT becomes 01:00 EST, so 08:00 that morning is 13:00 UTC."""
    at = utc(2026, 11, 1, 5, 30)  # 01:30 EDT (the first one)
    assert iso(known(next_open(NIGHT, NY, at))) == "2026-11-01 13:00"
    assert iso(due_at(AtClock(time(9)), NY, utc(2026, 10, 31, 23, 0))) == "2026-11-01 14:00"
    assert iso(due_at(After(3600), NY, at)) == "2026-11-01 06:30"  # an hour is an hour


def test_several_zones_open_when_the_last_one_does() -> None:
    zones = zones_of(PORTUGAL)
    at = utc(2026, 12, 2, 7, 30)  # 07:30 in Lisbon, 06:30 in the Azores
    opened = next_open(NIGHT, zones, at)
    assert iso(known(opened)) == "2026-12-02 09:00"  # 08:00 in the Azores
    evening = utc(2026, 12, 2, 21, 30)  # Lisbon is quiet, the Azores (20:30) are not
    assert quiet_in(NIGHT, zones, evening)
    # Russia's zones span ten hours: they are all awake together only for a while
    russia = zones_of(RUSSIA)
    opened = next_open(NIGHT, russia, utc(2026, 12, 2, 3, 0))
    assert opened is not None
    assert not quiet_in(NIGHT, russia, opened)
    assert quiet_in(NIGHT, russia, opened - 60)


def test_zones_that_never_meet_say_so() -> None:
    far = ("Europe/London", "Asia/Kamchatka")  # twelve hours apart in December
    long_night = QuietHours(time(18), time(9))  # nine open hours each: they never overlap
    at = utc(2026, 12, 2, 3, 0)
    assert next_open(long_night, far, at) is None
    text = opening_text(Opening(None, far, at))
    assert "never all outside quiet hours" in text
    assert "Asia/Kamchatka" in text


@settings(max_examples=examples(150), deadline=None)
@given(
    at=st.integers(min_value=int(utc(2026, 1, 1)), max_value=int(utc(2027, 12, 31))),
    start=st.integers(min_value=0, max_value=23),
    end=st.integers(min_value=0, max_value=23),
    zones=st.sampled_from([NY, zones_of(PORTUGAL), ("Australia/Lord_Howe",), zones_of(RUSSIA)]),
)
def test_next_open_is_the_first_moment_outside_quiet_hours(
    at: int, start: int, end: int, zones: tuple[str, ...]
) -> None:
    if start == end:
        return
    quiet = QuietHours(time(start), time(end))
    opened = next_open(quiet, zones, at)
    if opened is None:
        return
    assert opened >= at
    assert not quiet_in(quiet, zones, opened)
    if opened > at:  # minimal: quiet on every quarter hour before it
        step = at
        while step < opened:
            assert quiet_in(quiet, zones, step)
            step += 900


# --- when a schedule is due ---------------------------------------------------------------


def test_at_and_in_parse() -> None:
    assert parse_at("09:00") == AtClock(time(9))
    assert parse_at("2026-12-03 09:00") == AtClock(time(9), datetime(2026, 12, 3).date())
    assert parse_at("09:00 America/Chicago") == AtClock(time(9), None, "America/Chicago")
    assert parse_in("90m") == After(5400)
    assert parse_in("2h") == After(7200)
    assert parse_in("30s") == After(30)
    assert parse_in("1h 30m") == After(5400)
    for bad in ("9am", "2026-13-01 09:00", "09:00 Mars/Olympus", "tomorrow"):
        with pytest.raises(ValueError, match=r"takes a time|is not a date|is not a time zone"):
            parse_at(bad)
    for bad in ("", "0m", "soon", "5x", "2h-1m"):
        with pytest.raises(ValueError, match="takes a span"):
            parse_in(bad)


def test_due_at_reads_the_contact_zone_unless_told() -> None:
    now = utc(2026, 12, 2, 15, 0)  # 10:00 in Boston
    assert iso(due_at(AtClock(time(9)), NY, now)) == "2026-12-03 14:00"  # tomorrow's 09:00
    assert iso(due_at(AtClock(time(11)), NY, now)) == "2026-12-02 16:00"  # today's
    chicago = AtClock(time(11), None, "America/Chicago")
    assert iso(due_at(chicago, NY, now)) == "2026-12-02 17:00"
    dated = AtClock(time(9), datetime(2026, 12, 5).date())
    assert iso(due_at(dated, NY, now)) == "2026-12-05 14:00"
    with pytest.raises(ValueError, match="has passed"):
        due_at(AtClock(time(9), datetime(2026, 12, 1).date()), NY, now)
    with pytest.raises(ValueError, match="passed"):
        due_at(Instant(now - 1), NY, now)


def test_saying_when() -> None:
    now = utc(2026, 12, 2, 15, 0)
    assert local_time(utc(2026, 12, 2, 16, 0), "America/New_York", now) == (
        "11:00 EST (America/New_York)"
    )
    assert local_time(utc(2026, 12, 3, 14, 0), "America/New_York", now).startswith("Thu 3 Dec")
    assert relative(11400) == "in 3 h 10 min"
    assert relative(40) == "in 40 s"
    assert relative(2 * 86400 + 4 * 3600) == "in 2 d 4 h"
    assert relative(3600) == "in 1 h"


# --- the grammar ---------------------------------------------------------------------------

DEFAULTS = Defaults(flows={"survey": FLOW}, flow_sid=FLOW, sender="+16175550100")


def test_the_command_takes_at_or_in() -> None:
    command = parse("+16175551212 --at 09:00", DEFAULTS)
    assert isinstance(command, EngageCommand)
    assert command.when == AtClock(time(9))
    command = parse('survey +16175551212 --at "2026-12-03 09:00 America/Chicago"', DEFAULTS)
    assert isinstance(command, EngageCommand)
    assert command.when == AtClock(time(9), datetime(2026, 12, 3).date(), "America/Chicago")
    command = parse("+16175551212 first_name=Zeke --in 90m", DEFAULTS)
    assert isinstance(command, EngageCommand)
    assert command.when == After(5400)
    assert command.parameters == {"first_name": "Zeke"}
    bulk = parse("survey +16175551212 +18085551212 --at 10:00", DEFAULTS)
    assert isinstance(bulk, BulkCommand)
    assert bulk.when == AtClock(time(10))


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("+16175551212 --at 9am", "--at takes a time such as 09:00"),
        ("+16175551212 --in soon", "--in takes a span"),
        ("+16175551212 --at 09:00 --in 2h", "give --at or --in, not both"),
        ("+16175551212 --at 09:00 --at 10:00", "--at is given twice"),
        ('+16175551212 --at "09:00 Mars/Base"', "is not a time zone"),
        ("+16175551212 --when 09:00", "the options are --from, --flow, --at and --in"),
    ],
)
def test_bad_times_are_refused_naming_the_option(text: str, says: str) -> None:
    with pytest.raises(CommandError, match=says):
        parse(text, DEFAULTS)


def test_scheduled_is_a_subcommand() -> None:
    from bot.domain.command import ScheduledCommand

    assert parse("scheduled", DEFAULTS) == ScheduledCommand()
    with pytest.raises(CommandError):
        parse("scheduled everyone", DEFAULTS)


@pytest.mark.parametrize("name", ["utc", "UTC", "Utc", "america/chicago", "EUROPE/LISBON"])
def test_a_zone_is_read_in_any_case(name: str) -> None:
    """Issue 32, 18: ``--at "09:00 utc"`` was refused as "not a time zone"."""
    at = parse_at(f"09:00 {name}")
    found = zone(at.zone or "")
    assert found is not None
    assert found.key.casefold() == name.casefold()


@pytest.mark.parametrize(
    ("text", "far"),
    [
        ("9999-12-31 23:59 Pacific/Pago_Pago", True),
        ("9999-12-31 23:59 Pacific/Kiritimati", True),
        ("0001-01-01 00:00 Pacific/Kiritimati", False),
    ],
)
def test_the_calendars_ends_are_too_far_or_past_never_an_error(text: str, far: bool) -> None:
    """Issue 32, 18: the year 10000 came back as "year 10000 is out of range"."""
    now = datetime(2026, 12, 3, tzinfo=UTC).timestamp()
    if far:
        assert due_at(parse_at(text), ("UTC",), now) > now + 366 * 86400
    else:
        with pytest.raises(ValueError, match="passed"):
            due_at(parse_at(text), ("UTC",), now)


# -- due times, local times and openings, exactly -------------------------------------

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()  # 07:00 in New York


@pytest.mark.parametrize(
    ("when", "due"),
    [
        (AtClock(time(9, 0)), datetime(2026, 12, 2, 14, 0, tzinfo=UTC)),  # today, 09:00 EST
        (AtClock(time(6, 0)), datetime(2026, 12, 3, 11, 0, tzinfo=UTC)),  # passed: tomorrow's
        (AtClock(time(7, 0)), datetime(2026, 12, 3, 12, 0, tzinfo=UTC)),  # now exactly: tomorrow's
        (AtClock(time(9, 0), zone="Europe/Lisbon"), datetime(2026, 12, 3, 9, 0, tzinfo=UTC)),
        (AtClock(time(9, 0), day=date(2026, 12, 5)), datetime(2026, 12, 5, 14, 0, tzinfo=UTC)),
        (After(90), datetime(2026, 12, 2, 12, 1, 30, tzinfo=UTC)),
        (Instant(NOON + 1), datetime(2026, 12, 2, 12, 0, 1, tzinfo=UTC)),
    ],
)
def test_due_at(when: AtClock | After | Instant, due: datetime) -> None:
    assert due_at(when, ("America/New_York",), NOON) == due.timestamp()


@pytest.mark.parametrize(
    ("when", "says"),
    [
        (
            AtClock(time(6, 0), day=date(2026, 12, 2)),
            "2026-12-02 06:00 in America/New_York has passed",
        ),
        (
            AtClock(time(7, 0), day=date(2026, 12, 2)),
            "2026-12-02 07:00 in America/New_York has passed",
        ),
        (Instant(NOON), "that time has passed"),
        (
            AtClock(time(9, 0), day=date(2020, 1, 1), zone="Pacific/Kiritimati"),
            "2020-01-01 09:00 in Pacific/Kiritimati has passed",
        ),
    ],
)
def test_due_at_refuses_the_past(when: AtClock | Instant, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        due_at(when, ("America/New_York",), NOON)


def test_local_time() -> None:
    assert local_time(NOON, "America/New_York") == "Wed 2 Dec 07:00 EST (America/New_York)"
    assert local_time(NOON, "America/New_York", NOON) == "07:00 EST (America/New_York)"  # today
    assert (
        local_time(NOON, "America/New_York", NOON + 86400)
        == "Wed 2 Dec 07:00 EST (America/New_York)"
    )
    assert local_time(NOON, "Nope/Zone") == "Wed 2 Dec 12:00 UTC (UTC)"


def test_opening_text() -> None:
    ny = ("America/New_York",)
    assert opening_text(Opening(NOON + 3600, ny, NOON)) == (
        "their window opens at 08:00 EST (America/New_York), in 1 h"
    )
    assert opening_text(Opening(NOON + 3600, ("America/New_York", "America/Chicago"), NOON)) == (
        "their window opens at 08:00 EST (America/New_York), when all 2 of the number's time"
        " zones are outside them, in 1 h"
    )
    assert opening_text(Opening(None, ("America/New_York", "Asia/Tokyo"), NOON)) == (
        "the number's time zones (America/New_York, Asia/Tokyo) are never all outside quiet"
        " hours at once; an admin can start it anyway"
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("21:00-21:00", "start and end are the same time; to turn quiet hours off, use off"),
        ("25:00-08:00", "must be HH:MM-HH:MM in 24-hour time (e.g. 21:00-08:00), or off"),
        ("21:00 08:00", "must be HH:MM-HH:MM in 24-hour time (e.g. 21:00-08:00), or off"),
        ("21:00-", "must be HH:MM-HH:MM in 24-hour time (e.g. 21:00-08:00), or off"),
        ("21:60-08:00", "must be HH:MM-HH:MM in 24-hour time (e.g. 21:00-08:00), or off"),
    ],
)
def test_quiet_hours_refusals(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        QuietHours.parse(text)


@pytest.mark.parametrize("text", ["off", " OFF ", "none", "None"])
def test_quiet_hours_off(text: str) -> None:
    assert QuietHours.parse(text) is None


def test_quiet_hours_read_single_digit_hours() -> None:
    assert QuietHours.parse("9:00-17:30") == QuietHours(time(9, 0), time(17, 30))


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("09:00", AtClock(time(9, 0))),
        ("9:05", AtClock(time(9, 5))),
        ("2026-12-03 09:00", AtClock(time(9, 0), date(2026, 12, 3))),
        ("09:00 America/Chicago", AtClock(time(9, 0), None, "America/Chicago")),
        ("2026-12-03 09:00 Europe/Lisbon", AtClock(time(9, 0), date(2026, 12, 3), "Europe/Lisbon")),
    ],
)
def test_parse_at(text: str, at: AtClock) -> None:
    assert parse_at(text) == at


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "09:00 Nope/Zone",
            "'Nope/Zone' is not a time zone; use a tz database name such as America/Chicago or Europe/Lisbon",
        ),
        ("2026-13-01 09:00", "'2026-13-01' is not a date; write it as 2026-12-03"),
        ("tomorrow", 'takes a time such as 09:00, "2026-12-03 09:00" or "09:00 America/Chicago"'),
        ("24:00", 'takes a time such as 09:00, "2026-12-03 09:00" or "09:00 America/Chicago"'),
        (
            "09:00 extra words",
            'takes a time such as 09:00, "2026-12-03 09:00" or "09:00 America/Chicago"',
        ),
    ],
)
def test_parse_at_refusals(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        parse_at(text)


@pytest.mark.parametrize(
    ("text", "says"),
    [("0m", "takes a span longer than 0"), ("90", "takes a span such as 30s, 90m, 2h or 1h30m")],
)
def test_parse_in_refusals(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
        parse_in(text)


@pytest.mark.parametrize(
    ("address", "fallback", "zones"),
    [
        ("+16175551212", "Europe/Paris", ("America/New_York",)),
        ("whatsapp:+16175551212", "UTC", ("America/New_York",)),
        ("+18005551212", "Europe/Paris", ("Europe/Paris",)),  # toll-free: nowhere
        ("+18005551212", "UTC", ("UTC",)),
        ("garbage", "Europe/Paris", ("Europe/Paris",)),
        ("+17584521234", "UTC", ("America/St_Lucia",)),  # one island, one zone
        ("+79161234567", "UTC", ("Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg")),
    ],
)
def test_zones_of_with_their_fallback(address: str, fallback: str, zones: tuple[str, ...]) -> None:
    assert zones_of(address, fallback) == zones
