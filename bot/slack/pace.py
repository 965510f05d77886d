"""Slack's rate tiers, kept: the Web API calls the bot makes on its own (cards, their
edits, thread notes, progress messages, files, DMs) wait for a slot on a schedule per
method (per channel for ``chat.postMessage``), shared by every process through the
store (the same GCRA script as Studio's pace, ``Store.reserve``), so that the bot never
sends more than a tier allows.

- ``PacedWebClient`` is slack_sdk's ``AsyncWebClient`` that takes its slot before each
  paced call. A call made ``within(seconds)`` gives up when its slot is further away
  (``SlackBusy``, nothing sent): a card's edit that would wait is skipped, and the next
  one shows the newer state (the last state always wins; ``bot.slack.follow``).
- A 429 pushes the method's schedule back by Slack's ``Retry-After``, so that no other
  call of this process or another runs into it; the caller honours it as before.

Tiers (api.slack.com/apis/rate-limits): ``chat.postMessage`` about one a second per
channel; ``chat.update``, ``conversations.open``, ``files.*`` Tier 3 (50 a minute; files
kept at Tier 2's 20); ``views.publish`` Tier 4 (100 a minute). Calls answering a person
(``views.open`` with a trigger, ``response_url``) are not paced here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.infra import metrics
from bot.slack.api_errors import slack_retry_after
from bot.state.store import BestEffort

SPACING = 1.05  # a little under each tier: calls arrive with jitter
# method -> (calls a minute, per channel?)
TIERS: dict[str, tuple[float, bool]] = {
    "chat.postMessage": (60.0, True),
    "chat.update": (50.0, False),
    "conversations.open": (50.0, False),
    "views.publish": (100.0, False),
    "files.info": (20.0, False),
    "files.getUploadURLExternal": (20.0, False),
    "files.completeUploadExternal": (20.0, False),
}

_within: ContextVar[float | None] = ContextVar("slack_within", default=None)


class SlackBusy(Exception):
    """The method's next slot is further away than the caller would wait; nothing sent."""

    def __init__(self, method: str, wait: float) -> None:
        super().__init__(f"{method}: next slot in {wait:.1f} s")
        self.method = method
        self.wait = wait


@contextlib.contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Paced calls made inside give up (``SlackBusy``) if their slot is further away
    than ``seconds`` (None: they wait their turn)."""
    token = _within.set(seconds)
    try:
        yield
    finally:
        _within.reset(token)


class SlackPace:
    def __init__(self, state: BestEffort) -> None:
        self.state = state

    @staticmethod
    def key(method: str, channel: str) -> tuple[str, float] | None:
        """The schedule a call takes its slot on, and the seconds between slots."""
        tier = TIERS.get(method)
        if tier is None:
            return None
        per_minute, per_channel = tier
        name = f"pace:slack:{method}" + (f":{channel}" if per_channel and channel else "")
        return name, 60.0 / per_minute * SPACING

    async def slot(self, method: str, channel: str = "") -> None:
        """Wait for the call's slot (or give up, ``SlackBusy``, when ``within`` says so)."""
        found = self.key(method, channel)
        if found is None:
            return
        name, interval = found
        horizon = _within.get()
        wait = await self.state.use(
            lambda s: s.reserve(name, interval, float("inf") if horizon is None else horizon)
        )
        if wait < 0:
            raise SlackBusy(method, -wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def hold(self, method: str, channel: str, seconds: float) -> None:
        """Slack said to wait ``seconds`` (429): the schedule moves past that."""
        found = self.key(method, channel)
        if found is not None and seconds > 0:
            name = found[0]
            await self.state.use(lambda s: s.reserve(name, seconds, float("inf")))


class PacedWebClient(AsyncWebClient):
    """slack_sdk's client, taking a slot under Slack's tiers before each paced call."""

    def __init__(self, *args: Any, pace: SlackPace | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pace = pace

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        calls = metrics.SLACK_CALLS
        if self.pace is None:
            return await self._counted(api_method, kwargs)
        channel = _channel(kwargs)
        try:
            await self.pace.slot(api_method, channel)
        except SlackBusy:
            calls.labels(api_method, "busy").inc()
            raise
        try:
            return await self._counted(api_method, kwargs)
        except SlackApiError as exc:
            if (wait := slack_retry_after(exc)) is not None:
                await self.pace.hold(api_method, channel, wait)
            raise

    async def _counted(self, api_method: str, kwargs: dict[str, Any]) -> AsyncSlackResponse:
        """The call, counted by its result: ok, ratelimited (429), error, or no answer."""
        calls = metrics.SLACK_CALLS
        try:
            answer = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            limited = slack_retry_after(exc) is not None
            calls.labels(api_method, "ratelimited" if limited else "error").inc()
            raise
        except Exception:
            calls.labels(api_method, "no_answer").inc()
            raise
        calls.labels(api_method, "ok").inc()
        return answer


def _channel(call: dict[str, Any]) -> str:
    for part in ("json", "data", "params"):
        found = call.get(part)
        if isinstance(found, dict) and found.get("channel"):
            return str(found["channel"])
    return ""
