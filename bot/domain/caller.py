"""Who asked for something, and from where. Pure."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """Who sent a command, from where (``terminal``: ``python -m bot trigger``, which
    holds the Twilio credentials itself, so Slack's who-and-where rules do not apply)."""

    user_id: str
    channel_id: str = ""
    team_id: str = ""
    terminal: bool = False
    via: str = ""  # what acted for the user, if not they themselves (a workflow)
