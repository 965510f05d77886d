"""What one process serves Slack with, built once from the settings: the use-cases with
their guardrails and state, and the reply poster. Listeners receive it as ``services``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.command import Defaults
from bot.config import Settings
from bot.engage import Engager, state_store, throttle
from bot.flow_catalog import FlowCatalog
from bot.messages.text import configured_flows
from bot.responder import Responder
from bot.run_actions import RunActions
from bot.store import BestEffort, Durable, Store
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
            catalog=FlowCatalog(studio, BestEffort(store), settings.flow_cache_seconds),
            parameter_check=settings.flow_parameter_check,
        )
        return cls(settings.command_defaults, engager, RunActions(engager), Responder(), store)

    def start(self) -> None:
        """Read the configured flows from Studio in the background: never delays readiness."""
        catalog = self.engager.catalog
        if catalog is not None:
            sids = [sid for _, sid in configured_flows(self.defaults)]
            self.engager.tasks.spawn(catalog.warm(sids), "flows:warm")

    async def drain(self, grace: float) -> None:
        """Stop taking work and let what is in flight finish (see ``Tasks.drain``)."""
        await self.engager.tasks.drain(grace)

    async def aclose(self) -> None:
        """Close every connection pool (after ``drain``)."""
        await self.engager.studio.aclose()
        await self.store.aclose()
        await self.responder.aclose()
