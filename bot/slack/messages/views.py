"""Slack surfaces without the grammar: the *Start a Studio flow* form and the Home tab.
Pure: no I/O; the tests validate every view with slack_sdk's models.

The form's inputs are named by ``block_id``: ``flow``, ``contact``, ``p:<name>`` for
each parameter the flow reads, ``more`` (other parameters, one ``key=value`` a line)
when the flow may read anything, ``sender`` when there is a choice, and ``channel``
(where the card goes; its ``response_url`` answers the submission).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.domain.flows import FlowInfo
from bot.domain.phone import pretty
from bot.domain.run import console_url
from bot.domain.text import end_confirm_text, label, parameters_line
from bot.slack.messages.blocks import (
    CONSOLE_ACTION,
    Block,
    actions,
    button,
    clip,
    confirm_dialog,
    context,
    escape,
    md,
    more_line,
    plain,
    section,
)
from bot.slack.messages.schedules import schedule_line, unschedule_button

if TYPE_CHECKING:
    from bot.domain.schedule import Scheduled

FORM = "engage_form"  # the modal's callback_id
FLOW_SELECT = "form_flow"  # dispatches: the form is redrawn for the chosen flow
OPEN_FORM = "open_form"  # the Home tab's button
HOME_REFRESH = "home_refresh"  # a recent run's Refresh, on the Home tab
HOME_END = "home_end"  # a recent run's End, on the Home tab
MAX_PARAMETERS = 40  # inputs; a modal holds 100 blocks
MAX_OPTIONS = 100  # a static_select's options (Slack: 1 to 100)
HOME_FLOWS = 20  # flows listed on the Home tab (its 100 blocks); the rest counted
HOME_SCHEDULES = 10  # scheduled starts listed there; likewise
View = dict[str, Any]


@dataclass(frozen=True)
class FlowChoice:
    """A flow the person may start, as the form and the Home tab list it."""

    sid: str
    alias: str | None
    info: FlowInfo | None

    @property
    def label(self) -> str:
        return label(self.alias, self.sid, self.info.name if self.info else None)


def _option(text: str, value: str) -> Block:
    return {"text": plain(text, 75), "value": value}


def _input(
    block_id: str, title: str, element: Block, *, optional: bool = False, hint: str = ""
) -> Block:
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": plain(title, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _text_input(
    action_id: str, *, initial: str = "", placeholder: str = "", multiline: bool = False
) -> Block:
    element: Block = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        element["initial_value"] = initial
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    return element


def form(
    flows: Sequence[FlowChoice],
    chosen: FlowChoice | None,
    *,
    senders: Sequence[str] = (),
    contact: str = "",
    channel: str = "",
) -> View:
    """The *Start a Studio flow* modal, drawn for ``chosen`` (its parameters as inputs).
    ``flows`` is never empty (``nothing_to_start`` says why instead). A select holds 100
    options: past that, the chosen flow is kept among them and the rest are counted."""
    listed = list(flows[:MAX_OPTIONS])
    if chosen is not None and all(f.sid != chosen.sid for f in listed):
        listed = [chosen, *listed[: MAX_OPTIONS - 1]]
    options = [_option(f.label, f.sid) for f in listed]
    select: Block = {
        "type": "static_select",
        "action_id": FLOW_SELECT,
        "options": options,
        "placeholder": plain("Choose a flow", 150),
    }
    if chosen is not None:
        select["initial_option"] = _option(chosen.label, chosen.sid)
    blocks: list[Block] = [
        {
            "type": "input",
            "block_id": "flow",
            "label": plain("Flow", 2000),
            "element": select,
            "dispatch_action": True,
        },
        _input(
            "contact",
            "Contact",
            _text_input("contact", initial=contact, placeholder="+1 617 555 1212 or whatsapp:+1…"),
            hint="The number the flow calls or texts, with its country code.",
        ),
    ]
    read = chosen.info.analysis.parameters if chosen and chosen.info else None
    if read is not None:
        names = sorted(read.required) + sorted(read.optional)
        for name in names[:MAX_PARAMETERS]:
            needed = name in read.required
            blocks.append(
                _input(
                    f"p:{name}",
                    f"{name}{'' if needed else ' (optional)'}",
                    _text_input("value", placeholder="" if needed else "leave empty to skip"),
                    optional=not needed,
                    hint=f"Reaches the flow as {{{{flow.data.{name}}}}}",
                )
            )
    if read is None or read.reads_anything:
        blocks.append(
            _input(
                "more",
                "Parameters",
                _text_input("value", multiline=True, placeholder="first_name=Zeke\nplan=gold"),
                optional=True,
                hint="One key=value a line; each reaches the flow as {{flow.data.key}}.",
            )
        )
    if len(senders) > 1:
        blocks.append(
            _input(
                "sender",
                "Send from",
                {
                    "type": "static_select",
                    "action_id": "sender",
                    "options": [_option(pretty(s), s) for s in senders],
                    "initial_option": _option(pretty(senders[0]), senders[0]),
                },
            )
        )
    where: Block = {
        "type": "conversations_select",
        "action_id": "channel",
        "response_url_enabled": True,
        "default_to_current_conversation": True,
    }
    if channel:
        where["initial_conversation"] = channel
    blocks.append(_input("channel", "Post the card in", where))
    blocks.append(
        _input(
            "when",
            "When",
            {"type": "datetimepicker", "action_id": "when"},
            optional=True,
            hint="Empty: now. A date and time (yours) schedules it; the contact's quiet"
            " hours still apply.",
        )
    )
    summary = (
        f"Starts {chosen.label} for the contact, as `/engage` would: the same checks first."
        if chosen
        else "Choose a flow to see the parameters it reads."
    )
    if chosen and chosen.info:
        summary += " " + parameters_line(chosen.info).capitalize() + "."
    if len(flows) > len(listed):
        summary += " " + more_line(len(flows) - len(listed), "flows are not listed: use /engage")
    blocks.append(context([md(escape(clip(summary, 2900)))]))
    return {
        "type": "modal",
        "callback_id": FORM,
        "title": plain("Start a Studio flow", 24),
        "submit": plain("Start", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"flow": chosen.sid if chosen else ""}),
        "blocks": blocks,
    }


@dataclass(frozen=True)
class RecentRun:
    sid: str
    flow_sid: str
    flow: str  # label
    contact: str  # as masking allows
    status: str
    when: int  # epoch seconds


def home(
    flows: Sequence[FlowChoice],
    recent: Sequence[RecentRun],
    *,
    user_id: str = "",
    api: str = "v1",
    note: str = "",
    week: Mapping[str, tuple[int, int, int, int]] | None = None,
    scheduled: Sequence[Scheduled] = (),
    now: float = 0.0,
) -> View:
    """The app's Home tab: a button to the form, your scheduled starts (each with Cancel),
    your recent runs with the card's buttons, the flows you may start (with ``week``: per
    flow SID, the last 7 days' started, ended, failed and answered runs); ``note`` says
    what the last click did, if it said anything."""
    blocks: list[Block] = [
        section(text=md("*Studio flows*\nStart a flow for a contact, with a form or `/engage`.")),
    ]
    if flows:  # the form offers only flows the reader may start: none, no button
        blocks.append(
            actions([button("Start a Studio flow", action_id=OPEN_FORM, style="primary")])
        )
    if note:
        blocks.append(context([md(escape(clip(note, 2900)))]))
    if scheduled:
        blocks += [{"type": "divider"}, section(text=md("*Your scheduled starts*"))]
        for item in scheduled[:HOME_SCHEDULES]:
            line = schedule_line(item, now, everyone=False)
            blocks.append({**section(text=md(line)), "accessory": unschedule_button(item.id)})
        if len(scheduled) > HOME_SCHEDULES:
            hidden = len(scheduled) - HOME_SCHEDULES
            blocks.append(context([md(more_line(hidden, "(/engage scheduled lists them all)"))]))
    blocks += [{"type": "divider"}, section(text=md("*Your recent runs*"))]
    if not recent:
        blocks.append(context([md("None yet.")]))
    for run in recent[:15]:
        when = f"<!date^{run.when}^{{date_short_pretty}} {{time}}|{run.when}>"
        blocks.append(
            section(
                text=md(
                    f"*{escape(run.flow)}* for {escape(run.contact)} · {escape(run.status)}"
                    f" · {when}\n`{run.sid}`"
                ),
            )
        )
        ref = f"{run.flow_sid}:{run.sid}:{user_id}"
        controls = [
            button(
                "Open in Twilio Console",
                action_id=CONSOLE_ACTION,
                url=console_url(run.flow_sid, run.sid),
            ),
            button("Refresh", action_id=HOME_REFRESH, value=ref),
        ]
        if run.status == "active":
            controls.append(
                button(
                    "End",
                    action_id=HOME_END,
                    value=ref,
                    style="danger",
                    confirm=confirm_dialog(
                        title="End this engagement?",
                        text=end_confirm_text(api),
                        confirm="End it",
                        deny="Keep it",
                    ),
                )
            )
        blocks.append(actions(controls))
    blocks += [{"type": "divider"}, section(text=md("*Flows you may start*"))]
    for flow in flows[:HOME_FLOWS]:
        line = parameters_line(flow.info) if flow.info else "parameters not known yet"
        counts = ""
        if week is not None and flow.sid in week:
            started, ended, failed, answered = week[flow.sid]
            counts = (
                f"\nLast 7 days: {started} started · {ended} ended · {failed} failed"
                f" · {answered} answered"
            )
        blocks.append(section(text=md(f"*{escape(flow.label)}*\n{escape(line)}{counts}")))
    if len(flows) > HOME_FLOWS:
        hidden = len(flows) - HOME_FLOWS
        blocks.append(context([md(more_line(hidden, "(/engage flows lists them all)"))]))
    if not flows:
        blocks.append(context([md("No flow is open to you here; ask an admin.")]))
    return {"type": "home", "blocks": blocks[:100]}


def nothing_to_start(reason: str) -> View:
    """The modal opened instead of the form when the reader may start no flow here: why,
    and nothing to submit (an empty select would make Slack refuse the form silently)."""
    return {
        "type": "modal",
        "callback_id": FORM,
        "title": plain("Start a Studio flow", 24),
        "close": plain("Close", 24),
        "blocks": [
            section(text=md(f":no_entry_sign: No flow to start here: {escape(reason)}.")),
        ],
    }
