"""Commands parked behind a confirming button ("Start again?", "End it and start again?").

The button carries a random token, never the command; the command waits here for
``PARKED_SECONDS``, in ``Durable`` state: with Redis, any process can take the
click; if Redis does not answer, parking or taking one raises ``StateUnavailable``
(the user is told, and nothing is sent).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass

from bot.domain.command import EngageCommand
from bot.domain.contact_clock import Instant
from bot.state.store import Durable

PARKED_SECONDS = 15 * 60  # how long a confirming button stays valid


@dataclass(frozen=True)
class Parked:
    """A command waiting for its author's click, and the active run it would end first."""

    user_id: str
    command: EngageCommand
    active_sid: str | None = None
    checked: bool = False  # the flow checks passed or were overridden: skip them


class Confirmations:
    def __init__(self, state: Durable) -> None:
        self.state = state

    async def park(
        self,  # a command's ``when``, if any, must be an ``Instant`` (resolved)
        user_id: str,
        command: EngageCommand,
        active_sid: str | None = None,
        *,
        checked: bool = False,
    ) -> str:
        """Keep ``command`` for a confirming button; returns the button's token."""
        token = secrets.token_urlsafe(12)
        value = json.dumps(
            {"user": user_id, "command": asdict(command), "active": active_sid, "checked": checked}
        )
        await self.state.use(lambda s: s.add(f"parked:{token}", value, PARKED_SECONDS))
        return token

    async def take(self, token: str) -> Parked | None:
        """The parked command (once), or None if expired, used or unknown."""
        value = await self.state.use(lambda s: s.pop(f"parked:{token}"))
        if value is None:
            return None
        data = json.loads(value)
        when = data["command"].pop("when", None)  # parked commands carry an Instant, if any
        command = EngageCommand(**data["command"], when=Instant(**when) if when else None)
        return Parked(data["user"], command, data.get("active"), bool(data.get("checked")))
