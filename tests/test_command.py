from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.command import (
    BulkCommand,
    Defaults,
    EngageCommand,
    FlowsCommand,
    HelpCommand,
    ReportCommand,
    StatusCommand,
)
from bot.domain.errors import CommandError
from bot.domain.grammar import argv_to_text, flow_in_text, parse, resolve_flow, sender_for
from tests.budget import examples

ONBOARDING = "FW" + "a" * 32
SURVEY = "FW" + "b" * 32
OTHER = "FW" + "c" * 32
SENDER = "+16175550100"
DEFAULTS = Defaults(
    flows={"onboarding": ONBOARDING, "survey": SURVEY},
    flow_sid=ONBOARDING,
    sender=SENDER,
    region="US",
)


def engage(text: str, defaults: Defaults = DEFAULTS) -> EngageCommand:
    command = parse(text, defaults)
    assert isinstance(command, EngageCommand)
    return command


@pytest.mark.parametrize(
    ("text", "parameters"),
    [
        ("+16175551212", {}),
        ("+16175551212 first_name=Zeke", {"first_name": "Zeke"}),
        ("+16175551212 first_name=Zeke plan=gold", {"first_name": "Zeke", "plan": "gold"}),
        ('+16175551212 name="Zeke Smith"', {"name": "Zeke Smith"}),
        ("+16175551212 name='Zeke Smith'", {"name": "Zeke Smith"}),
        ('+16175551212 quote="say \\"hi\\""', {"quote": 'say "hi"'}),
        ('+16175551212 path="C:\\\\x"', {"path": "C:\\x"}),
        ("+16175551212 empty=", {"empty": ""}),
        ('+16175551212 empty=""', {"empty": ""}),
        ("+16175551212 eq=a=b", {"eq": "a=b"}),
        ("+16175551212 note=O'Brien", {"note": "O'Brien"}),
        ("+16175551212 count:=3", {"count": 3}),
        ("+16175551212 ratio:=0.5 vip:=true none:=null", {"ratio": 0.5, "vip": True, "none": None}),
        ('+16175551212 tags:=["a", "b c"]', {"tags": ["a", "b c"]}),
        ('+16175551212 obj:={"k": [1, {"n": "x y"}]}', {"obj": {"k": [1, {"n": "x y"}]}}),
        ('+16175551212 s:="quoted string"', {"s": "quoted string"}),
        ("+16175551212 customer.name=Zeke", {"customer": {"name": "Zeke"}}),
        (
            "+16175551212 customer.name=Zeke customer.vip:=true customer.address.city=Boston",
            {"customer": {"name": "Zeke", "vip": True, "address": {"city": "Boston"}}},
        ),
        ('+16175551212 {"first_name": "Zeke", "count": 3}', {"first_name": "Zeke", "count": 3}),
        ('+16175551212 {"a": {"b": [1, 2]}} c=d', {"a": {"b": [1, 2]}, "c": "d"}),
        ("+16175551212 prénom=Zoë", {"prénom": "Zoë"}),
        ("+16175551212 with-dash=1", {"with-dash": "1"}),
        # What Slack does to text
        ("+16175551212 a=x&amp;y b=&lt;tag&gt;", {"a": "x&y", "b": "<tag>"}),
        ("+16175551212 name=\u201cZeke Smith\u201d", {"name": "Zeke Smith"}),
        ("+16175551212 name=\u2018Zeke Smith\u2019", {"name": "Zeke Smith"}),
        ("+16175551212 note=O\u2019Brien", {"note": "O'Brien"}),
        ("+16175551212 tags:=[\u201ca\u201d]", {"tags": ["a"]}),
        ("+16175551212 \u00a0a=1", {"a": "1"}),
        (
            "+16175551212 url=<https://example.com/x?a=b|example.com/x>",
            {"url": "https://example.com/x?a=b"},
        ),
        ("+16175551212 url=<https://example.com>", {"url": "https://example.com"}),
        ("+16175551212 mail=<mailto:z@example.com|z@example.com>", {"mail": "z@example.com"}),
        ("+16175551212 other=<tel:+14155550000|+1 415>", {"other": "+14155550000"}),
        ("+16175551212 dash=a\u2014b", {"dash": "a\u2014b"}),  # long dashes in values stay
    ],
)
def test_parameters(text: str, parameters: dict[str, Any]) -> None:
    command = engage(text)
    assert command.parameters == parameters
    assert command.to == "+16175551212"


