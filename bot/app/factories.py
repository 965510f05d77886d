"""What the settings build, once per process: the Studio client, the state store, the
guardrails over it. The wiring (``bot.app.services``) and the CLI call these."""

from __future__ import annotations

from bot.app.config import Settings
from bot.engage.throttle import Throttle
from bot.state.store import BestEffort, Store, open_store
from bot.studio.client import StudioClient


def studio_client(settings: Settings) -> StudioClient:
    """The process's one Studio client, as configured."""
    username, password = settings.twilio_credentials
    return StudioClient(
        base_url=settings.twilio_base_url,
        username=username,
        password=password,
        api=settings.studio_api,
    )


def state_store(settings: Settings) -> Store:
    """Redis when REDIS_URL is set, else this process's memory."""
    url = settings.redis_url.get_secret_value() if settings.redis_url else None
    return open_store(url, verify_tls=settings.redis_tls_verify)


def throttle(settings: Settings, store: Store) -> Throttle:
    """The "how often" guardrails over ``store``, falling back to memory while it fails."""
    return Throttle(
        BestEffort(store),
        user_rate=settings.user_rate_limit,
        studio_rate=settings.studio_rate_limit,
        max_wait=settings.pacing_max_wait_seconds,
        duplicate_window=settings.duplicate_window_seconds,
    )
