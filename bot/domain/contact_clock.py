"""The contact's clock: quiet hours in the contact's local time, and when a start is due.

Pure: no I/O (``zoneinfo`` reads the tz database shipped by ``tzdata``). Times are
epoch seconds (UTC) in and out; local time is only for deciding and for saying.

- ``QuietHours``: ``21:00-08:00`` (the default, QUIET_HOURS), crossing midnight or not.
- ``zones_of``: the contact's time zones, from libphonenumber's metadata. A number
  whose region spans several zones has them all; where none is known, the fallback
  (QUIET_HOURS_TZ) stands in.
- ``ContactClock.opens``: None when the contact may be reached now, else when the
  window opens: the first moment when *every* one of its zones is outside quiet hours.
- ``When`` (``--at``, ``--in``, the form's date and time) and ``due_at``: the epoch
  second a schedule is for.
"""

from __future__ import annotations

import math
import re
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import phonenumbers
from phonenumbers import PhoneNumberType

from bot.domain.durations import duration, parse_span
from bot.domain.phone_facts import NumberFacts, facts

WHATSAPP = "whatsapp:"
UNKNOWN_ZONE = "Etc/Unknown"
SEARCH_DAYS = 3  # how far ahead the next window is looked for (several zones may never meet)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class QuietHours:
    """Local times when no contact is reached: from ``start`` up to (not including) ``end``;
    ``start`` after ``end`` crosses midnight (21:00-08:00)."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> QuietHours | None:
        """``HH:MM-HH:MM``, or ``off`` (None). Raises ValueError saying what is wrong."""
        text = text.strip().lower()
        if text in ("off", "none"):  # blank is not off: the settings read it as the default
            return None
        first, sep, second = text.partition("-")
        start, end = _clock(first.strip()), _clock(second.strip())
        if not sep or start is None or end is None:
            raise ValueError("must be HH:MM-HH:MM in 24-hour time (e.g. 21:00-08:00), or off")
        if start == end:
            raise ValueError("start and end are the same time; to turn quiet hours off, use off")
        return cls(start, end)

    def covers(self, local: time) -> bool:
        """Whether the local time ``local`` is quiet."""
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _clock(text: str) -> time | None:
    match = _CLOCK.match(text)
    return time(int(match.group(1)), int(match.group(2))) if match else None


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo | None:
    """The zone named ``name`` in any case (``utc``, ``america/chicago``), or None if the
    tz database has no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        pass
    canonical = _zone_names().get(name.casefold())
    return ZoneInfo(canonical) if canonical else None


@cache
def _zone_names() -> dict[str, str]:
    """Every tz database name, by its casefolded self."""
    return {known.casefold(): known for known in available_timezones()}


# Numbers that say nothing of where their owner is: reached on QUIET_HOURS_TZ.
NOT_GEOGRAPHIC = frozenset(
    {
        PhoneNumberType.TOLL_FREE,
        PhoneNumberType.SHARED_COST,
        PhoneNumberType.VOIP,
        PhoneNumberType.UAN,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.PAGER,
        PhoneNumberType.VOICEMAIL,
        PhoneNumberType.PREMIUM_RATE,
    }
)
WIDEST_HOURS = 3.0  # zones spanning more than this say too little of where the contact is
# Where a number's zones span wider (a Russian or Australian mobile, a +1 number with no
# area), the zones most of the country lives in: the contact is reached when it is day
# in all of them.
MAIN_ZONES: dict[str, tuple[str, ...]] = {
    "US": ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"),
    "CA": ("America/Toronto", "America/Winnipeg", "America/Edmonton", "America/Vancouver"),
    "RU": ("Europe/Moscow", "Europe/Samara", "Asia/Yekaterinburg"),
    "KZ": ("Asia/Almaty",),
    "AU": ("Australia/Sydney", "Australia/Melbourne", "Australia/Brisbane", "Australia/Adelaide"),
    "BR": ("America/Sao_Paulo", "America/Manaus"),
    "MX": ("America/Mexico_City", "America/Monterrey"),
    "ID": ("Asia/Jakarta", "Asia/Makassar"),
}
_SPAN_AT = (  # UTC offsets compared in both seasons: daylight saving moves some
    datetime(2026, 1, 15, 12, tzinfo=UTC),
    datetime(2026, 7, 15, 12, tzinfo=UTC),
)


def span_hours(names: tuple[str, ...]) -> float:
    """How many hours apart the zones ``names`` are at most (in winter or in summer)."""
    widest = 0.0
    for moment in _SPAN_AT:
        offsets = [
            offset.total_seconds() / 3600
            for info in filter(None, map(zone, names))
            if (offset := moment.astimezone(info).utcoffset()) is not None
        ]
        if offsets:
            widest = max(widest, max(offsets) - min(offsets))
    return widest