@pytest.mark.parametrize(
    ("text", "to"),
    [
        ("+16175551212", "+16175551212"),
        ("+1 617 555 1212 a=1", "+16175551212"),
        ("(617) 555-1212", "+16175551212"),
        ("617.555.1212", "+16175551212"),
        ("617-555-1212", "+16175551212"),
        ('"+1 617 555 1212" a=1', "+16175551212"),
        ("<tel:+16175551212|+1 617 555 1212> a=1", "+16175551212"),
        ("whatsapp:+16175551212 --from whatsapp:+16175550100", "whatsapp:+16175551212"),
        ("+44 7911 123456", "+447911123456"),
    ],
)
def test_contact_forms(text: str, to: str) -> None:
    assert engage(text).to == to


@pytest.mark.parametrize(
    ("text", "flow", "alias", "sender"),
    [
        ("+16175551212", ONBOARDING, "onboarding", SENDER),
        ("survey +16175551212", SURVEY, "survey", SENDER),
        ("SURVEY +16175551212", SURVEY, "survey", SENDER),
        ("+16175551212 --flow survey", SURVEY, "survey", SENDER),
        ("+16175551212 --flow=survey", SURVEY, "survey", SENDER),
        (f"+16175551212 --flow {OTHER}", OTHER, None, SENDER),
        (f"+16175551212 --flow {SURVEY}", SURVEY, "survey", SENDER),
        (f"{OTHER} +16175551212", OTHER, None, SENDER),
        ("+16175551212 \u2014flow survey", SURVEY, "survey", SENDER),  # macOS turns -- into —
        ("+16175551212 \u2013flow survey", SURVEY, "survey", SENDER),
        ("+16175551212 --from +14155550000", ONBOARDING, "onboarding", "+14155550000"),
        ("+16175551212 --from 415-555-0000", ONBOARDING, "onboarding", "+14155550000"),
        (
            "whatsapp:+16175551212 --from whatsapp:+14155550000",
            ONBOARDING,
            "onboarding",
            "whatsapp:+14155550000",
        ),
        ("+16175551212 --from <tel:+14155550000|x> a=1", ONBOARDING, "onboarding", "+14155550000"),
        ("--from +14155550000 --flow survey +16175551212", SURVEY, "survey", "+14155550000"),
    ],
)
def test_flow_and_sender(text: str, flow: str, alias: str | None, sender: str) -> None:
    command = engage(text)
    assert (command.flow_sid, command.flow_alias, command.sender) == (flow, alias, sender)


def test_flows_without_a_default() -> None:
    one = Defaults(flows={"survey": SURVEY}, sender=SENDER)
    assert engage("+16175551212", one).flow_sid == SURVEY
    two = Defaults(flows={"onboarding": ONBOARDING, "survey": SURVEY}, sender=SENDER)
    assert engage("survey +16175551212", two).flow_sid == SURVEY
    with pytest.raises(CommandError, match="which flow"):
        parse("+16175551212", two)


@pytest.mark.parametrize("text", ["help", "HELP", "help me", "", "   "])
def test_help(text: str) -> None:
    assert parse(text, DEFAULTS) == HelpCommand()


RUN = "FN" + "e" * 32


def test_flows_and_status() -> None:
    assert parse("flows", DEFAULTS) == FlowsCommand()
    assert parse("FLOWS", DEFAULTS) == FlowsCommand()
    assert parse(f"status {RUN}", DEFAULTS) == StatusCommand(RUN, (ONBOARDING, SURVEY))
    assert parse(f"status {RUN} --flow survey", DEFAULTS) == StatusCommand(RUN, (SURVEY,))
    assert parse(f"status {RUN}", Defaults(flows={"survey": SURVEY})) == StatusCommand(
        RUN, (SURVEY,)
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("flows x", "takes nothing more"),
        ("status", "give one engagement SID"),
        ("status FW" + "a" * 32, "give one engagement SID"),
        (f"status {RUN} {RUN}", "give one engagement SID"),
        (f"status {RUN} a=1", "unexpected 'a=1'"),
        (f"status {RUN} --from +16175550100", "unexpected '--from"),
        (f"status {RUN} --flow nope", "unknown flow 'nope'"),
    ],
)
def test_status_errors(text: str, problem: str) -> None:
    with pytest.raises(CommandError, match=problem):
        parse(text, DEFAULTS)


