"""Questions put to the person who typed a command: confirm, or cancel. Pure: no I/O.

Each confirming button carries only a random token (``bot.engage.confirmations``).
"""

from __future__ import annotations

from bot.domain.command import EngageCommand
from bot.domain.errors import StudioError
from bot.domain.flows import Findings
from bot.domain.phone import pretty
from bot.domain.run import Engagement, console_url
from bot.domain.text import describe_error, end_confirm_text, findings_text, flow_label, who_may_end
from bot.slack.messages.blocks import (
    AGAIN_ACTION,
    ANYWAY_ACTION,
    CANCEL_ACTION,
    CONSOLE_ACTION,
    RESTART_ACTION,
    Block,
    Message,
    actions,
    button,
    clip,
    confirm_dialog,
    console_button,
    context,
    escape,
    md,
    message,
    notice,
    section,
)


def confirm_duplicate(command: EngageCommand, token: str, window: float) -> Message:
    """Only to the caller: the same flow for the same contact was just started; again?"""
    text = (
        f"You started {flow_label(command)} for {pretty(command.to)} less than"
        f" {round(window)} s ago. Start it again? Nothing has been sent yet."
    )
    warning = f"{pretty(command.to)} will be contacted a second time."
    return question(":repeat:", text, AGAIN_ACTION, token, "Start again", warning)


def question(
    emoji: str, text: str, action_id: str, token: str, label: str, warning: str
) -> Message:
    """Only to the caller: ``text``, then ``label`` (behind a confirm dialog) or Cancel."""
    buttons = confirm_or_cancel(action_id, token, label=label, title=f"{label}?", warning=warning)
    return message("ephemeral", text, [section(text=md(f"{emoji} {escape(text)}")), buttons])


def confirm_or_cancel(action_id: str, token: str, *, label: str, title: str, warning: str) -> Block:
    """A red button behind a confirm dialog, and Cancel; both carry only ``token``."""
    go = button(
        label,
        action_id=action_id,
        value=token,
        style="danger",
        confirm=confirm_dialog(
            title=title, text=clip(warning, 300), confirm=clip(label, 30), deny="No"
        ),
    )
    return actions([go, button("Cancel", action_id=CANCEL_ACTION, value=token)])


def cancelled() -> Message:
    """Replaces the "start again?" prompt when the caller says no."""
    return notice(":ok_hand:", "Not started again. Nothing was sent.")


def expired() -> Message:
    """The "start again?" button outlived its command (or was used already)."""
    return notice(
        ":hourglass:",
        "This confirmation has expired or was already used. Nothing was sent; run the command again.",
    )


def already_active(
    command: EngageCommand,
    error: StudioError,
    active: Engagement | None,
    token: str | None,
    *,
    starter: str | None = None,
    api: str = "v1",
) -> Message:
    """Only to the caller: Twilio allows one active run per contact and sender.

    ``token`` is None when the caller may not end the active run (the End rule): then
    the message says who may, instead of offering to.
    """
    head = (
        f"{pretty(command.to)} already has an active run of {flow_label(command)}"
        " (Twilio allows one per contact and sender), so nothing new was started."
    )
    detail = f"Twilio said: {describe_error(error)}"
    blocks: list[Block] = [
        section(text=md(f":no_entry_sign: {escape(head)}")),
        context([md(escape(detail))]),
    ]
    text = f"{head} {detail}"
    if active is None:
        blocks.append(
            section(
                text=md(
                    "The active run was not found among the newest runs; end it from the"
                    " flow's executions in the Twilio Console."
                )
            )
        )
        blocks.append(
            actions(
                [
                    button(
                        "Open the flow's executions",
                        url=console_url(command.flow_sid),
                        action_id=CONSOLE_ACTION,
                    )
                ]
            )
        )
        return message("ephemeral", text, blocks)
    text += f" Active: {active.sid}."
    if token is None:
        blocks.append(section(text=md(f"Active: `{active.sid}`. {who_may_end(starter)}")))
        blocks.append(actions([console_button(command.flow_sid, active.sid)]))
        return message("ephemeral", text, blocks)
    verb = "End" if api == "v2" else "Delete"
    restart = confirm_or_cancel(
        RESTART_ACTION,
        token,
        label=f"{verb} it and start again",
        title=f"{verb} the active run?",
        warning=f"{active.sid}: {end_confirm_text(api)} Then the flow starts again for"
        f" {pretty(command.to)}.",
    )
    blocks.append(restart)
    return message("ephemeral", text, blocks)


def confirm_parameters(command: EngageCommand, found: Findings, token: str) -> Message:
    """Only to the caller: the parameters do not fit what the flow reads; start anyway?"""
    text = (
        f"{flow_label(command)} for {pretty(command.to)}: {findings_text(found)}."
        " Nothing has been sent. Start anyway?"
    )
    warning = f"{pretty(command.to)} is contacted with the parameters as given."
    return question(":mag:", text, ANYWAY_ACTION, token, "Start anyway", warning)
