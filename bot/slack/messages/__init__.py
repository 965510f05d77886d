"""Every message the bot sends, as Block Kit; every module here is pure (no I/O).

| module | builds |
|---|---|
| ``blocks`` | the pieces (sections, buttons, dialogs), Slack's limits, action IDs |
| ``text`` | words shared with the terminal: labels, errors, help, the End rule |
| ``cards`` | the run: the channel card and ``/engage status`` |
| ``prompts`` | confirm-or-cancel questions: duplicates, already active |
| ``replies`` | acks, refusals, failures and listings |

The names below are the ones the rest of the bot uses.
"""

from bot.domain.text import (
    describe_error,
    findings_text,
    flow_label,
    flow_summary,
    help_text,
    outcome_note,
)
from bot.slack.messages.blocks import (
    AGAIN_ACTION,
    ANYWAY_ACTION,
    CANCEL_ACTION,
    CONSOLE_ACTION,
    END_ACTION,
    REFRESH_ACTION,
    RESTART_ACTION,
    Message,
)
from bot.slack.messages.cards import (
    RunCard,
    card_of,
    engaged,
    engaged_card,
    run_card,
    status_message,
)
from bot.slack.messages.prompts import (
    already_active,
    cancelled,
    confirm_duplicate,
    confirm_parameters,
    expired,
)
from bot.slack.messages.replies import (
    action_failed,
    card_stuck_note,
    end_note,
    engage_failed,
    flow_help,
    flows_message,
    help_message,
    invalid_command,
    invite_for_updates,
    looking_up,
    lookup_failed,
    not_allowed,
    not_allowed_to_end,
    not_rest_ready,
    notice_message,
    parameters_refused,
    rate_limited,
    reading_flows,
    refusal,
    refused,
    shutting_down,
    starting,
    state_unavailable,
    thread_note,
)

__all__ = [
    "AGAIN_ACTION",
    "ANYWAY_ACTION",
    "CANCEL_ACTION",
    "CONSOLE_ACTION",
    "END_ACTION",
    "REFRESH_ACTION",
    "RESTART_ACTION",
    "Message",
    "RunCard",
    "action_failed",
    "already_active",
    "cancelled",
    "card_of",
    "card_stuck_note",
    "confirm_duplicate",
    "confirm_parameters",
    "describe_error",
    "end_note",
    "engage_failed",
    "engaged",
    "engaged_card",
    "expired",
    "findings_text",
    "flow_help",
    "flow_label",
    "flow_summary",
    "flows_message",
    "help_message",
    "help_text",
    "invalid_command",
    "invite_for_updates",
    "looking_up",
    "lookup_failed",
    "not_allowed",
    "not_allowed_to_end",
    "not_rest_ready",
    "notice_message",
    "outcome_note",
    "parameters_refused",
    "rate_limited",
    "reading_flows",
    "refusal",
    "refused",
    "run_card",
    "shutting_down",
    "starting",
    "state_unavailable",
    "status_message",
    "thread_note",
]