@pytest.mark.parametrize(
    ("text", "problem", "token"),
    [
        ("+18001234567", "not a valid number", "+18001234567"),
        ("+16175551212 a=1 a=2", "set twice", "a=2"),
        ("+16175551212 a=1 a.b=2", "'a' is already set", "a.b=2"),
        ("+16175551212 a.b=2 a=1", "set twice", "a=1"),
        ("+16175551212 a:={} a.b=2", "'a' is already set", "a.b=2"),
        ('+16175551212 {"a": 1} a=2', "set twice", "a=2"),
        ('+16175551212 {"": 1}', "empty key", '{"": 1}'),
        ("+16175551212 =x", "empty key", "=x"),
        ("+16175551212 :=1", "empty key", ":=1"),
        ("+16175551212 a..b=1", "empty key", "a..b=1"),
        ("+16175551212 .a=1", "empty key", ".a=1"),
        ("+16175551212 a.=1", "empty key", "a.=1"),
        ("+16175551212 a$b=1", "bad key", "a$b=1"),
        ('+16175551212 a="x', "unterminated quote", 'a="x'),
        ("+16175551212 a='x y", "unterminated quote", "a='x y"),
        ('+16175551212 "+1 617', "unterminated quote", '"+1 617'),
        ('+16175551212 a="x"y', "after a closing quote", 'a="x"y'),
        ("+16175551212 a:={bad", "bad JSON", "a:={bad"),
        ("+16175551212 a:=[1,", "bad JSON", "a:=[1,"),
        ("+16175551212 a:=", "needs a JSON value", "a:="),
        ("+16175551212 a:= 1", "needs a JSON value", "a:="),
        ("+16175551212 a:=NaN", "bad JSON", "a:=NaN"),
        ("+16175551212 a:=Infinity", "bad JSON", "a:=Infinity"),
        ("+16175551212 a:=[1]x", "after the JSON value", "a:=[1]x"),
        ("+16175551212 {bad}", "bad JSON", "{bad}"),
        ("+16175551212 --to x", "unknown option --to", "--to"),
        ("+16175551212 --flow", "--flow needs a value", "--flow"),
        ("+16175551212 --from", "--from needs a value", "--from"),
        ("+16175551212 --flow a --flow b", "given twice", "--flow b"),
        ("+16175551212 --flow nope", "unknown flow 'nope'", "nope"),
        ("survey +16175551212 --flow survey", "flow is given twice", "--flow survey"),
        ("nope +16175551212", "neither a phone number nor a flow", "nope"),
        ("+16175551212 --from 12", "--from", "--from 12"),
        ("+16175551212 zeke", "unexpected 'zeke'", "zeke"),
        ("survey", "no contact number", None),
        ("a=1", "no contact number", None),
        ("+16175551212 a:=" + "[" * 5000, "nested too deeply", None),
    ],
)
def test_errors_name_the_token(text: str, problem: str, token: str | None) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text, DEFAULTS)
    assert problem in caught.value.problem
    assert caught.value.token == token


def test_no_region_means_national_numbers_are_refused() -> None:
    defaults = Defaults(flow_sid=ONBOARDING, sender=SENDER)
    with pytest.raises(CommandError, match="no country code"):
        parse("617-555-1212", defaults)


def test_no_flow_configured() -> None:
    with pytest.raises(CommandError, match="no flow is configured"):
        parse("+16175551212", Defaults(sender=SENDER))
    with pytest.raises(CommandError, match="no named flows"):
        parse("+16175551212 --flow survey", Defaults(flow_sid=ONBOARDING, sender=SENDER))


def test_no_sender_configured() -> None:
    with pytest.raises(CommandError, match="no sender"):
        parse("+16175551212", Defaults(flow_sid=ONBOARDING))


TOKENS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "+16175551212",
            "617",
            "555-1212",
            "a=1",
            "a:=",
            "a.b=",
            ":=",
            "=",
            '"',
            "'",
            "{",
            "}",
            "[",
            "]",
            "--from",
            "--flow",
            "\u2014flow",
            "survey",
            "help",
            "&amp;",
            "&lt;",
            "<tel:",
            "|",
            ">",
            "<https://x|y>",
            "whatsapp:",
            "\\",
            "\u201c",
            "NaN",
            "a:={",
            "x:=[1,",
        ]
    ),
)


@settings(max_examples=examples(400), deadline=None)
@given(st.lists(TOKENS, max_size=8).map(" ".join))
def test_nothing_but_command_error_escapes(text: str) -> None:
    try:
        result: object = parse(text, DEFAULTS)
    except CommandError as exc:
        result = exc
    assert isinstance(
        result,
        EngageCommand | BulkCommand | HelpCommand | FlowsCommand | StatusCommand | CommandError,
    )
    if isinstance(result, CommandError):
        assert result.problem


