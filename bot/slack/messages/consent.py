"""Consent as people see it in Slack: the opt-out list's answers, a start refused on
consent, an admin's *Start anyway* over a cap, and the import of an opt-out file. Pure."""

from __future__ import annotations

from bot.domain.command import EngageCommand
from bot.domain.consent import SOURCE_TEXT, OptOut, Suppressed
from bot.domain.phone import pretty
from bot.domain.text import flow_label, optout_line, suppressed_text
from bot.slack.messages.blocks import (
    SECTION_TEXT_MAX,
    Message,
    actions,
    button,
    clip,
    confirm_dialog,
    escape,
    md,
    message,
    notice,
    section,
)
from bot.slack.messages.prompts import question

OVER_CAP_ACTION = "engage_over_cap"  # an admin's "Start anyway" over a contact's cap
IMPORT_ACTION = "optout_import"  # "Opt out N": carries the preview's ID
IMPORT_DROP_ACTION = "optout_import_drop"
SHOWN = 10


def suppressed(command: EngageCommand, why: Suppressed, now: float = 0.0) -> Message:
    """Only to the caller: the contact opted out, or reached its cap (``now``: for how long
    from now); nothing was sent."""
    text = suppressed_text(why, pretty(command.to), now)
    emoji = ":no_bell:" if why.kind == "opted_out" else ":hourglass:"
    return notice(emoji, f"Not started: {text}. Nothing was sent to Twilio.")


def over_cap_prompt(command: EngageCommand, why: Suppressed, token: str, now: float) -> Message:
    """Only to an admin: the contact reached its cap; *Start anyway* (audited) or Cancel."""
    text = (
        f"Not started yet: {suppressed_text(why, pretty(command.to), now)}."
        " As an admin you may start it anyway; this is recorded in the audit log."
    )
    warning = f"{pretty(command.to)} gets {flow_label(command)} over the cap ({why.cap})."
    return question(":hourglass:", text, OVER_CAP_ACTION, token, "Start anyway", warning)


def opted_out(to: str, entry: OptOut | None, *, added: bool) -> Message:
    """``/engage optout``: the contact is on the list (now, or since ``entry``)."""
    if added:
        text = (
            f"{pretty(to)} is on the opt-out list: no flow will be started for them from any"
            " surface (commands, bulk runs, schedules, workflow steps). Recorded in the audit"
            " log."
        )
    else:
        since = f": {optout_line(entry)}" if entry else ""
        text = f"{pretty(to)} was on the opt-out list already{since}."
    return notice(":no_bell:", text)


def opted_in(to: str, entry: OptOut | None) -> Message:
    """``/engage optin``: the contact is off the list (or was never on it)."""
    if entry is None:
        return notice(":information_source:", f"{pretty(to)} is not on the opt-out list.")
    text = (
        f"{pretty(to)} is off the opt-out list: flows may be started for them again (they had"
        f" {optout_line(entry)}). Your reason is in the audit log."
    )
    return notice(":bell:", text)


def listing(total: int, by_source: dict[str, int], latest: tuple[OptOut, ...]) -> Message:
    """``/engage optouts``: how many, by source, and the latest additions (masked)."""
    sources = ", ".join(f"{by_source[s]} {SOURCE_TEXT[s]}" for s in SOURCE_TEXT if by_source.get(s))
    head = f"{total} contact(s) opted out" + (f": {sources}." if sources else ".")
    lines = [f"• {escape(e.contact)}: {escape(optout_line(e))}" for e in latest[:SHOWN]]
    blocks = [section(text=md(f":no_bell: {escape(head)}"))]
    if lines:
        blocks.append(section(text=md(clip("*Latest*\n" + "\n".join(lines), SECTION_TEXT_MAX))))
    return message("ephemeral", head, blocks)


def import_preview(
    preview_id: str, new: int, already: int, invalid: list[tuple[int, str]], source: str
) -> Message:
    """Only to the admin: what importing the file would do; *Opt out N* or Cancel."""
    head = (
        f"{source}: {new} number(s) to add to the opt-out list, {already} on it already,"
        f" {len(invalid)} row(s) not a number. Nothing has been added yet."
    )
    blocks = [section(text=md(f":no_bell: {escape(head)}"))]
    if invalid:
        lines = [f"row {n}: {escape(why)}" for n, why in invalid[:15]]
        more = f"\n… and {len(invalid) - 15} more" if len(invalid) > 15 else ""
        text = f"*Not numbers* ({len(invalid)})\n" + "\n".join(lines) + more
        blocks.append(section(text=md(clip(text, SECTION_TEXT_MAX))))
    buttons = []
    if new:
        buttons.append(
            button(
                f"Opt out {new}",
                action_id=IMPORT_ACTION,
                value=preview_id,
                style="danger",
                confirm=confirm_dialog(
                    title="Add to the opt-out list?",
                    text=f"{new} contact(s) will never be reached again until an admin opts"
                    " them in, one by one.",
                    confirm=f"Opt out {new}",
                    deny="Not yet",
                ),
            )
        )
    buttons.append(button("Cancel", action_id=IMPORT_DROP_ACTION, value=preview_id))
    blocks.append(actions(buttons))
    return message("ephemeral", head, blocks)


def imported(added: int, already: int) -> Message:
    return notice(
        ":no_bell:",
        f"Added {added} contact(s) to the opt-out list ({already} were on it already)."
        " Recorded in the audit log.",
    )
