"""``/engage report`` as people see it, only to the asker. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bot.domain.durations import period
from bot.slack.messages.blocks import (
    SECTION_TEXT_MAX,
    Block,
    Message,
    clip,
    escape,
    md,
    message,
    more_line,
    section,
)

if TYPE_CHECKING:
    from bot.domain.summary import Summary

STATE_WORDS = {
    "ended": "ended",
    "failed": "ended in failure",
    "active": "still active",
    "unfollowed": "no longer followed (still active then)",
    "not_started": "not started (Twilio refused)",
    "unknown": "outcome unknown",
}


def _share(count: int, total: int) -> str:
    return f"{count} ({round(100 * count / total)}%)" if total else str(count)


def _more(items: Sequence[object], shown: int, what: str) -> list[str]:
    """``["…and 3 more end widgets (--csv has every run)."]`` when ``items`` were cut."""
    return (
        [more_line(len(items) - shown, f"{what} (--csv has them all)")]
        if len(items) > shown
        else []
    )


def report_message(summary: Summary, flows: str, since: float, from_day: str = "") -> Message:
    """Counts by state, the funnel of end widgets, top answers, failures by code.
    ``from_day``: counted by whole UTC days, from that one (``2026-11-27``)."""
    days = f" (whole UTC days, from {from_day})" if from_day else ""
    head = (
        f"Report: {flows}, the last {period(since)}{days}: {summary.total} run(s) started"
        " by the bot"
    )
    if not summary.total:
        text = f"{head}. Nothing to count."
        return message("ephemeral", text, [section(text=md(f":bar_chart: {escape(text)}"))])
    blocks: list[Block] = [section(text=md(f":bar_chart: *{escape(head)}*"))]
    states = "\n".join(
        f"• {STATE_WORDS.get(state, state)}: {_share(count, summary.total)}"
        for state, count in summary.by_state
    )
    blocks.append(section(text=md(f"*By state*\n{escape(states)}")))
    ended = sum(count for _, count in summary.funnel)
    if summary.funnel:
        funnel = "\n".join(
            [f"• `{escape(w)}`: {_share(count, ended)}" for w, count in summary.funnel[:15]]
            + _more(summary.funnel, 15, "end widgets")
        )
        blocks.append(section(text=md(clip(f"*Where runs ended*\n{funnel}", SECTION_TEXT_MAX))))
    if summary.answers:
        lines = [f"*Answers* ({summary.answered} run(s) answered)"]
        for field, top in summary.answers[:10]:
            tops = ", ".join(f"“{escape(value[:60])}” {count}" for value, count in top)
            lines.append(f"• `{escape(field)}`: {tops}")
        lines += _more(summary.answers, 10, "answer fields")
        blocks.append(section(text=md(clip("\n".join(lines), SECTION_TEXT_MAX))))
    if summary.failures:
        codes = ", ".join(
            [f"{code} ×{count}" for code, count in summary.failures[:10]]
            + _more(summary.failures, 10, "error codes")
        )
        blocks.append(section(text=md(f"*Failures by Twilio error code*: {escape(codes)}")))
    text = (
        f"{head}: "
        + ", ".join(f"{count} {STATE_WORDS.get(s, s)}" for s, count in summary.by_state)
        + "."
    )
    return message("ephemeral", text, blocks)
