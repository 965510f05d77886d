"""What ``/engage report`` and the Home tab count, and the day's counters they count
from. Pure.

A run record moves its flow's counters for the day it started (``bot.runs.records``
keeps them in the store, in the same atomic step as the record): a start adds to
``total`` and its state, an end moves the run from ``active`` to how it ended and adds
its end widget and its answers. A report over days adds the days' counters up
(``summary_of``) instead of reading every record.

A counter's fields: ``total``, ``answered``, ``s:<state>``, ``w:<end widget>``,
``c:<Twilio's code>`` (a start refused), ``\\x1f<field>\\x1f<value>`` (how often an
answer was given: at most ``ANSWERS_KEPT`` values of a field a day, the rest under
``\\x1f<field>\\x1f``), and ``\\x1e<field>`` (how many values of it are kept).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

TOP_ANSWERS = 5
ANSWER_CHARS = 100  # an answer is counted by its first so many characters
OTHERS = "(other answers)"
_ANSWER = "\x1f"
_KEPT = "\x1e"


@dataclass(frozen=True)
class Summary:
    """What a set of records did. Pure data."""

    total: int
    by_state: tuple[tuple[str, int], ...] = ()  # most first
    funnel: tuple[tuple[str, int], ...] = ()  # end widget -> ended runs, most first
    answers: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()  # field -> top answers
    failures: tuple[tuple[str, int], ...] = ()  # Twilio code -> starts refused
    answered: int = 0  # runs with at least one answer


def day_of(epoch: float) -> str:
    """The counters' day of a moment: ``20261203`` (UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d")


def started_counts(state: str, code: str = "") -> dict[str, int]:
    """What a new record adds to its day: one run, in ``state`` (``active``, or
    ``not_started``/``unknown`` with Twilio's ``code``)."""
    counts = {"total": 1, f"s:{state}": 1}
    if code and state in ("not_started", "unknown"):
        counts[f"c:{code}"] = 1
    return counts


def ended_counts(state: str, widget: str, answers: Mapping[str, str]) -> dict[str, int]:
    """What a run's end moves on the day it started: from ``active`` to ``state``, its
    end widget (ended or failed) and its answers."""
    counts = {"s:active": -1, f"s:{state}": 1}
    if state in ("ended", "failed"):
        counts[f"w:{widget or '?'}"] = 1
    if answers:
        counts["answered"] = 1
    for field, value in answers.items():
        name = field.replace(_ANSWER, " ")
        counts[f"{_ANSWER}{name}{_ANSWER}{value.replace(_ANSWER, ' ')[:ANSWER_CHARS]}"] = 1
    return counts


def whole_counts(state: str, code: str, widget: str, answers: Mapping[str, str]) -> dict[str, int]:
    """What a record counted all at once adds: one written before the counters were."""
    if state in ("not_started", "unknown"):
        return started_counts(state, code)
    counts = started_counts("active")
    if state != "active":
        for name, delta in ended_counts(state, widget, answers).items():
            counts[name] = counts.get(name, 0) + delta
    return {name: delta for name, delta in counts.items() if delta}


def _most(counter: Counter[str], limit: int | None = None) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:limit])


def summary_of(days: Iterable[Mapping[str, str]]) -> Summary:
    """The days' counters (each a hash as the store keeps it) added up."""
    totals: Counter[str] = Counter()
    for day in days:
        for name, value in day.items():
            if not name.startswith(_KEPT):
                totals[name] += int(value)
    states: Counter[str] = Counter()
    funnel: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    fields: dict[str, Counter[str]] = {}
    for name, count in totals.items():
        if count <= 0:
            continue
        kind, _, rest = name.partition(":")
        if name.startswith(_ANSWER):
            field, _, value = name[1:].partition(_ANSWER)
            fields.setdefault(field, Counter())[value or OTHERS] += count
        elif kind == "s":
            states[rest] += count
        elif kind == "w":
            funnel[rest] += count
        elif kind == "c":
            failures[rest] += count
    answers = tuple((field, _most(counter, TOP_ANSWERS)) for field, counter in fields.items())
    return Summary(
        totals["total"],
        _most(states),
        _most(funnel),
        answers,
        _most(failures),
        totals["answered"],
    )
