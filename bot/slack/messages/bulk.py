"""A bulk run as people see it: the preview, only to whoever asked, and the progress
message in the channel. Pure: no I/O."""

from __future__ import annotations

from bot.domain.bulk_plan import Ends, Plan, Progress, bar
from bot.domain.durations import duration
from bot.domain.phone import pretty
from bot.domain.text import findings_text, label, suppressed_text
from bot.slack.messages.blocks import (
    SECTION_TEXT_MAX,
    Block,
    Message,
    actions,
    button,
    clip,
    confirm_dialog,
    context,
    escape,
    md,
    message,
    section,
)

BULK_START = "bulk_start"
BULK_DROP = "bulk_drop"
BULK_PAUSE = "bulk_pause"
BULK_RESUME = "bulk_resume"
BULK_CANCEL = "bulk_cancel"
SHOWN = 15  # rows listed per kind of problem


def _about(seconds: float) -> str:
    """An estimate: never ``0 s``."""
    return duration(max(seconds, 1))


def _listed(title: str, lines: list[str]) -> str:
    more = f"\n… and {len(lines) - SHOWN} more" if len(lines) > SHOWN else ""
    return f"*{title}* ({len(lines)})\n" + "\n".join(lines[:SHOWN]) + more


def slack_date(epoch: float) -> str:
    """A moment in each reader's own time zone, as their Slack client shows it."""
    return f"<!date^{int(epoch)}^{{date_short_pretty}} {{time}}|{int(epoch)}>"


def bulk_preview(
    plan: Plan, run_id: str, pace: str, source: str = "", *, now: float = 0.0
) -> Message:
    """Only to whoever asked: what would be sent, what would not and why; Start or Cancel.
    ``source``: how the contacts were read (a file's name and encoding), when from a file;
    ``now``: to say when a capped contact may be reached again."""
    flow = label(plan.flow_alias, plan.flow_sid, plan.flow_name)
    count = len(plan.valid)
    opted = sum(1 for _, why in plan.suppressed if why.kind == "opted_out")
    capped = len(plan.suppressed) - opted
    skipped = (f" {opted} opted out: skipped." if opted else "") + (
        f" {capped} at their cap: skipped." if capped else ""
    )
    head = (
        f"{flow} for {count} contact(s): {count} valid, {len(plan.invalid)} invalid,"
        f" {len(plan.duplicates)} duplicate(s) dropped, {len(plan.refused)} refused."
        f"{skipped} About {_about(plan.seconds)} at {pace}. Nothing has been sent."
    )
    blocks: list[Block] = [section(text=md(f":clipboard: {escape(head)}"))]
    if source:
        blocks.append(context([md(escape(source))]))
    if plan.dues:
        first, last = min(plan.dues.values()), max(plan.dues.values())
        span = slack_date(first) + (f" to {slack_date(last)}" if last - first >= 60 else "")
        blocks.append(context([md(f":calendar: Starts at {span}, at each contact's time.")]))
        head += " Scheduled."
    if plan.waiting:
        opens = sorted(at for _, at in plan.waiting)
        waiting = (
            f":crescent_moon: {len(plan.waiting)} row(s) fall in their contact's quiet hours"
            f" and wait for their window: the first opens {slack_date(opens[0])}, the last"
            f" {slack_date(opens[-1])}; the others go on meanwhile."
        )
        blocks.append(section(text=md(waiting)))
        head += f" {len(plan.waiting)} wait for their contact's quiet hours to end."
    kinds = [
        (
            "Invalid",
            [
                f"row {r.number}: {escape(r.typed or '(empty)')}: {escape(r.problem or '')}"
                for r in plan.invalid
            ],
        ),
        (
            "Refused",
            [
                f"row {r.number}: {escape(pretty(r.to or ''))}: {escape(why)}"
                for r, why in plan.refused
            ],
        ),
        (
            "Skipped: opted out or at their cap",
            [
                f"row {r.number}: {escape(suppressed_text(why, pretty(r.to or ''), now))}"
                for r, why in plan.suppressed
            ],
        ),
        (
            "Duplicates dropped",
            [f"row {r.number}: {escape(pretty(r.to or ''))}" for r in plan.duplicates],
        ),
        ("Parameters", [f"row {r.number}: {escape(findings_text(f))}" for r, f in plan.findings]),
    ]
    for title, lines in kinds:
        if lines:
            blocks.append(section(text=md(clip(_listed(title, lines), SECTION_TEXT_MAX))))
    buttons = []
    if count:
        buttons.append(
            button(
                f"Start {count}",
                action_id=BULK_START,
                value=run_id,
                style="danger",
                confirm=confirm_dialog(
                    title="Start the bulk run?",
                    text=f"{flow} starts for {count} contact(s), at {pace}.",
                    confirm=f"Start {count}",
                    deny="Not yet",
                ),
            )
        )
    buttons.append(button("Cancel", action_id=BULK_DROP, value=run_id))
    blocks.append(actions(buttons))
    return message("ephemeral", head, blocks)


