"""Lists cut to fit Slack say so, and code blocks always close (issue 32, 21)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from bot.domain.command import Defaults
from bot.domain.policy import Access, Policy
from bot.domain.summary import Summary
from bot.slack import messages
from bot.slack.messages.blocks import SECTION_TEXT_MAX, fenced, lines_within, parameters_text
from bot.slack.messages.report import report_message
from bot.slack.messages.views import FlowChoice, home
from tests.test_messages import within_limits


def sid(i: int) -> str:
    return "FW" + f"{i:032x}"


def many_flows(count: int) -> Defaults:
    return Defaults({f"flow{i:02d}": sid(i) for i in range(count)}, sid(0), "+16175550100")


def section_texts(message: dict[str, object]) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if "text" in b]  # type: ignore[attr-defined]


def test_flows_with_rules_are_counted_not_cut_mid_entry() -> None:
    """The finding: 20 flows with per-flow rules; 17 shown, the last cut mid-entry."""
    defaults = many_flows(20)
    users = frozenset(f"U0USER{i:03d}" for i in range(12))
    policy = Policy(
        per_flow={s: Access(users, frozenset({"C0OPS"})) for s in defaults.flows.values()}
    )
    reply = messages.flows_message(defaults, policy, {})
    within_limits(reply)
    body = section_texts(reply)[0]
    assert "more flows." in body
    entries = [line for line in body.splitlines() if line.startswith("• ")]
    shown = len(entries)
    assert f"…and {20 - shown} more flows." in body
    assert body.rstrip().endswith(f"…and {20 - shown} more flows.")
    assert all(line.startswith(("• ", "  ", "…", "*Flows*")) for line in body.splitlines())


def test_help_with_many_flows_closes_its_code_block() -> None:
    reply = messages.help_message(many_flows(120))
    within_limits(reply)
    (text,) = section_texts(reply)
    assert text.startswith("```")
    assert text.endswith("```")
    assert text.count("```") == 2
    assert "more lines." in text


@given(
    st.dictionaries(
        st.text(alphabet="a&<>`", min_size=1, max_size=5), st.text(alphabet="&<>`x"), max_size=2000
    )
)
def test_parameters_clip_after_escaping_and_stay_closed(data: dict[str, str]) -> None:
    text = parameters_text(data)
    assert len(text) <= SECTION_TEXT_MAX - 94
    assert text.startswith("```")
    assert text.endswith("```")
    assert text.count("```") == 2
    inner = text[3:-3]
    assert "<" not in inner
    assert ">" not in inner


def test_the_finding_ampersands_do_not_push_parameters_past_the_limit() -> None:
    text = parameters_text({"k": "&" * 2900})
    assert len(text) <= SECTION_TEXT_MAX
    assert text.endswith("…```")
    assert "&amp…" not in text  # an escape is never split


def test_lines_within_keeps_whole_lines_and_counts_the_rest() -> None:
    lines = [f"line {i}" for i in range(100)]
    kept = lines_within(lines, 100, "lines")
    assert len(kept) <= 100
    shown = kept.splitlines()[:-1]
    assert shown == lines[: len(shown)]
    assert kept.splitlines()[-1] == f"…and {100 - len(shown)} more lines."
    assert lines_within(lines[:3], 100) == "line 0\nline 1\nline 2"
    assert fenced("a\nb") == "```a\nb```"


def test_the_report_says_what_it_did_not_list() -> None:
    summary = Summary(
        total=40,
        by_state=(("ended", 40),),
        funnel=tuple((f"widget{i}", 1) for i in range(20)),
        answers=tuple((f"field{i}", (("yes", 1),)) for i in range(12)),
        failures=tuple((str(20000 + i), 1) for i in range(13)),
        answered=40,
    )
    said = json.dumps(report_message(summary, "every flow", 7 * 86400), ensure_ascii=False)
    assert "…and 5 more end widgets" in said
    assert "…and 2 more answer fields" in said
    assert "…and 3 more error codes" in said


def test_the_home_tab_says_what_it_did_not_list() -> None:
    flows = [FlowChoice(sid(i), f"flow{i}", None) for i in range(25)]
    view = home(flows, [], user_id="U0CALLER")
    said = json.dumps(view, ensure_ascii=False)
    assert "…and 5 more (/engage flows lists them all)." in said
    assert "open_form" in said
    assert "open_form" not in json.dumps(home([], [], user_id="U0CALLER"))
