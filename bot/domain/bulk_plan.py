"""What a bulk run would do, before anything is sent: the preview. Pure: no I/O.

Each row is valid, invalid (not a number), a duplicate (of an earlier row's contact:
dropped), refused by the guardrails (countries, premium rates, WhatsApp with SMS), or
suppressed (its contact opted out, or reached its cap: skipped);
the valid ones are checked against the parameters the flow reads, and the run's
length is estimated at the account's pace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.domain.bulk_input import Row
from bot.domain.command import EngageCommand
from bot.domain.consent import Suppressed
from bot.domain.contact_clock import ContactClock, When, due_at, opening_text, zones_of
from bot.domain.flows import Findings, FlowInfo, findings
from bot.domain.phone import channel_mismatch
from bot.domain.policy import Policy, destination_refusal


@dataclass(frozen=True)
class Plan:
    flow_sid: str
    flow_alias: str | None
    flow_name: str | None
    sender: str
    valid: list[Row] = field(default_factory=list)
    invalid: list[Row] = field(default_factory=list)
    duplicates: list[Row] = field(default_factory=list)
    refused: list[tuple[Row, str]] = field(default_factory=list)
    findings: list[tuple[Row, Findings]] = field(default_factory=list)
    seconds: float = 0.0  # at the account's pace
    dues: dict[int, float] = field(default_factory=dict)  # --at/--in: row -> epoch seconds
    waiting: list[tuple[Row, float]] = field(default_factory=list)  # in quiet hours: opens
    # opted out or capped (skipped: kept with the run, marked suppressed in its results)
    suppressed: list[tuple[Row, Suppressed]] = field(default_factory=list)

    def command(self, row: Row) -> EngageCommand:
        """The single start a valid row stands for."""
        assert row.to is not None
        return EngageCommand(
            self.flow_sid, self.flow_alias, row.to, self.sender, row.parameters, self.flow_name
        )


def merged(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A row's parameters: the command's, then the row's own over them."""
    return {**shared, **own}


def plan(
    rows: list[Row],
    *,
    flow_sid: str,
    flow_alias: str | None,
    sender: str,
    shared: dict[str, Any],
    policy: Policy,
    info: FlowInfo | None,
    per_second: float,
    clock: ContactClock | None = None,
    when: When | None = None,
    now: float = 0.0,
    suppressed: Mapping[str, Suppressed] | None = None,
) -> Plan:
    """Sort the rows; with ``clock``, find those that would wait for their contact's
    window at their due time (``when``, per contact's zone; else ``now``); the contacts
    in ``suppressed`` (opted out or capped, as the suppression list said) are skipped."""
    suppressed = suppressed or {}
    name = info.name if info else None
    result = Plan(flow_sid, flow_alias, name, sender)
    seen: set[str] = set()
    for row in rows:
        if shared:  # else the row as read (no copy of 100,000 rows)
            row = Row(
                row.number,
                row.typed,
                row.to,
                merged(shared, row.parameters),
                row.problem,
                row.facts,
            )
        if row.to is None or row.problem:
            result.invalid.append(row)
            continue
        if row.to in seen:
            result.duplicates.append(row)
            continue
        seen.add(row.to)
        known = row.facts  # as read: no number is parsed twice
        reason = channel_mismatch(row.to, sender) or destination_refusal(
            policy, result.command(row), known
        )
        due = now
        if not reason and when is not None:
            try:
                zones = clock.zones(row.to, known) if clock else zones_of(row.to)
                due = due_at(when, zones, now)
            except ValueError as exc:
                reason = f"--at: {exc}"
        opening = clock.opens(flow_sid, row.to, due, known) if clock is not None else None
        if not reason and opening is not None and opening.at is None:
            reason = opening_text(opening)
        if reason:
            result.refused.append((row, reason))
            continue
        if (why := suppressed.get(row.to)) is not None:
            result.suppressed.append((row, why))
            continue
        result.valid.append(row)
        if when is not None:
            result.dues[row.number] = due
        if opening is not None and opening.at is not None:
            result.waiting.append((row, opening.at))
        if info is not None:
            found = findings(info.analysis.parameters, row.parameters)
            if found:
                result.findings.append((row, found))
    seconds = len(result.valid) / per_second if per_second > 0 else 0.0
    return Plan(**{**vars(result), "seconds": seconds})


@dataclass(frozen=True)
class Ends:
    """How a bulk run's started runs are going, from their records: ended (by the widget
    they ended at), failed, still active (checked every ``every`` seconds by the sweep,
    0 when events tell), no longer followed."""

    ended: tuple[tuple[str, int], ...] = ()  # (widget, count), most first
    failed: int = 0
    active: int = 0
    unfollowed: int = 0
    every: float = 0.0

    @property
    def ended_count(self) -> int:
        return sum(count for _, count in self.ended)


def end_moves(state: str, widget: str) -> dict[str, int]:
    """What one started run's end adds to its bulk run's counts: ``s:<state>`` and, for
    an ended run, ``w:<end widget>`` (``?`` when unknown). Pure."""
    return {f"s:{state}": 1} | ({f"w:{widget or '?'}": 1} if state == "ended" else {})


def ends_from(counts: Mapping[str, int], started: int, every: float = 0.0) -> Ends:
    """The tally of the runs that ended, from their counts (``s:<state>``, and
    ``w:<widget>`` for ended ones), of ``started``. Pure."""
    widgets = {name[2:]: n for name, n in counts.items() if name.startswith("w:") and n}
    ended = tuple(sorted(widgets.items(), key=lambda item: (-item[1], item[0])))
    states = {name[2:]: n for name, n in counts.items() if name.startswith("s:")}
    active = max(0, started - sum(states.values()))
    return Ends(ended, states.get("failed", 0), active, states.get("unfollowed", 0), every)


@dataclass(frozen=True)
class Progress:
    """How far a bulk run has got, as its progress message shows it."""

    run_id: str
    flow: str  # the flow's label
    starter: str
    total: int
    started: int = 0
    failed: int = 0
    unknown: int = 0
    cancelled: int = 0
    suppressed: int = 0  # opted out or capped: skipped
    status: str = "running"  # running | paused | cancelled | done
    elapsed: float = 0.0  # seconds since the start
    note: str = ""  # e.g. why it paused
    ends: Ends | None = None  # how the started runs are going, once any has ended
    waiting: int = 0  # rows waiting for their contact's window (or the run's --at)
    next_opens: float | None = None  # when the first of them is due

    @property
    def done(self) -> int:
        return self.started + self.failed + self.unknown + self.cancelled + self.suppressed

    @property
    def left(self) -> int:
        return max(0, self.total - self.done)

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        sent = self.started + self.failed + self.unknown
        return sent / self.elapsed if self.elapsed > 0 else 0.0


def bar(done: int, total: int, width: int = 20) -> str:
    """``▓▓▓▓░░░░ 50%``"""
    share = done / total if total else 1.0
    filled = round(share * width)
    return "\u2593" * filled + "\u2591" * (width - filled) + f" {round(share * 100)}%"