@cache
def country_zones(region: str) -> tuple[str, ...]:
    """The tz database's zones of the country ``region`` (its ``zone.tab``, as tzdata
    ships it); () if it lists none."""
    table = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text("utf-8")
    rows = (line.split("\t") for line in table.splitlines() if not line.startswith("#"))
    return tuple(row[2] for row in rows if len(row) >= 3 and row[0] == region)


def zones_of(address: str, fallback: str = "UTC") -> tuple[str, ...]:
    """The contact's time zones (``+E164`` or ``whatsapp:+E164``): ``zones_for`` its
    number's facts; ``(fallback,)`` for what is no number."""
    try:
        known = facts(address)
    except phonenumbers.NumberParseException:
        return (fallback,)
    return zones_for(known, fallback)


@lru_cache(maxsize=8192)
def zones_for(known: NumberFacts, fallback: str = "UTC") -> tuple[str, ...]:
    """The time zones of a contact whose number has ``known`` facts, by this rule:

    - a number that is not geographic (toll-free, shared-cost, VoIP, UAN, personal,
      pager, premium): ``(fallback,)``, the operator's QUIET_HOURS_TZ;
    - libphonenumber's zones for the number, when they lie within ``WIDEST_HOURS``;
    - wider (a US toll-free-like +1 with no area, a Russian or Australian mobile): the
      country's main zones (``MAIN_ZONES``), else its zones in the tz database if they
      lie within ``WIDEST_HOURS`` (a Caribbean island: its one zone), else ``fallback``;
    - none known: ``(fallback,)``."""
    if known.kind in NOT_GEOGRAPHIC:
        return (fallback,)
    found = tuple(name for name in known.zones if name != UNKNOWN_ZONE and zone(name) is not None)
    if not found:
        return (fallback,)
    if span_hours(found) <= WIDEST_HOURS:
        return found
    if main := MAIN_ZONES.get(known.country):
        return main
    country = country_zones(known.country)
    if country and span_hours(country) <= WIDEST_HOURS:
        return country
    return (fallback,)


def quiet_in(quiet: QuietHours, zones: tuple[str, ...], at: float) -> bool:
    """Whether it is quiet hours at ``at`` in any of ``zones``."""
    moment = datetime.fromtimestamp(at, UTC)
    for name in zones:
        info = zone(name)
        if info is not None and quiet.covers(moment.astimezone(info).time()):
            return True
    return False


def next_open(quiet: QuietHours, zones: tuple[str, ...], at: float) -> float | None:
    """The first moment from ``at`` when no zone is in quiet hours (``at`` itself if none
    is now); None if the zones never all leave quiet hours within ``SEARCH_DAYS``."""
    if not quiet_in(quiet, zones, at):
        return at
    moment = datetime.fromtimestamp(at, UTC)
    candidates: list[float] = []
    for name in zones:  # each zone's quiet hours end at its own local ``end``
        info = zone(name)
        if info is None:
            continue
        today = moment.astimezone(info).date()
        for days in range(-1, SEARCH_DAYS + 1):
            local = datetime.combine(today + timedelta(days=days), quiet.end, info)
            when = local.timestamp()  # a local time skipped by a DST change maps forward
            if when > at:
                candidates.append(when)
    for when in sorted(candidates):
        if not quiet_in(quiet, zones, when):
            return when
    return None


@dataclass(frozen=True)
class Opening:
    """A contact in quiet hours at ``since``: when their window opens (``at``, None if it
    never does within ``SEARCH_DAYS``) and the zones it was judged in."""

    at: float | None
    zones: tuple[str, ...]
    since: float

    @property
    def zone(self) -> str:
        return self.zones[0]


@dataclass
class ContactClock:
    """Quiet hours as configured (None: off), for the flows not exempt from them; ``now``
    is the wall clock every use of quiet hours and schedules reads (tests set their own)."""

    quiet: QuietHours | None = None
    fallback: str = "UTC"  # QUIET_HOURS_TZ: where a number's zone is unknown
    exempt: frozenset[str] = frozenset()  # flow SIDs with ;quiet=off
    now: Callable[[], float] = field(default=_time.time, compare=False)

    def zones(self, address: str, known: NumberFacts | None = None) -> tuple[str, ...]:
        """The contact's zones (from ``known``, its number's facts, when already read)."""
        return zones_for(known, self.fallback) if known else zones_of(address, self.fallback)

    def opens(
        self,
        flow_sid: str,
        address: str,
        at: float | None = None,
        known: NumberFacts | None = None,
    ) -> Opening | None:
        """None when ``flow_sid`` may reach ``address`` at ``at`` (default now); else when
        the contact's window opens."""
        if self.quiet is None or flow_sid in self.exempt:
            return None
        at = self.now() if at is None else at
        zones = self.zones(address, known)
        if not quiet_in(self.quiet, zones, at):
            return None
        return Opening(next_open(self.quiet, zones, at), zones, at)


