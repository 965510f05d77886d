"""What ``/engage report`` and the Home tab count. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """What a set of records did. Pure data."""

    total: int
    by_state: tuple[tuple[str, int], ...] = ()  # most first
    funnel: tuple[tuple[str, int], ...] = ()  # end widget -> ended runs, most first
    answers: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = ()  # field -> top answers
    failures: tuple[tuple[str, int], ...] = ()  # Twilio code -> starts refused
    answered: int = 0  # runs with at least one answer
