"""What became of a start (``bot.engage.start``): one of ``Started``, ``Refused``,
``Failed`` or ``Unknown``, for every surface to render its own way. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.domain.consent import Suppressed
from bot.domain.contact_clock import Opening
from bot.domain.errors import StudioError
from bot.domain.flows import Findings
from bot.domain.run import Engagement


@dataclass(frozen=True)
class Refused:
    """A start stopped before anything was sent: by the rules (who, where, which contact:
    ``reason``), the contact's quiet hours (``opening``: when their window opens), the
    per-user limit (``wait`` seconds), the duplicate window (the same user, flow and
    contact just now), consent (``opted_out`` or ``capped``: ``suppressed`` says when and
    how; ``unchecked``: the suppression list could not be read), a flow whose REST API
    trigger is not connected, parameters the
    flow does not fit (``findings``; ``ask``: the surface may ask the person to start
    anyway), or ``withdrawn`` by the surface at its turn (``StartRequest.at_turn``).
    Each surface says it its own way (``messages.refusal`` for Slack, ``refusal_text``
    for text)."""

    kind: Literal[
        "rules",
        "quiet_hours",
        "rate_limited",
        "duplicate",
        "opted_out",
        "capped",
        "unchecked",
        "not_rest_ready",
        "parameters",
        "withdrawn",
    ]
    reason: str = ""
    wait: float = 0.0
    findings: Findings | None = None
    opening: Opening | None = None
    ask: bool = False
    suppressed: Suppressed | None = None


@dataclass(frozen=True)
class Started:
    """Twilio started the run."""

    engagement: Engagement


@dataclass(frozen=True)
class Failed:
    """Certainly not started: Twilio refused it, or the bot stopped before sending.
    ``active``: the contact's run already active, when Twilio said so and it was found."""

    error: StudioError
    active: Engagement | None = None


@dataclass(frozen=True)
class Unknown:
    """It may have started: the request left and no answer came. Never sent again."""

    error: StudioError


Sent = Started | Failed | Unknown
"""What became of a start that reached its create request."""


Result = Started | Refused | Failed | Unknown
"""What ``Engager.start`` returns: one of four, so no surface needs to narrow it."""