@settings(max_examples=examples(300), deadline=None)
@given(st.text(max_size=200))
def test_nothing_but_command_error_escapes_arbitrary_text(text: str) -> None:
    with contextlib.suppress(CommandError):
        parse(text, DEFAULTS)


@settings(max_examples=examples(200), deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True),
        # Curly quotes are read as plain ones (documented), so they are left out here.
        st.text(
            alphabet=st.characters(
                blacklist_categories=["Cs"],
                blacklist_characters="\u201c\u201d\u201e\u201f\u2018\u2019\u201a\u201b\u00a0",
            ),
            max_size=20,
        ),
        max_size=5,
    )
)
def test_quoted_values_round_trip(values: dict[str, str]) -> None:
    items = " ".join(
        f'{key}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for key, value in values.items()
    )
    command = engage(f"+16175551212 {items}")
    expected = {
        k: v.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        for k, v in values.items()
    }
    assert command.parameters == expected


# --- issue 9 and 17: senders, channels, quoting hints, depth, SIDs as typed -------------

MG = "MG" + "0123456789abcdef" * 2
V2 = Defaults(flows={"survey": SURVEY}, flow_sid=ONBOARDING, sender=SENDER, region="US", api="v2")


@pytest.mark.parametrize("typed", [MG, MG.upper().replace("MG", "MG", 1), "mg" + MG[2:]])
def test_a_messaging_service_sender_on_v2(typed: str) -> None:
    if not typed.startswith("MG"):
        with pytest.raises(CommandError, match="--from"):
            parse(f"+16175551212 --from {typed}", V2)
        return
    assert engage(f"+16175551212 --from {typed}", V2).sender == MG


def test_a_messaging_service_sender_is_refused_on_v1_with_the_reason() -> None:
    with pytest.raises(CommandError) as caught:
        parse(f"+16175551212 --from {MG}", DEFAULTS)
    assert "STUDIO_API=v2" in caught.value.problem
    assert caught.value.token == f"--from {MG}"


def test_a_short_mg_sid_is_not_a_sender() -> None:
    with pytest.raises(CommandError, match="not a Messaging Service SID"):
        parse("+16175551212 --from MG1234", V2)


def test_a_flow_may_have_its_own_sender() -> None:
    defaults = Defaults(
        flows={"survey": SURVEY, "onboarding": ONBOARDING},
        flow_sid=ONBOARDING,
        sender=SENDER,
        flow_senders={SURVEY: MG},
        api="v2",
    )
    assert engage("survey +16175551212", defaults).sender == MG
    assert engage("+16175551212", defaults).sender == SENDER
    assert engage("survey +16175551212 --from +14155550000", defaults).sender == "+14155550000"


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        ("whatsapp:+16175551212", "--from whatsapp:+16175550100"),
        ("whatsapp:+16175551212 --from +14155550000", "--from whatsapp:+14155550000"),
        ("+16175551212 --from whatsapp:+14155550000", "--from +14155550000"),
    ],
)
def test_whatsapp_and_sms_do_not_mix(text: str, suggestion: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text, DEFAULTS)
    problem = caught.value.problem
    assert suggestion in problem
    assert "whatsapp:+1" in problem  # both addresses are named
    assert "+16175551212" in problem
    assert "+1415555" in problem or "+16175550100" in problem


def test_a_messaging_service_may_reach_whatsapp() -> None:
    assert engage(f"whatsapp:+16175551212 --from {MG}", V2).sender == MG


