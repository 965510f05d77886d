"""Rates as the configuration writes them: ``10/minute``, ``20/second``, ``5 per second``,
``2/3 hours``. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(
    r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(\d+)?\s*(second|minute|hour|day)s?\s*$", re.IGNORECASE
)
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Rate:
    """``amount`` uses every ``seconds``."""

    amount: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.amount / self.seconds

    @classmethod
    def parse(cls, text: str) -> Rate:
        """``N/unit``, ``N per unit`` or ``N/M units`` (second, minute, hour, day); ``0/…``
        allows nothing. Raises ValueError (which does not echo the text)."""
        found = _RATE.match(text)
        if found is None or found.group(2) == "0":
            raise ValueError("must be a rate such as 10/minute or 20/second")
        count, multiple, unit = found.groups()
        return cls(int(count), int(multiple or 1) * _SECONDS[unit.lower()])
