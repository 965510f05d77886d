"""One set of parameter rules for the command, the form and CSV files (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain import parameters
from bot.domain.command import Defaults
from bot.domain.errors import CommandError, ParameterError
from bot.domain.grammar import parse
from tests.budget import examples

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
@settings(max_examples=examples(100))
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


# -- the boundaries: 200 characters shown, 1,000 in a key, 32 levels -----------------


def test_a_key_of_exactly_the_most_characters_is_a_key() -> None:
    key = "k" * parameters.MAX_KEY_CHARS
    assert parameters.key_path(key) == (key,)


def test_a_key_one_character_longer_is_refused_showing_its_first_200() -> None:
    key = "k" * (parameters.MAX_KEY_CHARS + 1)
    with pytest.raises(ParameterError) as refused:
        parameters.key_path(key)
    assert str(refused.value) == "the key is too long (1001 characters)"
    assert refused.value.token == "k" * 199 + "…"


def test_what_is_shown_of_a_token_is_cut_past_200_characters() -> None:
    exactly = "x" * 199 + "."  # 200: shown whole
    with pytest.raises(ParameterError) as whole:
        parameters.check_depth(parameters.MAX_DEPTH + 1, exactly)
    assert whole.value.token == exactly
    with pytest.raises(ParameterError) as cut:
        parameters.check_depth(parameters.MAX_DEPTH + 1, exactly + "y")
    assert cut.value.token == "x" * 199 + "…"
    assert str(cut.value) == "the parameters are nested too deeply (33 levels; at most 32)"


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        (1, 0),
        ([], 1),
        ([1, [2]], 2),
        ({"a": {"b": [1]}}, 3),
        ([[], [[]]], 3),
        ({"a": 1, "b": {"c": {}}}, 3),
        ([[[]], []], 3),  # the deepest branch, wherever it is
    ],
)
def test_depth(value: object, levels: int) -> None:
    assert parameters.depth(value) == levels


def test_nested_exactly_32_deep_passes_and_33_is_refused() -> None:
    parameters.check_depth(parameters.depth(parameters.loads("[" * 32 + "]" * 32)), "x")
    with pytest.raises(ParameterError, match=r"^the parameters are nested too deeply \(33 levels"):
        parameters.check_depth(parameters.depth(parameters.loads("[" * 33 + "]" * 33)), "x")


def test_loads_refusals_say_why() -> None:
    with pytest.raises(ValueError, match=r"^NaN is not valid JSON$"):
        parameters.loads("NaN")
    with pytest.raises(ValueError, match=r"^nested too deeply \(at most 32 levels\)$"):
        parameters.loads("[" * 2000 + "]" * 2000)


@pytest.mark.parametrize(
    ("text", "says", "token"),
    [
        ("a=1\na.b=2", "conflicting keys: 'a' is already set", "a.b=2"),
        ("a=1\na=2", "conflicting keys: 'a' is set twice", "a=2"),
        ("a.b.c=1\na.b.c=2", "conflicting keys: 'a.b.c' is set twice", "a.b.c=2"),
        ("a:=1\na:=2", "conflicting keys: 'a' is set twice", "a:=2"),
    ],
)
def test_conflicting_keys_say_which(text: str, says: str, token: str) -> None:
    with pytest.raises(ParameterError) as refused:
        parameters.parse_lines(text)
    assert str(refused.value) == says
    assert refused.value.token == token


def test_an_equals_sign_in_a_value_is_the_value() -> None:
    assert parameters.parse_lines("a=b=c") == {"a": "b=c"}


def test_an_empty_key_in_json_is_refused_with_the_json() -> None:
    built = parameters.Builder()
    with pytest.raises(ParameterError) as refused:
        built.merge(parameters.loads('{"": 1}'), '{"": 1}')
    assert str(refused.value) == "empty key in the JSON object"
    assert refused.value.token == '{"": 1}'


def test_parse_lines_into_a_builder_adds_to_it() -> None:
    built = parameters.Builder()
    built.set("x", "1", "x=1")
    assert parameters.parse_lines("y=2", into=built) == {"x": "1", "y": "2"}
