"""What the docs promise is what the bot does (issue 37, 6): every ``/engage …``
example in the README and docs/ parses; every configuration example loads; every reply
the docs quote is what the message builders render. Drift fails CI instead of reaching
a user."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.app.config import Settings, load_settings
from bot.domain.bulk_input import read_csv
from bot.domain.bulk_plan import Ends
from bot.domain.command import BulkCommand, Defaults, EngageCommand
from bot.domain.contact_clock import Opening
from bot.domain.durations import duration
from bot.domain.errors import ConfigError
from bot.domain.grammar import parse
from bot.domain.run import Engagement
from bot.runs.tracker import check_interval
from bot.slack import messages
from bot.slack.messages.bulk import ends_line, source_line
from bot.slack.messages.schedules import quiet_hours, when_text
from tests.peers import REPO
from tests.test_config import GOOD

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def fw(c: str) -> str:
    return "FW" + c * 32


DEFAULTS = Defaults(
    {"onboarding": fw("a"), "survey": fw("b"), "reminder": fw("c"), "callback": fw("d")},
    fw("a"),
    "+16175550100",
    api="v2",
)
# A placeholder in the docs, and what a reader would put there.
PLACEHOLDERS = [
    ("FN0123…", "FN" + "0" * 32),
    ("FN…", "FN" + "0" * 32),
    ("FW0123…", fw("b")),
    ("MG0123…", "MG" + "0" * 32),
]
NUMBERS = iter(f"+1617555{n}" for n in range(2000, 3000))
NOT_EXAMPLES = {  # names, not uses
    "/engage-staging",
    "/engage status",
    "/engage …",
    "/engage optout",
    "/engage optin",
}


def examples() -> list[tuple[str, str]]:
    """(page, example) for every ``/engage`` example: inline code, or a code line; a
    syntax line (with ``<…>`` or ``[…]``) is the grammar, not an example."""
    found = []
    for page in PAGES:
        text = page.read_text()
        spans = re.findall(r"`(/engage\b[^`]*)`", text)
        spans += [m.strip() for m in re.findall(r"^ {4}(/engage\b.*)$", text, re.M)]
        for span in spans:
            example = re.split(r"\s{2,}", span.strip())[0]  # a code line's trailing comment
            if example in NOT_EXAMPLES or re.search(r"<[a-z]+>|\[[a-z]", example):
                continue
            found.append((page.name, example))
    return found


def concrete(example: str) -> str:
    for placeholder, value in PLACEHOLDERS:
        example = example.replace(placeholder, value)
    return re.sub(r"\+1…", lambda _: next(NUMBERS), example)


EXAMPLES = examples()


def test_the_docs_have_examples_to_check() -> None:
    pages = {page for page, _ in EXAMPLES}
    assert {"README.md", "using.md", "bulk.md", "scheduling.md", "outcomes.md"} <= pages
    assert len(EXAMPLES) >= 40


@pytest.mark.parametrize(("page", "example"), EXAMPLES, ids=[f"{p}: {e}" for p, e in EXAMPLES])
def test_every_engage_example_parses(page: str, example: str) -> None:
    parse(concrete(example).removeprefix("/engage"), DEFAULTS)


def test_the_readmes_example_is_the_start_it_describes() -> None:
    command = parse("+16175551212 first_name=Zeke plan=gold", DEFAULTS)
    assert isinstance(command, EngageCommand)
    assert (command.to, command.parameters) == (
        "+16175551212",
        {"first_name": "Zeke", "plan": "gold"},
    )


def test_the_bulk_examples_are_bulk_runs() -> None:
    bulk = [e for p, e in EXAMPLES if p == "bulk.md" and e.count("+1") > 1]
    assert bulk
    for example in bulk:
        assert isinstance(parse(concrete(example).removeprefix("/engage"), DEFAULTS), BulkCommand)


# --- configuration ------------------------------------------------------------------------

VARIABLES = {name.upper() for name in Settings.model_fields}


def configuration_examples() -> list[tuple[str, str, str]]:
    """(where, NAME, value) for every ``NAME=value`` the docs and .env.example show."""
    found = []
    for page in [*PAGES, REPO / ".env.example"]:
        text = page.read_text()
        for name, value in re.findall(r"`([A-Z_]{4,})=([^`\s]*)`", text):
            found.append((page.name, name, value))
        if page.name == ".env.example":
            for name, value in re.findall(r"^#? ?([A-Z_]{4,})=(\S*)$", text, re.M):
                found.append((page.name, name, value))
    return [(w, n, v) for w, n, v in found if n in VARIABLES and v and "…" not in v]


CONFIGURATIONS = configuration_examples()


def test_the_docs_show_configuration_examples() -> None:
    assert len(CONFIGURATIONS) >= 20


@pytest.mark.parametrize(
    ("where", "name", "value"), CONFIGURATIONS, ids=[f"{w}: {n}={v}" for w, n, v in CONFIGURATIONS]
)
def test_every_configuration_example_loads(
    monkeypatch: pytest.MonkeyPatch, where: str, name: str, value: str
) -> None:
    for variable, good in {**GOOD, name: value}.items():
        monkeypatch.setenv(variable, good)
    if name == "TWILIO_EVENTS_URL":
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", GOOD["TWILIO_AUTH_TOKEN"])
    try:
        load_settings(need_slack=True)
    except ConfigError as exc:
        pytest.fail(f"{where}: {name}={value} does not load: {exc}")


def test_the_flows_example_with_a_messaging_service_says_it_needs_v2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 37, 2: configuration.md's example with ``from=MG…`` stopped start-up under
    the default v1; the docs say it needs v2, and v2 loads it."""
    table = (REPO / "docs" / "configuration.md").read_text()
    assert "`from=MG…` needs `STUDIO_API=v2`" in table
    flows = f"survey={fw('b')};users=U01ABC|U02ABC;channels=C01ABC;from=MG{'0' * 32}"
    for variable, good in {**GOOD, "STUDIO_FLOWS": flows}.items():
        monkeypatch.setenv(variable, good)
    with pytest.raises(ConfigError, match="needs STUDIO_API=v2"):
        load_settings(need_slack=True)
    monkeypatch.setenv("STUDIO_API", "v2")
    assert load_settings(need_slack=True).studio_flows["survey"].sender == "MG" + "0" * 32


