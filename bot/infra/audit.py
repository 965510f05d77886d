"""The audit trail: one JSON line per command outcome, on the ``bot.infra.audit`` logger.

Contacts are always masked here; no secret is ever passed in.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal, get_args

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.phone import mask, mask_digits, mask_typed
from bot.infra import metrics
from bot.infra.logs import concerning

log = logging.getLogger("bot.audit")

# Every outcome an audit line may carry (docs/guardrails.md lists them from here).
Kind = Literal[
    "started",
    "failed",
    "unknown",
    "invalid",
    "refused",
    "rate_limited",
    "duplicate",
    "opted_out",
    "capped",
    "cap_overridden",
    "opt_out_added",
    "opt_in",
    "parameters",
    "already_active",
    "ended",
    "quiet_hours_overridden",
    "scheduled",
    "schedule_cancelled",
    "schedule_fired",
    "step_incomplete",
    "bulk_started",
    "bulk_pause",
    "bulk_resume",
    "bulk_cancel",
    "bulk_done",
    "bulk_cancelled",
]
OUTCOMES: tuple[str, ...] = get_args(Kind)


def record(
    outcome: Kind,
    caller: Caller,
    command: EngageCommand | None = None,
    *,
    sid: str | None = None,
    code: int | None = None,
    latency_ms: float | None = None,
    detail: str | None = None,
    typed: str | None = None,
) -> None:
    """Log one outcome (``Kind``: started, failed, unknown, refused, …).
    ``typed``: the part of the user's text at fault, masked wherever ``detail`` quotes it
    (it may be a number however mangled)."""
    if detail and typed:
        detail = detail.replace(typed, mask_typed(typed))
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "event": "engage",
        "outcome": outcome,
        "team": caller.team_id,
        "user": caller.user_id,
        "channel": caller.channel_id,
        "flow": command.flow_sid if command else None,
        "contact": mask(command.to) if command else None,
        "sid": sid,
        "code": code,
        "latency_ms": round(latency_ms) if latency_ms is not None else None,
        "detail": mask_digits(detail) if detail else detail,  # it may quote a typed number
    }
    if caller.via:
        entry["via"] = caller.via
    log.info(json.dumps(entry, ensure_ascii=False))
    metrics.outcome(
        surface(caller),
        command.flow_sid if command else None,
        command.flow_alias if command else None,
        outcome,
        code,
        detail,
    )


def surface(caller: Caller) -> str:
    """Where a command came from, in a word (a metrics label)."""
    if caller.terminal:
        return "terminal"
    for surface in ("workflow", "schedule", "bulk"):
        if caller.via.startswith(surface):
            return surface
    return "slack"


class LogFormatter(logging.Formatter):
    """Audit lines as bare JSON; everything else as ``time level name: message`` or, with
    ``json`` (LOG_FORMAT=json), one JSON object a line: time, level, logger, message, the
    run or bulk run it concerns (``logs.concerning``), and the traceback if any."""

    def __init__(self, *, json_lines: bool = False) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        if record.name == log.name and not self.json_lines:
            return record.getMessage()
        if record.name == log.name:  # the audit line, with what every JSON line carries
            entry = json.loads(record.getMessage())
            entry.update(level=record.levelname.lower(), logger=record.name, **concerning.get())
            return json.dumps(entry, ensure_ascii=False)
        if not self.json_lines:
            return super().format(record)
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **concerning.get(),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