@pytest.mark.parametrize(
    ("text", "token", "fixed"),
    [
        ("+16175551212 greeting=Hi, how are you?", "how", 'greeting="Hi, how are you?"'),
        ("+16175551212 a=1 note=call me later b=2", "me", 'note="call me later"'),
        ("+16175551212 note=meet at 5 pm", "at", 'note="meet at 5 pm"'),
        ("+16175551212 q=a\\b c", "c", r'q="a\\b c"'),
    ],
)
def test_unquoted_spaces_get_the_corrected_item(text: str, token: str, fixed: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse(text, DEFAULTS)
    assert "needs quotes" in caught.value.problem
    assert fixed in caught.value.problem
    assert caught.value.token == token


def test_a_stray_word_after_json_is_not_a_quoting_problem() -> None:
    with pytest.raises(CommandError) as caught:
        parse("+16175551212 n:=1 zeke", DEFAULTS)
    assert "needs quotes" not in caught.value.problem


@pytest.mark.parametrize(
    "text",
    [
        "+16175551212 " + ".".join(["a"] * 1000) + "=1",
        "+16175551212 " + ".".join(["a"] * 33) + "=1",
        "+16175551212 a:=" + "[" * 40 + "]" * 40,
        "+16175551212 " + ".".join(["a"] * 20) + ":=" + "[" * 20 + "]" * 20,
        '+16175551212 {"a": ' + "[" * 40 + "]" * 40 + "}",
    ],
)
def test_nesting_is_bounded_with_a_clear_message(text: str) -> None:
    with pytest.raises(CommandError, match="nested too deeply"):
        parse(text, DEFAULTS)


def test_nesting_up_to_the_bound_is_fine() -> None:
    command = engage("+16175551212 " + ".".join(["a"] * 31) + ":=[1]")
    import json

    assert json.loads(json.dumps(command.parameters))  # encodes without error


@pytest.mark.parametrize("value", ["1e999", "-1e999", "[1, 2e400]", '{"x": 1E309}'])
def test_non_finite_numbers_are_refused(value: str) -> None:
    with pytest.raises(CommandError, match="bad JSON"):
        parse(f"+16175551212 x:={value}", DEFAULTS)


def test_sids_are_normalised_whatever_the_case_typed() -> None:
    upper = "FW" + "B" * 32
    assert engage(f"+16175551212 --flow {upper}").flow_sid == SURVEY
    assert engage(f"+16175551212 --flow {upper}").flow_alias == "survey"
    status = parse("status FN" + "E" * 32 + f" --flow {upper}", DEFAULTS)
    assert status == StatusCommand("FN" + "e" * 32, (SURVEY,))


@settings(max_examples=examples(200), deadline=None)
@given(st.text(alphabet="a.=:[]{}\"' 1e9", max_size=120))
def test_whatever_parses_encodes_as_json(text: str) -> None:
    import json

    try:
        command = parse("+16175551212 " + text, DEFAULTS)
    except CommandError:
        return
    if isinstance(command, EngageCommand):
        json.dumps(command.parameters, allow_nan=False)


# --- issue 12: several contacts in one command ----------------------------------------


@pytest.mark.parametrize(
    ("text", "contacts"),
    [
        ("+16175551212 +14155551212", ("+16175551212", "+14155551212")),
        ("617 555 1212 +14155551212", ("617 555 1212", "+14155551212")),
        (
            "survey +16175551212 +16175551213, 617-555-1214 plan=gold",
            ("+16175551212", "+16175551213", "617-555-1214"),
        ),
        ("+16175551212,+16175551213", ("+16175551212", "+16175551213")),
        (
            "+16175551212\n+16175551213\n617-555-1214",
            ("+16175551212", "+16175551213", "617-555-1214"),
        ),
        ("+1 617 555 1212, +1 617 555 1213", ("+1 617 555 1212", "+1 617 555 1213")),
        ("+16175551212, nonsense-free 617", None),
    ],
)
def test_several_contacts_make_a_bulk_command(text: str, contacts: tuple[str, ...] | None) -> None:
    text = text.replace("\\n", "\n")
    if contacts is None:
        with pytest.raises(CommandError):
            parse(text, DEFAULTS)
        return
    command = parse(text, DEFAULTS)
    assert isinstance(command, BulkCommand)
    assert command.contacts == contacts
    rows = command.rows("US")
    assert [r.number for r in rows] == list(range(1, len(contacts) + 1))
    assert all(r.to and r.to.startswith("+1") for r in rows)


def test_a_bulk_command_shares_its_parameters_and_keeps_invalid_rows() -> None:
    command = parse("survey +16175551212 +1617, 617-555-1214 plan=gold", DEFAULTS)
    assert isinstance(command, BulkCommand)
    assert command.parameters == {"plan": "gold"}
    assert command.flow_sid == SURVEY
    rows = command.rows("US")
    assert [r.to for r in rows] == ["+16175551212", None, "+16175551214"]
    assert rows[1].problem


@settings(max_examples=examples(200), deadline=None)
@given(
    st.lists(
        st.sampled_from(["+16175551212", "+16175551213", "617-555-1214", ","]),
        min_size=2,
        max_size=8,
    )
)
def test_contacts_are_kept_in_order(words: list[str]) -> None:
    text = " ".join(words)
    try:
        command = parse(text, DEFAULTS)
    except CommandError:
        return
    typed = (
        [c for c in command.contacts] if isinstance(command, BulkCommand) else [text.strip(" ,")]
    )
    assert "".join(typed).replace(" ", "") == text.replace(" ", "").replace(",", "")


# -- /engage report: every form and every refusal ------------------------------------


@pytest.mark.parametrize(
    ("text", "flows", "since", "csv", "alias"),
    [
        ("report", (), 7 * 86400.0, False, None),
        ("report survey", (SURVEY,), 7 * 86400.0, False, "survey"),
        ("report Survey", (SURVEY,), 7 * 86400.0, False, "survey"),
        ("report --flow survey", (SURVEY,), 7 * 86400.0, False, "survey"),
        ("report " + "FW" + "B" * 32, (SURVEY,), 7 * 86400.0, False, "survey"),
        ("report --since 90m --csv", (), 5400.0, True, None),
        ("report --csv", (), 7 * 86400.0, True, None),
        ("report --since 1h30m", (), 5400.0, False, None),
        ("report --since 366d", (), 366 * 86400.0, False, None),  # the most
        ("report --since 1m", (), 60.0, False, None),
        ("report onboarding --since 4w", (ONBOARDING,), 28 * 86400.0, False, "onboarding"),
    ],
)
def test_report_forms(
    text: str, flows: tuple[str, ...], since: float, csv: bool, alias: str | None
) -> None:
    assert parse(text, DEFAULTS) == ReportCommand(flows, since, csv, alias)


@pytest.mark.parametrize(
    ("text", "says", "token"),
    [
        ("report a b", "name at most one flow; usage: /engage report", "b"),
        ("report survey onboarding", "name at most one flow", "onboarding"),
        ("report --since 367d", "at most 366d", "--since 367d"),
        ("report --since 0m", "--since takes a span such as 90m, 24h, 7d or 4w", "--since 0m"),
        ("report --since soon", "--since takes a span", "--since soon"),
        ("report --since 1d --since 2d", "--since is given twice; usage:", "--since 2d"),
        ("report --csv --csv", "--csv is given twice", "--csv"),
        ("report --at 09:00", "unexpected '--at 09:00'; usage: /engage report", "--at 09:00"),
        ("report --from +16175550100", "unexpected '--from +16175550100'", "--from +16175550100"),
        (
            "report survey --flow onboarding",
            "the flow is given twice ('survey' and --flow)",
            "--flow onboarding",
        ),
        ("report first_name=Zeke", "unexpected 'first_name=Zeke'", "first_name=Zeke"),
        (
            "report nope",
            "'nope' is neither a phone number nor a flow: known flows: onboarding, survey",
            "nope",
        ),
    ],
)
def test_report_refusals(text: str, says: str, token: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse(text, DEFAULTS)
    assert says in str(refused.value)
    assert refused.value.token == token


# -- the terminal's words, and the flow a text names --------------------------------


@pytest.mark.parametrize(
    ("words", "text"),
    [
        (["+16175551212"], "+16175551212"),
        (["first_name=Zeke Smith"], 'first_name="Zeke Smith"'),
        (['note="hi"'], 'note="\\"hi\\""'),
        (["note='hi'"], "note=\"'hi'\""),
        (["path=a\\b c"], 'path="a\\\\b c"'),
        (['{"a": 1}'], '{"a": 1}'),
        (['data:={"b": 2}'], 'data:={"b": 2}'),
        (["hello world"], '"hello world"'),
        (['a"b c'], '"a\\"b c"'),
        (["x=y", "z"], "x=y z"),
        (["note=<b>bold</b>"], 'note="<b>bold</b>"'),  # not a Slack link
        (["tab\there"], '"tab\there"'),
        ([], ""),
        (["note=&lt;"], "note=&amp;lt;"),  # read back as typed, not as Slack's escaping
    ],
)
def test_argv_to_text_quotes_what_holds_spaces(words: list[str], text: str) -> None:
    assert argv_to_text(words) == text


@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True),
        st.text(
            alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="\\"),
            min_size=1,
            max_size=20,
        ).filter(lambda v: v.strip() == v and not v.startswith(("{", "["))),
        max_size=4,
    )
)
@settings(max_examples=examples(200), deadline=None)
def test_argv_to_text_round_trips_through_the_parser(values: dict[str, str]) -> None:
    words = ["+16175551212", *(f"{k}={v}" for k, v in values.items())]
    parsed = parse(argv_to_text(words), DEFAULTS)
    assert isinstance(parsed, EngageCommand)
    assert parsed.parameters == values


