"""Rows from CSV files as people export them, and the preview's plan (pure)."""

from __future__ import annotations

import pytest

from bot.domain.bulk_input import decode, read_csv
from bot.domain.bulk_plan import Progress, bar, plan
from bot.domain.errors import CsvError, TooManyRows
from bot.domain.flows import analyse
from bot.domain.policy import Policy
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
    rows = read_csv(text, region="US").rows
    assert [r.to for r in rows] == contacts
    assert [r.parameters for r in rows] == parameters
    assert rows[0].number == 2  # as in a spreadsheet: the header is row 1


def test_bad_rows_are_kept_with_the_reason() -> None:
    rows = read_csv("to,x\n+16175551212,1\nnope,2\n,3\n", region="US").rows
    assert [r.to is None for r in rows] == [False, True, True]
    assert rows[1].problem
    assert rows[2].problem == "no contact in this row"


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "empty"), ("to,x\n", "no rows"), ("a,b\nx,y\nz,w\n", "no contact column")],
)
def test_files_that_are_not_lists_of_contacts(text: str, problem: str) -> None:
    with pytest.raises(CsvError, match=problem):
        read_csv(text)


def test_too_many_rows_says_so_before_reading_them() -> None:
    text = "to\n" + "+16175551212\n" * 11
    with pytest.raises(TooManyRows) as caught:
        read_csv(text, max_rows=10)
    assert (caught.value.count, caught.value.limit) == (11, 10)


def test_headers_that_cannot_name_parameters_refuse_the_file() -> None:
    for header in ("to,a,a.b", "to,a..b", "to,$weird key!", "to,flow data"):
        with pytest.raises(CsvError, match="header cannot name parameters"):
            read_csv(f"{header}\n+16175551212,1,2\n")
    sheet = read_csv("to,a.b,a.c\n+16175551212,1,2\n")
    assert sheet.rows[0].parameters == {"a": {"b": "1", "c": "2"}}


def test_a_header_nested_a_thousand_deep_is_refused_with_a_reason_not_a_crash() -> None:
    deep = ".".join(f"k{i}" for i in range(1000))
    with pytest.raises(CsvError, match="nested too deeply"):
        read_csv(f"to,{deep}\n+16175551212,x\n")
    at_cap = ".".join(f"k{i}" for i in range(32))
    assert read_csv(f"to,{at_cap}\n+16175551212,x\n").rows[0].parameters
    with pytest.raises(CsvError, match="at most 32"):
        read_csv(f"to,{at_cap}.k32\n+16175551212,x\n")


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("to,name\n+16175551212,José Müller\n".encode(), "utf-8"),
        ("to,name\n+16175551212,José Müller\n".encode("cp1252"), "cp1252"),
        ("to\tname\r\n+16175551212\tJosé Müller\r\n".encode("utf-16"), "utf-16"),
        ("to,name\n+16175551212,José Müller\n".encode("utf-8-sig"), "utf-8-sig"),
        ("to,name\n+16175551212,José Müller\n".encode("utf-32"), "utf-32"),
    ],
)
def test_excel_encodings_are_read_as_written_and_named(data: bytes, encoding: str) -> None:
    sheet = read_csv(data, region="US")
    assert sheet.encoding == encoding
    assert sheet.rows[0].parameters == {"name": "José Müller"}
    assert sheet.rows[0].to == "+16175551212"
    assert sheet.encoding_name  # said in the preview


def test_decode_refuses_a_file_that_lies_about_its_encoding() -> None:
    with pytest.raises(CsvError):
        decode(b"\xff\xfe\x00\xd8")  # a UTF-16 mark, then a lone surrogate


@pytest.mark.parametrize(
    "cell",
    ["line1\n\nline3", "a\u2028b", "a\r\nb", "a\u0085b\u000cc", 'x,"y"\nz'],
)
def test_quoted_cells_keep_their_line_breaks_exactly(cell: str) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    sheet = read_csv(f"to,note\r\n+16175551212,{quoted}\r\n+16175551213,plain\r\n".encode())
    assert [r.parameters.get("note") for r in sheet.rows] == [cell.strip(), "plain"]


def test_the_plan_sorts_rows_and_estimates_the_time() -> None:
    rows = read_csv(
        "to,first_name\n+16175551212,Zeke\n+16175551212,Again\nnope,x\n+19005551234,P\n"
        "+16175551213,\n",
        region="US",
    ).rows
    info_analysis = analyse(defs.SMS_SURVEY)
    from bot.domain.flows import FlowInfo

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
