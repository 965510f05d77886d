"""The run, as people see it: the card in the channel and ``/engage status``.

Pure: both render from what the bot knows of a run (a ``Snapshot`` read from
Studio, or the create response and the command that started it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.domain.command import EngageCommand
from bot.domain.phone import mask as masked
from bot.domain.phone import pretty
from bot.domain.run import CardRef, Engagement, Snapshot, Step, console_url
from bot.domain.text import end_confirm_text, label, step_line
from bot.slack.messages.blocks import (
    END_ACTION,
    REFRESH_ACTION,
    SECTION_TEXT_MAX,
    Block,
    Message,
    actions,
    ago,
    button,
    clip,
    confirm_dialog,
    console_button,
    context,
    escape,
    field,
    md,
    message,
    parameters_text,
    section,
    when,
)


@dataclass(frozen=True)
class RunCard:
    """Everything the in-channel card shows about one run (engagement or execution)."""

    sid: str
    status: str
    flow_sid: str
    flow_alias: str | None
    contact: str  # normalised address
    sender: str | None
    starter: str  # Slack user ID of who triggered it
    parameters: Any = None
    url: str | None = None
    api: str = "v1"
    latest_step: Step | None = None
    updated: datetime | None = None
    ended_by: str | None = None  # Slack user ID; set once the End button did its work
    deleted: bool = False  # v1 End deletes the engagement
    flow_name: str | None = None  # Studio's friendly name, when known
    following: bool = False  # the card follows the run (FOLLOW_MINUTES)
    widget: str | None = None  # the widget the run is in now
    started: datetime | None = None
    outcome: str | None = None  # how it ended: "ended at `x` after 3 min 12 s"

    @property
    def flow_label(self) -> str:
        return label(self.flow_alias, self.flow_sid, self.flow_name)

    @property
    def ref(self) -> CardRef:
        return CardRef(self.flow_sid, self.sid, self.starter)


def card_of(
    snapshot: Snapshot, alias: str | None, starter: str, api: str, name: str | None = None
) -> RunCard:
    """The card of a run as Studio has it now (status, latest step, data, sender)."""
    return _card(
        snapshot.run,
        flow_sid=snapshot.flow_sid,
        alias=alias,
        name=name,
        starter=starter,
        api=api,
        sender=snapshot.sender,
        parameters=snapshot.parameters,
        latest_step=snapshot.latest_step,
        updated=snapshot.updated,
    )


def _card(
    run: Engagement,
    *,
    flow_sid: str,
    alias: str | None,
    name: str | None,
    starter: str,
    api: str,
    sender: str | None,
    parameters: Any,
    contact: str | None = None,
    latest_step: Step | None = None,
    updated: datetime | None = None,
    started: datetime | None = None,
) -> RunCard:
    """The one place a card is built from a run: what Studio said of it, and what the
    caller knows better (the contact and data asked for, when it started)."""
    return RunCard(
        sid=run.sid,
        status=run.status or "unknown",
        flow_sid=flow_sid,
        flow_alias=alias,
        contact=contact or run.contact_channel_address or "",
        sender=sender,
        starter=starter,
        parameters=parameters,
        url=run.url,
        api=api,
        latest_step=latest_step,
        updated=updated,
        flow_name=name,
        started=started,
    )


def run_card(card: RunCard, *, mask: bool = False) -> Message:
    """In the channel: who started which flow for whom, the SID, status, links and buttons.

    With ``mask`` (MASK_NUMBERS) the contact shows as ``+1 617-•••-1212``.
    """
    link = console_url(card.flow_sid, card.sid)
    status = "deleted" if card.deleted else card.status
    contact = masked(card.contact) if mask else pretty(card.contact)
    who = f"<@{card.starter}>"
    text = (
        f"{who} started {escape(card.flow_label)} for {escape(contact)}: engagement"
        f" {card.sid} is {escape(status)}. {link}"
    )
    fields = [
        field("Engagement", f"`{card.sid}`"),
        field("Status", escape(status)),
        field("Flow", escape(card.flow_label)),
        field("Contact", escape(contact)),
        field("Sender", escape(pretty(card.sender)) if card.sender else "unknown"),
        field("Triggered by", who),
    ]
    if card.latest_step is not None:
        fields.append(field("Latest step", escape(step_line(card.latest_step))))
    if card.updated is not None:
        fields.append(field("Last change", when(card.updated)))
    blocks: list[Block] = [
        section(
            text=md(f":rocket: {who} started *{escape(card.flow_label)}* for {escape(contact)}")
        ),
        section(fields=fields),
    ]
    if card.parameters:
        blocks.append(section(text=md("*Parameters*\n" + parameters_text(card.parameters))))
    if card.ended_by:
        done = "deleted" if card.deleted else "ended"
        blocks.append(context([md(f":stop_sign: {done} by <@{card.ended_by}>")]))
    if card.outcome:
        blocks.append(context([md(f":checkered_flag: {escape(card.outcome)}")]))
    elif card.following and card.status == "active":
        where = f"in `{escape(card.widget)}` · " if card.widget else ""
        since = f"started {ago(card.started)} · " if card.started else ""
        blocks.append(context([md(f":eyes: {where}{since}this card follows the run")]))
    buttons = [console_button(card.flow_sid, card.sid)]
    if not card.deleted:
        buttons.append(button("Refresh", action_id=REFRESH_ACTION, value=card.ref.encode()))
    if card.status == "active" and not card.ended_by:
        buttons.append(
            button(
                "End",
                action_id=END_ACTION,
                value=card.ref.encode(),
                style="danger",
                confirm=confirm_dialog(
                    title="End this engagement?",
                    text=end_confirm_text(card.api),
                    confirm="End it",
                    deny="Keep it",
                ),
            )
        )
    blocks.append(actions(buttons))
    if card.url:
        blocks.append(context([md(f"API: {escape(card.url)}")]))
    return message("in_channel", text, blocks, markup=True)


def engaged(
    command: EngageCommand,
    engagement: Engagement,
    user_id: str,
    *,
    mask: bool = False,
    api: str = "v1",
) -> Message:
    """The card for a run just started from ``command``."""
    return run_card(engaged_card(command, engagement, user_id, api=api), mask=mask)


def engaged_card(
    command: EngageCommand, engagement: Engagement, user_id: str, *, api: str = "v1"
) -> RunCard:
    """What the card of a run just started from ``command`` shows."""
    return _card(
        engagement,
        flow_sid=command.flow_sid,  # the flow asked for: Twilio echoes it, a mock may not
        alias=command.flow_alias,
        name=command.flow_name,
        starter=user_id,
        api=api,
        contact=command.to,
        sender=command.sender,
        parameters=command.parameters,
        started=engagement.date_created,
    )


MAX_STEPS_SHOWN = 20


def status_message(snapshot: Snapshot, flow: str, *, mask: bool = False) -> Message:
    """Only to the caller: status, times, the steps so far and the flow data.

    With ``mask`` the contact shows as the channel card shows it (``MASK_NUMBERS``).
    """
    run, steps = snapshot.run, snapshot.steps
    head = f"{run.sid} of {flow} is {run.status or 'unknown'}"
    address = run.contact_channel_address or "?"
    contact = masked(address) if mask and address != "?" else pretty(address)
    blocks: list[Block] = [
        section(
            text=md(f":bar_chart: *{escape(head)}*"),
            fields=[
                field("Started", when(run.date_created)),
                field("Last change", when(run.date_updated)),
                field("Contact", escape(contact)),
                field("Steps", str(len(steps))),
            ],
        )
    ]
    if steps:
        shown = steps[-MAX_STEPS_SHOWN:]
        skipped = len(steps) - len(shown)
        lines = [f"{i}. {escape(step_line(s))}" for i, s in enumerate(shown, start=skipped + 1)]
        more = f"_{skipped} earlier steps not shown_\n" if skipped else ""
        blocks.append(
            section(text=md(clip(f"*Steps*\n{more}" + "\n".join(lines), SECTION_TEXT_MAX)))
        )
    if data := snapshot.parameters:
        blocks.append(section(text=md("*Flow data*\n" + parameters_text(data))))
    blocks.append(actions([console_button(snapshot.flow_sid, run.sid)]))
    return message("ephemeral", head, blocks)