# --- when a schedule is due -----------------------------------------------------------


@dataclass(frozen=True)
class AtClock:
    """``--at 09:00`` (the next 09:00), ``--at "2026-12-03 09:00"``, with an optional zone
    (``--at "09:00 America/Chicago"``); without one, the contact's own."""

    clock: time
    day: date | None = None
    zone: str | None = None


@dataclass(frozen=True)
class After:
    """``--in 90m``: so many seconds from now."""

    seconds: int


@dataclass(frozen=True)
class Instant:
    """An exact moment (the form's date and time picker): epoch seconds."""

    epoch: float


When = AtClock | After | Instant


def parse_at(text: str) -> AtClock:
    """``HH:MM``, ``YYYY-MM-DD HH:MM``, either followed by a tz database zone name.
    Raises ValueError saying what is wrong."""
    words = text.split()
    zone_name: str | None = None
    if words and ("/" in words[-1] or words[-1].upper() == "UTC"):
        zone_name = words.pop()
        if zone(zone_name) is None:
            raise ValueError(
                f"{zone_name!r} is not a time zone; use a tz database name such as"
                " America/Chicago or Europe/Lisbon"
            )
    day: date | None = None
    if len(words) == 2:
        try:
            day = date.fromisoformat(words[0])
        except ValueError:
            raise ValueError(f"{words[0]!r} is not a date; write it as 2026-12-03") from None
        words = words[1:]
    clock = _clock(words[0]) if len(words) == 1 else None
    if clock is None:
        raise ValueError(
            'takes a time such as 09:00, "2026-12-03 09:00" or "09:00 America/Chicago"'
        )
    return AtClock(clock, day, zone_name)


def parse_in(text: str) -> After:
    """``30s``, ``90m``, ``2h``, ``1h30m``, ``2d`` (``durations.parse_span``). Raises
    ValueError."""
    try:
        return After(parse_span(text))
    except ValueError as exc:
        if str(exc) == "a span of no time":
            raise ValueError("takes a span longer than 0") from None
        raise ValueError("takes a span such as 30s, 90m, 2h or 1h30m") from None


def due_at(when: When, zones: tuple[str, ...], now: float) -> float:
    """The epoch second ``when`` means for a contact in ``zones`` (its first zone, unless
    ``when`` names one). Raises ValueError for a moment already past."""
    if isinstance(when, After):
        return now + when.seconds
    if isinstance(when, Instant):
        if when.epoch <= now:
            raise ValueError("that time has passed")
        return when.epoch
    info = zone(when.zone or zones[0]) or ZoneInfo("UTC")
    local_now = datetime.fromtimestamp(now, UTC).astimezone(info)
    day = when.day or local_now.date()
    try:
        due = datetime.combine(day, when.clock, info).timestamp()
        if when.day is None and due <= now:  # 09:00 already passed today: tomorrow's
            due = datetime.combine(day + timedelta(days=1), when.clock, info).timestamp()
    except (OverflowError, ValueError):  # off the calendar's ends (9999-12-31 in UTC-11)
        if day > local_now.date():
            return math.inf  # later than any schedule may be: refused as too far ahead
        raise ValueError("that time has passed") from None
    if due <= now:
        raise ValueError(f"{day:%Y-%m-%d} {when.clock:%H:%M} in {info.key} has passed")
    return due


# --- saying it ---------------------------------------------------------------------------


def local_time(at: float, zone_name: str, now: float | None = None) -> str:
    """``09:00 EST (America/New_York)``; with the day (``Thu 3 Dec 09:00 …``) unless it is
    the same local day as ``now``."""
    info = zone(zone_name) or ZoneInfo("UTC")
    moment = datetime.fromtimestamp(at, UTC).astimezone(info)
    same_day = (
        now is not None
        and datetime.fromtimestamp(now, UTC).astimezone(info).date() == moment.date()
    )
    day = "" if same_day else f"{moment:%a} {moment.day} {moment:%b} "
    return f"{day}{moment:%H:%M} {moment.tzname()} ({info.key})"


def relative(seconds: float) -> str:
    """``in 3 h 10 min``, ``in 2 d 4 h``, ``in 40 s``."""
    return "in " + duration(seconds, smallest="min")


def opening_text(opening: Opening) -> str:
    """``their window opens at 08:00 EST (America/New_York), in 3 h 10 min``."""
    if opening.at is None:
        spans = ", ".join(opening.zones)
        return (
            f"the number's time zones ({spans}) are never all outside quiet hours at once;"
            " an admin can start it anyway"
        )
    count = len(opening.zones)
    several = f", when all {count} of the number's time zones are outside them" if count > 1 else ""
    when = local_time(opening.at, opening.zone, opening.since)
    return f"their window opens at {when}{several}, {relative(opening.at - opening.since)}"
