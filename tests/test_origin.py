"""One place reads who sent a payload, from where, and where to answer: every shape Slack
sends (slash command, block action, message shortcut, global shortcut, view submission)."""

from __future__ import annotations

from typing import Any

import pytest

from bot.app.listeners.origin import Origin, origin_of
from bot.domain.caller import Caller

CALLER = Caller("U1", "C1", "T1")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {
                "user_id": "U1",
                "channel_id": "C1",
                "team_id": "T1",
                "response_url": "r",
                "trigger_id": "t",
            },
            Origin(CALLER, "r", "t", ""),
        ),
        (
            {
                "type": "block_actions",
                "user": {"id": "U1"},
                "channel": {"id": "C1"},
                "team": {"id": "T1"},
                "response_url": "r",
                "trigger_id": "t",
                "actions": [{"value": "v"}],
            },
            Origin(CALLER, "r", "t", "v"),
        ),
        (
            {
                "type": "block_actions",
                "user": {"id": "U1"},
                "team": {"id": "T1"},
                "container": {"type": "view", "channel_id": "C1"},
                "trigger_id": "t",
                "actions": [{"action_id": "x"}],
            },
            Origin(CALLER, "", "t", "", "x"),
        ),
        (
            {
                "type": "message_action",
                "user": {"id": "U1"},
                "channel": {"id": "C1"},
                "team": {"id": "T1"},
                "response_url": "r",
                "trigger_id": "t",
            },
            Origin(CALLER, "r", "t", ""),
        ),
        (
            {"type": "shortcut", "user": {"id": "U1"}, "team": {"id": "T1"}, "trigger_id": "t"},
            Origin(Caller("U1", "", "T1"), "", "t", ""),
        ),
        (
            {
                "type": "view_submission",
                "user": {"id": "U1"},
                "team": {"id": "T1"},
                "response_urls": [{"response_url": "r", "channel_id": "C1"}],
            },
            Origin(CALLER, "r", "", ""),
        ),
        ({}, Origin(Caller(""), "", "", "")),
    ],
)
def test_every_payload_shape(body: dict[str, Any], expected: Origin) -> None:
    assert origin_of(body) == expected