def ends_line(ends: Ends) -> str:
    """The second tally: how the started runs ended (by end widget), failed, are still
    active (and how often each is checked), or are no longer followed."""
    by_widget = ", ".join(f"{widget} {count}" for widget, count in ends.ended[:8])
    more = " …" if len(ends.ended) > 8 else ""
    parts = [f"Runs: {ends.ended_count} ended" + (f" ({by_widget}{more})" if by_widget else "")]
    parts.append(f"{ends.failed} failed")
    every = f", checked every {_about(ends.every)}" if ends.every and ends.active else ""
    parts.append(f"{ends.active} still active{every}")
    if ends.unfollowed:
        parts.append(f"{ends.unfollowed} no longer followed")
    return " · ".join(parts)


def bulk_progress(progress: Progress) -> Message:
    """In the channel: the bar, the counts, the rate, the time left, and the controls."""
    p = progress
    skipped = f" · {p.suppressed} suppressed" if p.suppressed else ""
    state = {
        "running": ":arrow_forward: running",
        "paused": ":double_vertical_bar: paused",
        "cancelled": ":stop_sign: cancelled",
        "done": ":checkered_flag: done",
    }.get(p.status, p.status)
    going = p.left - p.waiting  # rows not waiting for their time
    left_time = f" · about {_about(going / p.rate)} left" if p.rate and going > 0 else ""
    head = f"<@{p.starter}>'s bulk run of {escape(p.flow)}: {state}"
    counts = (
        f"{bar(p.done, p.total)}\n{p.started} started · {p.failed} failed · {p.unknown} unknown"
        f" · {p.cancelled} cancelled{skipped} · {p.left} left · {p.rate:.1f}/s{left_time}"
    )
    blocks: list[Block] = [section(text=md(head)), section(text=md(escape(counts)))]
    if p.waiting and p.status in ("running", "paused"):
        first = f"; the next at {slack_date(p.next_opens)}" if p.next_opens else ""
        blocks.append(
            context(
                [
                    md(
                        f":crescent_moon: {p.waiting} waiting for their morning (or their time){first}"
                    )
                ]
            )
        )
    if p.ends is not None:
        blocks.append(section(text=md(clip(escape(ends_line(p.ends)), SECTION_TEXT_MAX))))
    if p.note:  # the bot's own words, with a mention
        blocks.append(context([md(p.note)]))
    if p.status in ("running", "paused"):
        control = (
            button("Pause", action_id=BULK_PAUSE, value=p.run_id)
            if p.status == "running"
            else button("Resume", action_id=BULK_RESUME, value=p.run_id)
        )
        stop = button(
            "Cancel",
            action_id=BULK_CANCEL,
            value=p.run_id,
            style="danger",
            confirm=confirm_dialog(
                title="Cancel the bulk run?",
                text="Rows not yet sent are not sent. Runs already started go on.",
                confirm="Cancel the run",
                deny="Keep going",
            ),
        )
        blocks.append(actions([control, stop]))
    text = f"Bulk run of {p.flow}: {p.status}, {p.done}/{p.total}"
    return message("in_channel", text, blocks)


def undelivered_note(p: Progress, channel: str, missing: list[str], minutes: int) -> str:
    """To the starter, in a DM: what of a bulk run Slack did not take in its channel."""
    return (
        f"Your bulk run {p.run_id} of {escape(p.flow)} is {p.status}: {p.started}"
        f" started, {p.failed} failed, {p.unknown} unknown, {p.cancelled} cancelled,"
        f" {p.suppressed} suppressed of"
        f" {p.total}. Slack did not take {' or '.join(missing)} in <#{channel}> for"
        f" {minutes} minutes (it was rate limited or refused)."
    )


def source_line(name: str, encoding: str) -> str:
    """How a file's contacts were read, for its preview: ``Read contacts.csv as
    Windows-1252.`` (so a wrong guess is seen before anything is sent)."""
    return f"Read {name} as {encoding}."
