"""Rates as the configuration writes them (bot.domain.rates)."""

from __future__ import annotations

import pytest

from bot.domain.rates import Rate


@pytest.mark.parametrize(
    ("text", "amount", "seconds"),
    [
        ("10/minute", 10, 60),
        ("20/second", 20, 1),
        ("5 per second", 5, 1),
        ("2/3 hours", 2, 10800),
        ("10/2minute", 10, 120),
        ("1/day", 1, 86400),
        (" 10 / Minute ", 10, 60),
        ("100/hours", 100, 3600),
        ("0/minute", 0, 60),  # allows nothing
    ],
)
def test_rates_read(text: str, amount: int, seconds: float) -> None:
    assert Rate.parse(text) == Rate(amount, seconds)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10",
        "minute",
        "10/0 minutes",
        "10/fortnight",
        "-1/second",
        "100/hour;5/minute",
        "1.5/second",
        "10 minute",
    ],
)
def test_what_is_not_a_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be a rate such as 10/minute"):
        Rate.parse(text)


def test_per_second() -> None:
    assert Rate.parse("30/minute").per_second == 0.5
