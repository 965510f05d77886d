"""Rows from CSV files as people export them, and the preview's plan (pure)."""

from __future__ import annotations

import pytest

from bot.bulk_input import TooManyRows, nest, read_csv
from bot.bulk_plan import Progress, bar, plan
from bot.flows import analyse
from bot.policy import Policy
from tests import flow_definitions as defs
from tests.peers import SURVEY_SID


@pytest.mark.parametrize(
    ("text", "contacts", "parameters"),
    [
        ("phone,first_name\n+16175551212,Zeke\n", ["+16175551212"], [{"first_name": "Zeke"}]),
        ("\ufeffTo,Plan\r\n+16175551212,gold\r\n", ["+16175551212"], [{"Plan": "gold"}]),
        (
            "name;number\nZeke;+16175551212\nAnn;+16175551213\n",
            ["+16175551212", "+16175551213"],
            [{"name": "Zeke"}, {"name": "Ann"}],
        ),
        (
            'contact,note\n+16175551212,"hi, there"\n\n\n+16175551213,\n',
            ["+16175551212", "+16175551213"],
            [{"note": "hi, there"}, {}],
        ),
        (
            "name,cell\nZeke,617-555-1212\nAnn,(617) 555-1213\n",
            ["+16175551212", "+16175551213"],
            [{"name": "Zeke"}, {"name": "Ann"}],
        ),  # found by content
        (
            "to,customer.name,customer.tier\n+16175551212,Zeke,gold\n",
            ["+16175551212"],
            [{"customer": {"name": "Zeke", "tier": "gold"}}],
        ),
    ],
)
def test_csv_files(text: str, contacts: list[str], parameters: list[dict[str, object]]) -> None:
    rows, problem = read_csv(text, region="US")
    assert problem is None
    assert [r.to for r in rows] == contacts
    assert [r.parameters for r in rows] == parameters
    assert rows[0].number == 2  # as in a spreadsheet: the header is row 1


def test_bad_rows_are_kept_with_the_reason() -> None:
    rows, _ = read_csv("to,x\n+16175551212,1\nnope,2\n,3\n", region="US")
    assert [r.to is None for r in rows] == [False, True, True]
    assert rows[1].problem
    assert rows[2].problem == "no contact in this row"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "empty"), ("to,x\n", "no rows"), ("a,b\nx,y\nz,w\n", "no contact column")],
)
def test_files_that_are_not_lists_of_contacts(text: str, problem: str) -> None:
    rows, why = read_csv(text)
    assert rows == []
    assert why is not None
    assert problem in why


def test_too_many_rows_says_so_before_reading_them() -> None:
    text = "to\n" + "+16175551212\n" * 11
    with pytest.raises(TooManyRows) as caught:
        read_csv(text, max_rows=10)
    assert (caught.value.count, caught.value.limit) == (11, 10)


def test_nesting_conflicts() -> None:
    assert nest({"a.b": "1", "a.c": "2"}) == ({"a": {"b": "1", "c": "2"}}, None)
    assert nest({"a": "1", "a.b": "2"})[1] is not None
    assert nest({"a..b": "1"})[1] is not None


def test_the_plan_sorts_rows_and_estimates_the_time() -> None:
    rows, _ = read_csv(
        "to,first_name\n+16175551212,Zeke\n+16175551212,Again\nnope,x\n+19005551234,P\n"
        "+16175551213,\n",
        region="US",
    )
    info_analysis = analyse(defs.SMS_SURVEY)
    from bot.flows import FlowInfo

    info = FlowInfo(SURVEY_SID, "Survey", "published", 1, info_analysis)
    made = plan(
        rows,
        flow_sid=SURVEY_SID,
        flow_alias="survey",
        sender="+16175550100",
        shared={"plan": "gold"},
        policy=Policy(),
        info=info,
        per_second=2.0,
    )
    assert [r.to for r in made.valid] == ["+16175551212", "+16175551213"]
    assert [r.number for r in made.duplicates] == [3]
    assert [r.number for r in made.invalid] == [4]
    assert [r.number for r, _ in made.refused] == [5]  # premium rate
    assert [r.number for r, _ in made.findings] == [6]  # no first_name
    assert made.valid[0].parameters == {"plan": "gold", "first_name": "Zeke"}
    assert made.seconds == 1.0


def test_progress() -> None:
    p = Progress("r", "survey", "U1", 10, started=4, failed=1, unknown=0, cancelled=0, elapsed=5)
    assert (p.done, p.left, p.rate) == (5, 5, 1.0)
    assert bar(5, 10, width=10) == "\u2593" * 5 + "\u2591" * 5 + " 50%"