@pytest.mark.parametrize(
    ("name", "found"),
    [
        (None, (ONBOARDING, "onboarding")),  # STUDIO_FLOW_SID, with its alias
        ("survey", (SURVEY, "survey")),
        ("SURVEY", (SURVEY, "survey")),
        ("FW" + "b" * 32, (SURVEY, "survey")),
        (OTHER, (OTHER, None)),  # a SID not configured by name
    ],
)
def test_resolve_flow(name: str | None, found: tuple[str, str | None]) -> None:
    assert resolve_flow(name, DEFAULTS) == found


def test_resolve_flow_without_a_default() -> None:
    two = Defaults(flows={"onboarding": ONBOARDING, "survey": SURVEY}, sender=SENDER)
    with pytest.raises(
        CommandError, match="which flow\\? Name one first: known flows: onboarding, survey"
    ):
        resolve_flow(None, two)
    with pytest.raises(
        CommandError, match="no flow is configured: ask an admin to set STUDIO_FLOW_SID"
    ):
        resolve_flow(None, Defaults(sender=SENDER))
    assert resolve_flow(None, Defaults(flows={"only": OTHER}, sender=SENDER)) == (OTHER, "only")
    with pytest.raises(CommandError, match="no named flows are configured \\(STUDIO_FLOWS\\)"):
        resolve_flow("nope", Defaults(flow_sid=OTHER, sender=SENDER))


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("please run *survey* for them", (SURVEY, "survey")),
        ("Survey, then", (SURVEY, "survey")),
        ("`onboarding`: +1 617 555 1212", (ONBOARDING, "onboarding")),
        ("nothing named here", (ONBOARDING, "onboarding")),  # the default
        ("surveys", (ONBOARDING, "onboarding")),  # a word, not a prefix
    ],
)
def test_flow_in_text(text: str, found: tuple[str, str | None]) -> None:
    assert flow_in_text(text, DEFAULTS) == found
    assert flow_in_text("nothing", Defaults(flows={"a": OTHER, "b": SURVEY})) is None