# --- what the docs quote the bot saying -------------------------------------------------


def words(text: str) -> str:
    """Text as read: no mrkdwn emphasis, no emoji codes, spaces folded, @mentions."""
    text = re.sub(r"<@U\w+>", "@you", text)
    text = re.sub(r":[a-z_]+: ", "", text).replace("*", "").replace("_", " ")
    return " ".join(text.split())


def quoted(page: str, quote: str) -> str:
    text = " ".join((REPO / page).read_text().split())
    assert quote in text, f"{page} no longer quotes: {quote}"
    return words(quote)


COMMAND = EngageCommand(
    fw("a"), "onboarding", "+16175551212", "+16175550100", {}, flow_name="Customer onboarding"
)


def test_the_readme_quotes_the_ack_and_the_end() -> None:
    said = words(messages.starting(COMMAND)["text"])
    assert (
        quoted("README.md", "*Starting onboarding · Customer onboarding for +1 617-555-1212…*")[
            1:-1
        ]
        in said
    )
    assert duration(192) == "3 min 12 s"
    assert quoted("README.md", "*ended at `send_survey` after 3 min 12 s*")


def test_using_quotes_the_card() -> None:
    run = Engagement(sid="FN" + "0" * 32, status="active", flow_sid=COMMAND.flow_sid)
    card = messages.engaged(COMMAND, run, "U0YOU")
    shown = words(card["blocks"][0]["text"]["text"])
    quote = "@you started onboarding · Customer onboarding for +1 617-555-1212"
    assert quote in " ".join((REPO / "docs" / "using.md").read_text().split())
    assert quote in shown


def test_outcomes_quotes_the_second_tally() -> None:
    every = check_interval(5000, 5.0)
    assert quoted("docs/outcomes.md", "checked every 33 min 20 s") in words(
        ends_line(Ends(ended=(("thanks", 1),), active=5000, every=every))
    )
    tally = ends_line(
        Ends(ended=(("thanks", 200), ("no_reply", 80)), failed=3, active=120, every=480)
    )
    quote = "Runs: 280 ended (thanks 200, no_reply 80) · 3 failed · 120 still active, checked every 8 min"
    assert quote in " ".join((REPO / "docs" / "outcomes.md").read_text().split())
    assert tally == quote


def test_outcomes_quotes_the_closing_note() -> None:
    note = messages.end_note("U0YOU", "survey", "FN1", "ended at `thanks`", {"start": "5"})
    assert "*Answers: start: “5”*" in (REPO / "docs" / "outcomes.md").read_text()
    assert "Answers: start: “5”" in note["text"]


def test_bulk_quotes_how_a_file_was_read() -> None:
    sheet = read_csv("to,name\n+16175551212,Jos\u00e9\n".encode("cp1252"))
    said = source_line("contacts.csv", sheet.encoding_name)
    assert quoted("docs/bulk.md", f"*{said}*")


def test_scheduling_quotes_the_quiet_hours_reply_and_the_confirmation() -> None:
    night = datetime(2026, 12, 2, 3, 0, tzinfo=UTC).timestamp()  # 22:00 in Boston
    morning = datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp()  # 08:00 EST
    opening = Opening(morning, ("America/New_York",), night)
    reply = words(quiet_hours(COMMAND, opening, "t", admin=False)["text"])
    page = " ".join(
        line.removeprefix("> ").strip()
        for line in (REPO / "docs" / "scheduling.md").read_text().splitlines()
        if line.startswith(">")
    )
    quote = page.split(" **[")[0]
    assert words(quote) == reply
    noon = datetime(2026, 12, 2, 17, 0, tzinfo=UTC).timestamp()
    later = when_text(noon, "America/New_York", noon - 2 * 3600)
    assert quoted("docs/scheduling.md", f"*at {later}*")


def test_scheduling_quotes_the_thread_mention() -> None:
    from bot.domain.schedule import Scheduled
    from bot.slack.messages.schedules import fired_note

    due = datetime(2026, 12, 3, 14, 0, tzinfo=UTC).timestamp()  # 09:00 EST
    item = Scheduled(
        id="s1",
        flow_sid=fw("a"),
        to="+16175551212",
        sender="+16175550100",
        user="U0YOU",
        due=due,
        zone="America/New_York",
    )
    note = words(fired_note(item))
    assert (
        quoted(
            "docs/scheduling.md",
            "*@you this run was scheduled by you for Thu 3 Dec 09:00 EST (America/New_York).*",
        )
        == note
    )
    late = words(fired_note(item.model_copy(update={"fired": due + 25 * 60})))
    assert late.endswith(quoted("docs/scheduling.md", "*…; it started 25 min late.*")[1:])
