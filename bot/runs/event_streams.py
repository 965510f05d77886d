"""``POST /twilio/events``: Twilio Event Streams webhook deliveries about Studio runs.

A delivery is a JSON array of CloudEvents (``com.twilio.studio.flow.execution.started``,
``…execution.ended``, ``com.twilio.studio.flow.step.ended``). It is checked as Twilio
signs JSON webhooks: ``X-Twilio-Signature`` is base64(HMAC-SHA1(auth token, URL)),
where the URL is the one Twilio was given (``TWILIO_EVENTS_URL``: a PaaS router
changes scheme and host, so the request's own URL cannot be trusted) with its
``bodySHA256`` query parameter, which must be the SHA-256 of the body. A delivery
whose URL carries no ``bodySHA256`` is accepted as twilio-python accepts it, but its
signature covers the URL alone: its events are hints (the runs are read from
Studio; nothing in the body is recorded), and the bot logs once that deliveries
arrive so. Forged, unsigned or stale deliveries (every event older than
``MAX_EVENT_AGE``) get 401 and change nothing. Each event nudges the follower
(``bot.slack.follow``) to read the run now, and moves or ends the run's record
(``bot.runs.tracker``); events for runs nobody follows or recorded are acknowledged and
dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from bot.domain.command import RUN_SID
from bot.domain.phone import normal_sid
from bot.domain.run import Step, end_of

log = logging.getLogger(__name__)

EVENTS_PATH = "/twilio/events"
MAX_EVENT_AGE = 3600.0  # seconds: an older delivery is a replay, or useless
MAX_BODY_BYTES = 1024 * 1024  # Event Streams batches events; a MiB is far beyond one batch
STUDIO_EVENTS = (
    "com.twilio.studio.flow.execution.started",
    "com.twilio.studio.flow.execution.ended",
    "com.twilio.studio.flow.step.ended",
)


def _with_and_without_port(url: str) -> list[str]:
    """The URL as given, and with its default port added or removed (Twilio signs either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    forms = {url}
    forms.add(urlunsplit(parts._replace(netloc=host)))
    forms.add(urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}")))
    return sorted(forms)


Coverage = Literal["body", "url"]


def verify(url: str, body: bytes, signature: str, auth_token: str) -> Coverage | None:
    """What ``signature`` vouches for, as twilio-python's ``RequestValidator`` checks a
    JSON delivery: ``"body"`` when it signs ``url`` with a ``bodySHA256`` that matches
    ``body``; ``"url"`` when it signs a ``url`` that carries no body hash (the body is
    then Twilio's word for nothing: a hint to read the run); None when it is forged."""
    if not signature:
        return None
    hashes = parse_qs(urlsplit(url).query).get("bodySHA256")
    if hashes and not hmac.compare_digest(hashlib.sha256(body).hexdigest(), hashes[0]):
        return None
    key = auth_token.encode()
    for form in _with_and_without_port(url):
        digest = hmac.new(key, form.encode(), hashlib.sha1).digest()
        if hmac.compare_digest(base64.b64encode(digest).decode(), signature):
            return "body" if hashes else "url"
    return None


def signed_url(configured: str, query: str) -> str:
    """The URL Twilio signed: the configured one, with the query string it was called with."""
    base = configured.split("?", 1)[0]
    return f"{base}?{query}" if query else base


def _run_sid(data: Any) -> str | None:
    """The run an event is about: ``execution_sid`` (or any ``…sid`` holding an FN SID)."""
    if not isinstance(data, dict):
        return None
    candidates = [data.get("execution_sid"), data.get("flow_execution_sid"), data.get("sid")]
    candidates += [v for k, v in data.items() if k.endswith("sid")]
    for value in candidates:
        if isinstance(value, str) and RUN_SID.match(value):
            return normal_sid(value)
    return None


def _age(event: dict[str, Any], now: float) -> float | None:
    moment = event.get("time")
    if not isinstance(moment, str):
        return None
    try:
        when = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return now - when.timestamp()


@dataclass(frozen=True)
class StudioEvent:
    """One Studio event: its ID, the run, its kind (``execution.ended``…), when it
    happened (epoch seconds, 0 if not said) and, for a step, the widget it left."""

    id: str
    sid: str
    kind: str
    when: float = 0.0
    widget: str = ""
    failed: bool = False  # the step is one a run fails at (``runs.end_of``'s rule)


def _step(data: Any) -> tuple[str, bool]:
    """The widget a step event is about, and whether it is a failure by the same rule
    polling applies to the last step (``runs.end_of``): field names as Studio's Steps
    resource has them; not yet confirmed against live Event Streams deliveries."""
    if not isinstance(data, dict):
        return "", False
    text = {k: v for k, v in data.items() if isinstance(v, str) and v}
    widget = text.get("transitioned_from") or text.get("widget") or text.get("name") or ""
    step = Step(sid=text.get("sid", ""), name=text.get("name"), transitioned_from=widget or None)
    return widget, end_of([step])[1] if widget else False


def events_in(body: bytes, now: float) -> tuple[list[StudioEvent], bool] | None:
    """A delivery's Studio events, and whether it is stale; None if the body is not a
    CloudEvents batch. Pure."""
    try:
        events = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if isinstance(events, dict):
        events = [events]
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return None
    found = []
    ages = []
    for event in events:
        age = _age(event, now)
        if age is not None:
            ages.append(age)
        kind = event.get("type")
        if kind in STUDIO_EVENTS and (sid := _run_sid(event.get("data"))):
            short = str(kind).removeprefix("com.twilio.studio.flow.")
            widget, failed = _step(event.get("data")) if short == "step.ended" else ("", False)
            when = now - age if age is not None else 0.0
            found.append(StudioEvent(str(event.get("id", "")), sid, short, when, widget, failed))
    stale = bool(ages) and min(ages) > MAX_EVENT_AGE
    return found, stale


def runs_in(body: bytes, now: float) -> tuple[list[tuple[str, str]], bool] | None:
    """The (event ID, run SID) pairs of a delivery's Studio events, and whether it is stale;
    None if the body is not a CloudEvents batch. Pure."""
    found = events_in(body, now)
    if found is None:
        return None
    events, stale = found
    return [(e.id, e.sid) for e in events], stale


Nudge = Callable[[str, str], Awaitable[None]]  # (event ID, run SID)