# -- /engage status: the whole message and the token at fault ------------------------


@pytest.mark.parametrize(
    ("text", "says", "token"),
    [
        (
            "status",
            "give one engagement SID (FN followed by 32 hex digits); usage: /engage status FN… [--flow <flow>]",
            None,
        ),
        (
            "status FW" + "a" * 32,
            "give one engagement SID (FN followed by 32 hex digits); usage: /engage status FN… [--flow <flow>]",
            "FW" + "a" * 32,
        ),
        (
            f"status {RUN} {RUN}",
            "give one engagement SID (FN followed by 32 hex digits); usage: /engage status FN… [--flow <flow>]",
            RUN,
        ),
        (f"status {RUN} a=1", "unexpected 'a=1'; usage: /engage status FN… [--flow <flow>]", "a=1"),
        (
            f"status {RUN} --from +16175550100",
            "unexpected '--from +16175550100'; usage: /engage status FN… [--flow <flow>]",
            "--from +16175550100",
        ),
        (
            f"status {RUN} --flow survey --flow onboarding",
            "--flow is given twice",
            "--flow onboarding",
        ),
    ],
)
def test_status_refusals_in_full(text: str, says: str, token: str | None) -> None:
    with pytest.raises(CommandError) as refused:
        parse(text, DEFAULTS)
    assert str(refused.value) == says
    assert refused.value.token == token


def test_status_reads_any_case_and_tries_the_default_flow_first() -> None:
    assert parse("status FN" + "E" * 32, DEFAULTS) == StatusCommand(RUN, (ONBOARDING, SURVEY))
    survey_first = Defaults(flows={"onboarding": ONBOARDING, "survey": SURVEY}, flow_sid=SURVEY)
    assert parse(f"status {RUN}", survey_first) == StatusCommand(RUN, (SURVEY, ONBOARDING))
    other = Defaults(flows={"survey": SURVEY}, flow_sid=OTHER)
    assert parse(f"status {RUN}", other) == StatusCommand(RUN, (OTHER, SURVEY))
    with pytest.raises(
        CommandError, match=r"^no flow is configured: ask an admin to set STUDIO_FLOW_SID$"
    ):
        parse(f"status {RUN}", Defaults())


# -- what each form builds, and each refusal in full ---------------------------------


