"""Spans of time, read one way and written one way wherever the bot meets them. Pure.

- ``parse_span``: ``30s``, ``90m``, ``2h``, ``1h30m``, ``7d``, ``4w`` -> seconds (``--in``,
  ``--since``).
- ``duration``: seconds -> ``45 s``, ``3 min 12 s``, ``2 h 5 min``, ``2 d 4 h``: the two
  largest units that are not zero (cards, progress, schedules, quiet hours).
- ``period``: a report's window, ``7 days``, ``24 h``, ``1 h 30 min``.
"""

from __future__ import annotations

import re
from typing import Literal

_PART = re.compile(r"(\d+)(sec|min|s|m|h|d|w)")
SPAN_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_WRITTEN = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def parse_span(text: str) -> int:
    """Seconds in ``text``: numbers each followed by a unit (s, m or min, h, d, w), with
    or without spaces, any case: ``90m``, ``1h30m``, ``2 d``. Raises ValueError (which
    does not echo the text) for anything else, or for no time at all."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError("not a span of time")
    seconds = sum(int(n) * SPAN_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("a span of no time")
    return seconds


def duration(
    seconds: float,
    *,
    smallest: Literal["s", "min"] = "s",
    largest: Literal["d", "h"] = "d",
) -> str:
    """``45 s``, ``3 min 12 s``, ``2 h 5 min``, ``2 d 4 h``: the two largest units that
    are not zero. ``smallest="min"``: rounded to minutes from a minute up (``in 3 h
    10 min``); ``largest="h"``: no days (``36 h``). Negative spans are 0 s."""
    total = max(0, round(seconds))
    if smallest == "min" and total >= 60:
        total = round(total / 60) * 60
    units = [(name, size) for name, size in _WRITTEN if not (largest == "h" and name == "d")]
    shown: list[str] = []
    for name, size in units:
        count, total = divmod(total, size)
        if count and len(shown) < 2:
            shown.append(f"{count} {name}")
        elif shown:
            break  # the next unit down is zero: two units said, or one and a zero
    return " ".join(shown) or "0 s"


def period(seconds: float) -> str:
    """A report's window: ``7 days`` (whole days from two), else ``24 h``, ``1 h 30 min``."""
    if seconds >= 2 * 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)} days"
    return duration(seconds, smallest="min", largest="h")
