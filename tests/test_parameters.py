"""One set of parameter rules for the command, the form and CSV files (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain import parameters
from bot.domain.command import Defaults
from bot.domain.errors import CommandError, ParameterError
from bot.domain.grammar import parse

DEFAULTS = Defaults(flow_sid="FW" + "a" * 32, sender="+16175550100")


def test_dotted_keys_nest_and_conflicts_are_refused() -> None:
    assert parameters.nest([("a.b", 1), ("a.c", 2)]) == {"a": {"b": 1, "c": 2}}
    for pairs in ([("a", 1), ("a.b", 2)], [("a.b", 1), ("a", 2)], [("a", 1), ("a", 2)]):
        with pytest.raises(ParameterError, match="conflicting keys"):
            parameters.nest(pairs)


@pytest.mark.parametrize("key", ["", "a..b", ".a", "a.", "$weird key!", "flow data", "a/b"])
def test_keys_outside_the_rules_are_refused(key: str) -> None:
    with pytest.raises(ParameterError):
        parameters.nest([(key, "x")])


def test_depth_counts_dotted_keys_and_json_together() -> None:
    at_cap = ".".join(["k"] * 31)
    assert parameters.nest([(at_cap, {"x": 1})])  # 31 + 1 = 32 levels
    with pytest.raises(ParameterError, match="at most 32"):
        parameters.nest([(at_cap, {"x": {"y": 1}})])
    with pytest.raises(ParameterError, match="nested too deeply"):
        parameters.nest([(".".join(["k"] * 5000), "x")])  # no recursion, no crash


def test_the_form_box_takes_the_same_items_as_the_command() -> None:
    text = "plan=gold\n\ncustomer.name = Zeke \nscore:=3\ntags:=[1, 2]"
    assert parameters.parse_lines(text) == {
        "plan": "gold",
        "customer": {"name": "Zeke"},
        "score": 3,
        "tags": [1, 2],
    }
    command = parse("+16175551212 plan=gold customer.name=Zeke score:=3 tags:=[1,2]", DEFAULTS)
    assert command.parameters == parameters.parse_lines(text)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("no equals sign", "one key=value a line"),
        ("=value", "one key=value a line"),
        ("flow data=x", "bad key"),
        ("n:=NaN", "bad JSON"),
        ("n:=1e999", "too large"),
        ("a=1\na.b=2", "conflicting keys"),
    ],
)
def test_the_form_box_refuses_what_the_command_refuses(text: str, problem: str) -> None:
    with pytest.raises(ParameterError, match=problem):
        parameters.parse_lines(text)


def test_the_command_reports_parameter_errors_as_command_errors_naming_the_item() -> None:
    with pytest.raises(CommandError) as caught:
        parse("+16175551212 a=1 a.b=2", DEFAULTS)
    assert caught.value.token == "a.b=2"
    assert "conflicting keys" in str(caught.value)


_segment = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)


@given(st.lists(st.tuples(st.lists(_segment, min_size=1, max_size=40), st.text()), max_size=8))
def test_nest_either_builds_what_was_given_or_says_why(
    items: list[tuple[list[str], str]],
) -> None:
    pairs = [(".".join(path), value) for path, value in items]
    problem: str | None = None
    built: dict[str, Any] = {}
    try:
        built = parameters.nest(pairs)
    except ParameterError as exc:
        problem = exc.problem
    if problem is not None:  # a conflict (a key given twice or nested into), said
        assert "conflicting keys" in problem or "nested too deeply" in problem
        return
    for key, value in pairs:  # every key reads back, at its place
        node: Any = built
        for segment in key.split("."):
            node = node[segment]
        assert node == value


@pytest.mark.parametrize(
    ("text", "built"),
    [
        ('a=1\n\n b = two words \nc:={"x": 1}', {"a": "1", "b": "two words", "c": {"x": 1}}),
        ("a.b=1\na.c=2", {"a": {"b": "1", "c": "2"}}),
        ("n := 5", {"n": 5}),
        ("", {}),
    ],
)
def test_parse_lines_builds(text: str, built: dict[str, object]) -> None:
    assert parameters.parse_lines(text) == built


@pytest.mark.parametrize(
    ("text", "says", "token"),
    [
        ("nope", "write one key=value a line ('nope' is not)", "nope"),
        ("=1", "write one key=value a line ('=1' is not)", "=1"),
        ("  \nx", "write one key=value a line ('x' is not)", "x"),
        (
            "c:={bad",
            "bad JSON for 'c': Expecting property name enclosed in double quotes",
            "c:={bad",
        ),
    ],
)
def test_parse_lines_refuses(text: str, says: str, token: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parameters.parse_lines(text)
    assert str(refused.value) == says
    assert refused.value.token == token