@pytest.mark.parametrize(
    ("text", "says", "token"),
    [
        ("flows x", "/engage flows takes nothing more", "x"),
        ("scheduled y", "/engage scheduled takes nothing more", "y"),
        (
            "+16175551212 --zap 1",
            "unknown option --zap: the options are --from, --flow, --at and --in",
            "--zap",
        ),
        (
            "whatsapp:+16175551212 --from +16175550100",
            "whatsapp:+16175551212 is a WhatsApp contact but the sender +16175550100 is an"
            " SMS/voice number; send from a WhatsApp sender, e.g. --from whatsapp:+16175550100",
            "--from +16175550100",
        ),
        (
            "whatsapp:+16175551212",
            "whatsapp:+16175551212 is a WhatsApp contact but the sender +16175550100 is an"
            " SMS/voice number; send from a WhatsApp sender, e.g. --from whatsapp:+16175550100",
            None,
        ),
        ("survey", "no contact number given: whom should the flow reach?", None),
        ("first_name=Zeke", "no contact number given: whom should the flow reach?", None),
        (
            "survey +16175551212 --flow onboarding",
            "the flow is given twice ('survey' and --flow)",
            "--flow onboarding",
        ),
    ],
)
def test_refusals_in_full(text: str, says: str, token: str | None) -> None:
    with pytest.raises(CommandError) as refused:
        parse(text, DEFAULTS)
    assert str(refused.value) == says
    assert refused.value.token == token


@pytest.mark.parametrize(
    ("text", "built"),
    [
        ("help", HelpCommand(None, None)),
        ("help survey", HelpCommand(SURVEY, "survey")),
        ("help Survey", HelpCommand(SURVEY, "survey")),
        ("help " + SURVEY.upper().replace("FW", "FW", 1), HelpCommand(SURVEY, "survey")),
        ("help " + OTHER, HelpCommand(OTHER, None)),
        ("help nope", HelpCommand(None, None)),  # not a flow: the general help
        ("help survey extra", HelpCommand(None, None)),
        (
            "+16175551212 +16175551213 --flow survey --from +16175550199",
            BulkCommand(
                SURVEY, "survey", "+16175550199", {}, ("+16175551212", "+16175551213"), None
            ),
        ),
        (
            "+16175551212, +16175551213",
            BulkCommand(
                ONBOARDING, "onboarding", SENDER, {}, ("+16175551212", "+16175551213"), None
            ),
        ),
        (
            "+16175551212 whatsapp:+16175551213",
            BulkCommand(
                ONBOARDING,
                "onboarding",
                SENDER,
                {},
                ("+16175551212", "whatsapp:+16175551213"),
                None,
            ),
        ),
        (
            "<tel:+16175551212|x> <tel:+16175551213|y>",
            BulkCommand(
                ONBOARDING, "onboarding", SENDER, {}, ("+16175551212", "+16175551213"), None
            ),
        ),
        (
            "WhatsApp:+16175551212 --from whatsapp:+16175550100",
            EngageCommand(
                ONBOARDING, "onboarding", "whatsapp:+16175551212", "whatsapp:+16175550100", {}
            ),
        ),
    ],
)
def test_what_each_form_builds(text: str, built: object) -> None:
    assert parse(text, DEFAULTS) == built


def test_sender_for() -> None:
    flows = Defaults(
        flows={"survey": SURVEY},
        flow_sid=ONBOARDING,
        sender=SENDER,
        region="US",
        flow_senders={SURVEY: "whatsapp:+16175550111"},
    )
    assert sender_for(ONBOARDING, None, flows) == SENDER
    assert sender_for(SURVEY, None, flows) == "whatsapp:+16175550111"  # the flow's own
    assert sender_for(SURVEY, "+1 617 555 0199", flows) == "+16175550199"  # --from wins
    with pytest.raises(CommandError) as v1:
        sender_for(ONBOARDING, "MG" + "c" * 32, flows)
    assert str(v1.value) == (
        "--from: a Messaging Service (MG…) sender needs STUDIO_API=v2; Studio's v1"
        " Engagements API takes only a phone number as From"
    )
    assert v1.value.token == "MG" + "c" * 32
    v2 = Defaults(flow_sid=ONBOARDING, sender=SENDER, api="v2")
    assert sender_for(ONBOARDING, "MG" + "c" * 32, v2) == "MG" + "c" * 32
    with pytest.raises(CommandError) as short:
        sender_for(ONBOARDING, "+1617", flows, "--from +1617")
    assert str(short.value) == "--from: '+1617' is not a phone number: it is too short"
    assert short.value.token == "--from +1617"
    with pytest.raises(CommandError) as nothing:
        sender_for(ONBOARDING, None, Defaults(flow_sid=ONBOARDING))
    assert str(nothing.value) == "no sender: give --from <Twilio number or MG… SID>"
    assert nothing.value.token is None
