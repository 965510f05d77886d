"""What the bot counts for an operator, in Prometheus' text format (``GET /metrics``).

One registry per process (prometheus-client's own, not its global one, so that nothing
another library registers leaks in), each metric defined here once and moved where its
event happens. Labels never carry a phone number, a user ID or a secret: flows are
labelled by their configured alias (else ``other``), surfaces and outcomes by a word
from a fixed set, Twilio's errors by their code, Slack's calls by their method.

Queue depths are sampled every ``SAMPLE_SECONDS`` by the bot (``Sampler``): a scrape
only reads numbers, never waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = CONTENT_TYPE_LATEST
SAMPLE_SECONDS = 15.0
OTHER = "other"  # a flow not configured here: one label for all of them

STARTS = Counter(
    "engage_outcomes",
    "Audit outcomes (a start, a refusal, a failure…) by surface, flow and outcome;"
    " failures carry Twilio's error code, refusals the rule that refused",
    ["surface", "flow", "outcome", "code", "rule"],
    registry=REGISTRY,
)
# The rules a refusal can name (its detail names the variable): a bounded label.
RULES = (
    "ALLOWED_SLACK_USERS",
    "ALLOWED_SLACK_CHANNELS",
    "ALLOWED_COUNTRIES",
    "ALLOW_PREMIUM_NUMBERS",
    "ADMIN_SLACK_USERS",
    "BULK_SLACK_USERS",
    "QUIET_HOURS",
    "USER_RATE_LIMIT",
    "DUPLICATE_WINDOW_SECONDS",
    "STUDIO_FLOWS",
    "WORKFLOW_UNATTENDED_USERS",
    "parameters",
    "REST API trigger",
)
STUDIO_SECONDS = Histogram(
    "engage_studio_request_seconds",
    "Studio requests, from send to answer",
    ["method"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20),
    registry=REGISTRY,
)
STUDIO_ANSWERS = Counter(
    "engage_studio_answers",
    "Studio's answers by HTTP status ('none': no answer: a timeout or a broken connection)",
    ["method", "status"],
    registry=REGISTRY,
)
STUDIO_RETRIES = Counter(
    "engage_studio_retries",
    "Studio requests sent again (a connection that never opened, or after a 429)",
    ["reason"],
    registry=REGISTRY,
)
SLACK_CALLS = Counter(
    "engage_slack_calls",
    "The bot's Slack Web API calls by method and result (ok, error, ratelimited, busy)",
    ["method", "result"],
    registry=REGISTRY,
)
ACK_SECONDS = Histogram(
    "engage_ack_seconds",
    "Slack's requests over HTTP, from arrival to the bot's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3),
    registry=REGISTRY,
)
PACE_SECONDS = Histogram(
    "engage_pace_wait_seconds",
    "How long a Studio request waited for its turn under the account's pace",
    ["pace"],
    buckets=(0.001, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
    registry=REGISTRY,
)
STORE_OUTAGES = Counter(
    "engage_store_outages",
    "Times a dependency (the shared state, a loop's) went down",
    ["what"],
    registry=REGISTRY,
)
STORE_FALLBACKS = Counter(
    "engage_store_fallbacks",
    "Best-effort state calls answered from this process's memory because the store was out",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "engage_event_deliveries",
    "Event Streams deliveries: accepted (body vouched for, or a hint) or refused, by reason",
    ["result", "reason"],
    registry=REGISTRY,
)
QUEUE = Gauge(
    "engage_queue_depth",
    "Work waiting, sampled: schedules waiting and due, bulk rows waiting, runs followed"
    " for records (active, overdue), cards followed",
    ["queue"],
    registry=REGISTRY,
)


_configured: set[str] = set()  # the flows configured here (``configure``)


def configure(flows: frozenset[str]) -> None:
    """The flows this bot is configured with: the only SIDs a label may carry."""
    _configured.update(flows)


def flow_label(flow_sid: str | None, alias: str | None) -> str:
    """A flow as a label: its alias; a configured flow without one by its SID; any other
    flow ``other`` (bounded: an operator's list, never what a user typed)."""
    if alias:
        return alias
    if flow_sid and flow_sid in _configured:
        return flow_sid
    return OTHER


def rule_of(said: str, detail: str | None) -> str:
    """Which rule a refusal names (one of ``RULES``), ``other`` if none; "" otherwise."""
    if said == "rate_limited":
        return "USER_RATE_LIMIT"
    if said == "duplicate":
        return "DUPLICATE_WINDOW_SECONDS"
    if said != "refused":
        return ""
    text = detail or ""
    if text.startswith("quiet hours"):
        return "QUIET_HOURS"
    return next((rule for rule in RULES if rule in text), OTHER)


def outcome(
    surface: str,
    flow_sid: str | None,
    alias: str | None,
    said: str,
    code: int | None,
    detail: str | None = None,
) -> None:
    """An audit line's outcome, counted."""
    rule = rule_of(said, detail)
    STARTS.labels(surface, flow_label(flow_sid, alias), said, str(code or ""), rule).inc()


class _Off:
    """A metric that counts nothing (``disable``): every call accepted, nothing kept."""

    def labels(self, *_: object) -> _Off:
        return self

    def inc(self, *_: object) -> None:
        return None

    def observe(self, *_: object) -> None:
        return None

    def set(self, *_: object) -> None:
        return None


def disable() -> None:
    """METRICS_ENABLED=false: nothing is counted (the bench compares the ack path with
    and without); ``/metrics`` answers 404."""
    global STARTS, STUDIO_SECONDS, STUDIO_ANSWERS, STUDIO_RETRIES, SLACK_CALLS, ACK_SECONDS
    global PACE_SECONDS, STORE_OUTAGES, STORE_FALLBACKS, DELIVERIES, QUEUE, enabled
    off: Any = _Off()
    STARTS = STUDIO_SECONDS = STUDIO_ANSWERS = STUDIO_RETRIES = SLACK_CALLS = off
    ACK_SECONDS = PACE_SECONDS = STORE_OUTAGES = STORE_FALLBACKS = DELIVERIES = QUEUE = off
    enabled = False


enabled = True


def render() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)


class Sampler:
    """Samples queue depths every ``SAMPLE_SECONDS`` in the background: each source an
    async callable answering a number (or raising: that sample is skipped)."""

    def __init__(self, sources: Mapping[str, Callable[[], Awaitable[float]]]) -> None:
        self.sources = dict(sources)
        self._task: asyncio.Task[None] | None = None

    async def sample(self) -> None:
        for name, source in self.sources.items():
            try:
                QUEUE.labels(name).set(await source())
            except Exception as exc:  # noqa: BLE001 - the store is out: the last value stands
                log.debug("metrics: %s not sampled (%s)", name, type(exc).__name__)

    def start(self) -> None:
        if self._task is None and self.sources:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="metrics")

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(SAMPLE_SECONDS)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
