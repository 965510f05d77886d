"""Quiet hours and scheduled starts, as Slack shows them. Pure: no I/O.

Times are said in the contact's local time and relative to now (``bot.domain.contact_clock``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.domain.command import EngageCommand
from bot.domain.contact_clock import Opening, local_time, opening_text, relative
from bot.domain.durations import duration
from bot.domain.phone import pretty
from bot.domain.text import flow_label
from bot.slack.messages.blocks import (
    AGAIN_ACTION,
    CANCEL_ACTION,
    Block,
    Message,
    actions,
    button,
    confirm_dialog,
    context,
    escape,
    md,
    message,
    notice,
    section,
)
from bot.slack.messages.prompts import question

if TYPE_CHECKING:
    from bot.domain.schedule import Scheduled

SCHEDULE_ACTION = "engage_schedule"  # "Schedule for then": carries a parked command's token
NOW_ANYWAY_ACTION = "engage_now_anyway"  # an admin's "Start now anyway"
UNSCHEDULE_ACTION = "engage_unschedule"  # Cancel on a listed schedule: carries its ID
MAX_LISTED = 40  # schedules listed in one message (Slack's 50 blocks)

MEMORY_NOTE = (
    "Without Redis (REDIS_URL) this schedule lives in the bot's memory: it is lost if the"
    " bot restarts before then."
)


def when_text(due: float, zone: str, now: float) -> str:
    """``09:00 EST (America/New_York), in 3 h 10 min``."""
    return f"{local_time(due, zone, now)}, {relative(due - now)}"


def quiet_hours(
    command: EngageCommand, opening: Opening, token: str, *, admin: bool, asked_for: str = ""
) -> Message:
    """Only to the starter: the contact is in quiet hours (now, or at the time asked
    for), so nothing was sent; *Schedule for then* and Cancel, and for admins *Start now
    anyway* behind a confirm dialog."""
    moment = f"at {asked_for}" if asked_for else "now"
    head = (
        f"Not started: it is quiet hours {moment} for {pretty(command.to)} (QUIET_HOURS,"
        f" in the contact's local time), and {opening_text(opening)}. Nothing was sent."
    )
    buttons: list[Block] = []
    if opening.at is not None:
        buttons.append(
            button("Schedule for then", action_id=SCHEDULE_ACTION, value=token, style="primary")
        )
    if admin and not asked_for:
        warning = (
            f"{pretty(command.to)} is in quiet hours. Start {flow_label(command)} now anyway?"
            " This is recorded in the audit log."
        )
        buttons.append(
            button(
                "Start now anyway",
                action_id=NOW_ANYWAY_ACTION,
                value=token,
                style="danger",
                confirm=confirm_dialog("Start in quiet hours?", warning, "Start now", "No"),
            )
        )
    buttons.append(button("Cancel", action_id=CANCEL_ACTION, value=token))
    blocks = [section(text=md(f":crescent_moon: {escape(head)}")), actions(buttons)]
    return message("ephemeral", head, blocks)


def not_schedulable(reason: str) -> Message:
    return notice(":calendar:", f"Not scheduled: {reason}. Nothing was sent.")


def scheduling(command: EngageCommand) -> Message:
    """The ack of a scheduled start while the flow checks run."""
    return notice(":calendar:", f"Scheduling {flow_label(command)} for {pretty(command.to)}…")


def scheduled(item: Scheduled, now: float, *, durable: bool) -> Message:
    """Only to the starter: the schedule is kept; when it fires, and a Cancel button."""
    text = (
        f"Scheduled {flow_label(item.command)} for {pretty(item.to)} at"
        f" {when_text(item.due, item.zone, now)}. The card will appear in this channel then."
    )
    blocks: list[Block] = [
        section(text=md(f":calendar: {escape(text)}")),
        actions([unschedule_button(item.id)]),
    ]
    if not durable:
        blocks.insert(1, context([md(f":warning: {MEMORY_NOTE}")]))
        text += " " + MEMORY_NOTE
    return message("ephemeral", text, blocks)


def unschedule_button(schedule_id: str) -> Block:
    return button(
        "Cancel",
        action_id=UNSCHEDULE_ACTION,
        value=schedule_id,
        confirm=confirm_dialog(
            "Cancel this schedule?", "It will not start. Nothing has been sent.", "Cancel it", "No"
        ),
    )


def schedule_line(item: Scheduled, now: float, *, everyone: bool) -> str:
    who = f" — <@{item.user}>" if everyone else ""
    where = f" in <#{item.channel}>" if item.channel else ""
    return (
        f"*{escape(flow_label(item.command))}* for {escape(pretty(item.to))}{where}:"
        f" {escape(when_text(item.due, item.zone, now))}{who}"
    )


def schedule_list(items: list[Scheduled], now: float, *, everyone: bool) -> Message:
    """``/engage scheduled``: the starts waiting for their time, each with Cancel."""
    whose = "Every scheduled start" if everyone else "Your scheduled starts"
    if not items:
        empty = "No scheduled starts." if everyone else "You have no scheduled starts."
        return notice(":calendar:", empty)
    blocks: list[Block] = [section(text=md(f":calendar: *{whose}* ({len(items)})"))]
    for item in items[:MAX_LISTED]:
        line = schedule_line(item, now, everyone=everyone)
        blocks.append({**section(text=md(line)), "accessory": unschedule_button(item.id)})
    if len(items) > MAX_LISTED:
        blocks.append(context([md(f"…and {len(items) - MAX_LISTED} more.")]))
    return message("ephemeral", f"{whose}: {len(items)}", blocks)


def unscheduled(outcome: str, item: Scheduled | None) -> Message:
    """The answer to a Cancel on a schedule."""
    if outcome == "cancelled" and item is not None:
        return notice(
            ":ok_hand:",
            f"Cancelled: {flow_label(item.command)} for {pretty(item.to)} will not start."
            " Nothing was sent.",
        )
    if outcome == "not_yours":
        return notice(":no_entry:", "Only whoever scheduled it, or an admin, can cancel it.")
    if outcome == "too_late" and item is not None:
        return notice(":hourglass:", f"Too late to cancel: it has already {_settled(item)}.")
    return notice(":hourglass:", "That schedule is no longer kept.")


def _settled(item: Scheduled) -> str:
    return {
        "cancelled": "been cancelled",
        "started": f"started ({item.sid})",
        "refused": "been refused at its time",
        "failed": "failed at its time",
        "unknown": "fired, with its outcome unknown",
    }.get(item.state, "fired")


LATE_NOTE_AFTER = 60.0  # a scheduled run this many seconds late says so


def fired_note(item: Scheduled) -> str:
    """The thread reply that mentions the starter under a scheduled run's card, saying
    how late it started when it did (the bot was down, or many were due together)."""
    note = f"<@{item.user}> this run was scheduled by you for {local_time(item.due, item.zone)}"
    if item.late >= LATE_NOTE_AFTER:
        note += f"; it started {duration(item.late, smallest='min')} late"
    return note + "."


def fire_problem(item: Scheduled, reason: str) -> Message:
    """A DM to the starter: the schedule did not start (refused, failed, unknown)."""
    verbs = {
        "refused": "was not started at its time",
        "failed": "failed at its time",
        "unknown": "may or may not have started",
        "cancelled": "was not started",
    }
    verb = verbs.get(item.state, "did not start")
    where = f" in <#{item.channel}>" if item.channel else ""
    head = f"Your scheduled {flow_label(item.command)} for {pretty(item.to)}"
    tail = f", due {local_time(item.due, item.zone)}, {verb}: {reason}."
    if item.state == "refused":
        tail += " Nothing was sent."
    blocks = [section(text=md(f":calendar: {escape(head)}{where}{escape(tail)}"))]
    return message("ephemeral", head + tail, blocks)


def confirm_second(command: EngageCommand, twin: Scheduled, token: str, now: float) -> Message:
    """Only to the starter: the same flow for the same contact is scheduled already;
    schedule a second one? (As the duplicate window asks about a start.)"""
    text = (
        f"You already scheduled {flow_label(command)} for {pretty(command.to)} at"
        f" {when_text(twin.due, twin.zone, now)}. Schedule it a second time? Nothing has"
        " been scheduled yet."
    )
    warning = f"{pretty(command.to)} will be contacted twice."
    return question(":repeat:", text, AGAIN_ACTION, token, "Schedule again", warning)
