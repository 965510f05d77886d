"""Reading flow definitions (pure): REST-readiness, the parameters a flow reads, findings."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.flows import Analysis, FlowInfo, Parameters, analyse, findings, parameters_read
from tests import flow_definitions as defs
from tests.budget import examples


@pytest.mark.parametrize(
    ("definition", "required", "optional", "anything"),
    [
        (defs.SMS_SURVEY, {"first_name"}, {"plan", "vip"}, False),
        (defs.VOICE_IVR, {"customer.name", "order.id", "ship-date"}, {"agent_number"}, False),
        (defs.HTTP_REQUEST, {"crm_id", "first_name", "tags"}, set(), False),
        (defs.FUNCTION_CALL, {"account_id"}, {"coupon"}, False),
        (defs.SUBFLOW, {"plan"}, set(), False),
        (defs.READS_EVERYTHING, {"first_name"}, set(), True),
    ],
)
def test_the_parameters_realistic_flows_read(
    definition: dict[str, Any], required: set[str], optional: set[str], anything: bool
) -> None:
    read = analyse(definition).parameters
    assert read == Parameters(frozenset(required), frozenset(optional), anything)


@pytest.mark.parametrize(
    ("text", "required", "optional", "anything"),
    [
        ("{{flow.data.a}}", {"a"}, set(), False),
        ("{{ flow.data.a.b.c }}", {"a.b.c"}, set(), False),
        ("{{flow.data['first-name']}}", {"first-name"}, set(), False),
        ('{{flow.data["x y"].z}}', {"x y.z"}, set(), False),
        ("{{flow.data.items[0].sku}}", {"items"}, set(), False),
        ("{{flow.data.tags.size}}", {"tags"}, set(), False),
        ("{{flow.data.a | default: 'x'}}", set(), {"a"}, False),
        ("{{flow.data.a | upcase | default: 'x'}}", set(), {"a"}, False),
        ("{% if flow.data.vip %}yes{% endif %}", set(), {"vip"}, False),
        ("{%- for i in flow.data.list -%}{{i}}{%- endfor -%}", set(), {"list"}, False),
        ("{{flow.data.a}} {{flow.data.a | default: 1}}", {"a"}, set(), False),
        ("{{flow.data}}", set(), set(), True),
        ("{{flow.data[key]}}", set(), set(), True),
        ("{{ flow.data | json }}", set(), set(), True),
        ("flow.data.a outside Liquid", set(), set(), False),
        ("{{myflow.data.a}} {{flow.database}}", set(), set(), False),
        ("{{flow.channel.address}} {{contact.channel.address}}", set(), set(), False),
        # Through assign: what the assigned name is output as decides (python-liquid's tree).
        ("{% assign x = flow.data.a %}{{ x }}", {"a"}, set(), False),
        ("{% assign x = flow.data.a %}{{ x.b }}", {"a"}, set(), False),
        ("{% assign x = flow.data.a | default: 1 %}{{ x }}", set(), {"a"}, False),
        ("{% assign x = flow.data.a %}{% if x %}y{% endif %}", set(), {"a"}, False),
        ("{% assign x = flow.data.a %}", set(), {"a"}, False),  # read, never needed
        ("{{ flow.data.a | append: flow.data.b }}", {"a"}, {"b"}, False),
        ("{% assign k = flow.data %}{{ k.name }}", set(), set(), True),
        (
            "{% if flow.data.a > 1 and flow.data.b %}{{flow.data.c}}{% endif %}",
            {"c"},
            {"a", "b"},
            False,
        ),
        (
            "{% case flow.data.plan %}{% when 'gold' %}{{flow.data.n}}{% endcase %}",
            {"n"},
            {"plan"},
            False,
        ),
        # Liquid the parser cannot read: the flow may read anything.
        ("{% twilio_only_tag flow.data.a %}", set(), set(), True),
        ("{{ flow.data.a | }}", set(), set(), True),
        ("{% unknown %} no flow data here", set(), set(), False),
    ],
)
def test_references_in_liquid(
    text: str, required: set[str], optional: set[str], anything: bool
) -> None:
    read = parameters_read({"states": [{"properties": {"body": text}}]})
    assert read == Parameters(frozenset(required), frozenset(optional), anything)


@pytest.mark.parametrize(
    ("definition", "ready"),
    [
        (defs.SMS_SURVEY, True),
        (defs.NOT_REST_READY, False),
        (defs.flow(first=""), False),
        (defs.flow(first="   "), False),
        ({"initial_state": "Trigger"}, None),  # no Trigger widget: not for judging
        ({"states": "nope"}, None),
        ([], None),
    ],
)
def test_rest_readiness(definition: Any, ready: bool | None) -> None:
    analysis = analyse(definition)
    assert analysis.rest_ready is ready
    if ready is None:
        assert analysis.parameters.reads_anything  # nothing about it is refused


READ = analyse(defs.SMS_SURVEY).parameters


@pytest.mark.parametrize(
    ("parameters", "missing", "unknown"),
    [
        ({"first_name": "Zeke"}, (), ()),
        ({"first_name": "Zeke", "plan": "gold", "vip": True}, (), ()),
        ({"frist_name": "Zeke"}, ("first_name",), (("frist_name", "first_name"),)),
        ({}, ("first_name",), ()),
        ({"first_name": "Z", "colour": "red"}, (), (("colour", None),)),
        ({"first_name": {"given": "Z"}}, (), ()),  # the flow reads the whole object
    ],
)
def test_findings(
    parameters: dict[str, Any], missing: tuple[str, ...], unknown: tuple[Any, ...]
) -> None:
    found = findings(READ, parameters)
    assert (found.missing, found.unknown) == (missing, unknown)
    assert bool(found) is bool(missing or unknown)


def test_nested_findings() -> None:
    read = analyse(defs.VOICE_IVR).parameters
    given = {"customer": {"name": "Z"}, "order": {"id": 7, "eta": "x"}, "ship-date": "today"}
    found = findings(read, given)
    assert found.missing == ()
    assert found.unknown == (("order.eta", "order.id"),)  # the closest name it does read
    assert findings(read, {"customer": "Zeke", "ship-date": "x"}).missing == (
        "customer.name",
        "order.id",
    )


def test_a_flow_that_reads_everything_is_checked_only_for_what_is_missing() -> None:
    read = analyse(defs.READS_EVERYTHING).parameters
    found = findings(read, {"anything": 1})
    assert found.missing == ("first_name",)
    assert found.unknown == ()


def test_flow_info_round_trips_through_the_store() -> None:
    from bot.studio.catalog import STORED_FLOW, stored_flow

    info = FlowInfo("FW" + "a" * 32, "Survey", "published", 7, analyse(defs.SMS_SURVEY))
    assert stored_flow(STORED_FLOW.dump_json(info).decode()) == info
    odd = FlowInfo("FW" + "b" * 32, None, None, 0, Analysis(None, Parameters(reads_anything=True)))
    assert stored_flow(STORED_FLOW.dump_json(odd).decode()) == odd
    assert stored_flow('{"sid": "FW1", "required": []}') is None  # an older shape: read again


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    _containers,
    max_leaves=30,
)
LIQUID = st.lists(
    st.sampled_from(
        [
            "{{",
            "}}",
            "{%",
            "%}",
            "flow",
            ".",
            "data",
            "[",
            "]",
            "'",
            '"',
            "a",
            "-",
            "|",
            "default",
            " ",
            "0",
            "size",
            "flow.data",
            "{{flow.data",
            "x",
        ]
    ),
    max_size=20,
).map("".join)


@settings(max_examples=examples(300), deadline=None)
@given(
    JSON
    | st.dictionaries(
        st.just("states"), st.lists(st.dictionaries(st.text(max_size=5), LIQUID | JSON))
    )
)
def test_never_raises_on_any_json(definition: Any) -> None:
    analysis = analyse(definition)
    found = findings(analysis.parameters, {"a": {"b": 1}, "c": [1]})
    assert isinstance(found.missing, tuple)


@settings(max_examples=examples(300), deadline=None)
@given(LIQUID)
def test_never_raises_on_any_liquid(text: str) -> None:
    read = parameters_read({"states": [{"type": "trigger"}, {"properties": {"body": text}}]})
    assert not (read.required & read.optional)
