"""What one process serves Slack with, built once from the settings: the use-cases with
their guardrails and state, and the reply poster. Listeners receive it as ``services``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.command import Defaults
from bot.config import Settings
from bot.engage import Engager, state_store, throttle
from bot.responder import Responder
from bot.run_actions import RunActions
from bot.store import Durable, Store
from bot.studio import StudioClient


@dataclass(frozen=True)
class Services:
    defaults: Defaults  # what the /engage parser falls back on
    engager: Engager  # starts: the rules, the start, the report
    runs: RunActions  # status, Refresh, End
    responder: Responder  # replies through response_url
    store: Store  # shared state (memory or Redis)

    @classmethod
    def build(cls, settings: Settings, studio: StudioClient) -> Services:
        store = state_store(settings)
        engager = Engager(
            studio,
            policy=settings.policy,
            throttle=throttle(settings, store),
            state=Durable(store),
            mask_numbers=settings.mask_numbers,
            aliases={spec.sid: alias for alias, spec in settings.studio_flows.items()},
        )
        return cls(settings.command_defaults, engager, RunActions(engager), Responder(), store)

    async def drain(self, grace: float) -> None:
        """Stop taking work and let what is in flight finish (see ``Tasks.drain``)."""
        await self.engager.tasks.drain(grace)

    async def aclose(self) -> None:
        """Close every connection pool (after ``drain``)."""
        await self.engager.studio.aclose()
        await self.store.aclose()
        await self.responder.aclose()
