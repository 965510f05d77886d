"""One grammar for spans of time and one way of writing them (bot.domain.durations)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.durations import SPAN_UNITS, duration, parse_span, period


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("30sec", 30),
        ("90m", 5400),
        ("90min", 5400),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2 D", 172800),
        ("4w", 4 * 7 * 86400),
        (" 7d ", 7 * 86400),
    ],
)
def test_spans_read_as_seconds(text: str, seconds: int) -> None:
    assert parse_span(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "m", "90", "90x", "-5m", "1.5h", "h1", "5m extra", "0m", "0s0m"]
)
def test_what_is_not_a_span_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="span"):
        parse_span(text)


@given(
    st.lists(
        st.tuples(st.integers(1, 999), st.sampled_from(sorted(SPAN_UNITS))), min_size=1, max_size=4
    )
)
def test_a_span_is_the_sum_of_its_parts(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    assert parse_span(text) == sum(n * SPAN_UNITS[unit] for n, unit in parts)


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (-5, "0 s"),
        (0, "0 s"),
        (0.4, "0 s"),
        (0.6, "1 s"),
        (59, "59 s"),
        (60, "1 min"),
        (61, "1 min 1 s"),
        (192, "3 min 12 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h"),
        (3601, "1 h"),  # the two largest units that are not zero
        (7500, "2 h 5 min"),
        (86399, "23 h 59 min"),
        (86400, "1 d"),
        (187200, "2 d 4 h"),
    ],
)
def test_durations_say_the_two_largest_units(seconds: float, written: str) -> None:
    assert duration(seconds) == written


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(40, "40 s"), (89, "1 min"), (90, "2 min"), (11400, "3 h 10 min"), (187200, "2 d 4 h")],
)
def test_to_the_minute_from_a_minute_up(seconds: float, written: str) -> None:
    assert duration(seconds, smallest="min") == written


def test_without_days_hours_go_past_a_day() -> None:
    assert duration(36 * 3600, largest="h") == "36 h"


@pytest.mark.parametrize(
    ("seconds", "written"),
    [
        (7 * 86400, "7 days"),
        (2 * 86400, "2 days"),
        (86400, "24 h"),
        (5400, "1 h 30 min"),
        (1800, "30 min"),
    ],
)
def test_report_windows(seconds: float, written: str) -> None:
    assert period(seconds) == written


def test_the_shortest_span_and_the_refusals_words() -> None:
    assert parse_span("1s") == 1
    with pytest.raises(ValueError, match=r"^not a span of time$"):
        parse_span("soon")
    with pytest.raises(ValueError, match=r"^a span of no time$"):
        parse_span("0s")


def test_a_report_window_is_rounded_to_the_minute() -> None:
    assert period(5459) == "1 h 31 min"  # not "1 h 30 min": minutes, rounded
    assert period(9 * 86400 + 1) == "216 h"  # not whole days: hours
