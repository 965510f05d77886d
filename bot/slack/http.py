"""Slack's HTTP requests, taken in the order that costs an attacker most and us least.

1. Headers first: no signature or a timestamp older than five minutes is refused
   before a byte of the body is read.
2. The body is read up to ``MAX_BODY_BYTES`` (more is refused, 413).
3. The signature is checked on the raw bytes (slack_sdk's ``SignatureVerifier``).
4. Only then is the body parsed (``parse_body``, pure), and a signed body that does
   not parse is a 400 with one log line.

Bolt's own ``parse_body`` is not used: it takes any form body that merely contains
the word ``payload`` (a note, a channel or a user name) for an interactivity
payload and returns nothing. Here a form is an interactivity payload only when it
has a ``payload`` field, which is all Slack sends for one.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from bot.domain.errors import BadRequest

if TYPE_CHECKING:  # Bolt only for to_bolt: the bench's ceiling serves without it
    from slack_bolt.request.async_request import AsyncBoltRequest

log = logging.getLogger(__name__)

# Slack's largest request to an app is an interactivity payload that carries the
# whole message or view (a 50-block message, a 100-block modal), URL-encoded:
# tens of KiB. A quarter of a MiB leaves room for that and refuses bulk at once.
MAX_BODY_BYTES = 256 * 1024
MAX_AGE_SECONDS = 5 * 60  # Slack's own rule for X-Slack-Request-Timestamp


def check_headers(headers: Mapping[str, str], now: float | None = None) -> tuple[str, str]:
    """The timestamp and signature, if present and fresh; raises ``BadRequest`` (401)."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise BadRequest(401, "unsigned")
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        raise BadRequest(401, "malformed timestamp") from None
    if age > MAX_AGE_SECONDS:
        raise BadRequest(401, "stale timestamp")
    return timestamp, signature


def verify(verifier: SignatureVerifier, body: bytes, timestamp: str, signature: str) -> None:
    """Raise ``BadRequest`` (401) unless ``body`` is signed with the app's signing secret."""
    if not verifier.is_valid(body, timestamp, signature):
        raise BadRequest(401, "bad signature")


def parse_body(body: str, content_type: str | None) -> dict[str, Any]:
    """A signed body as Bolt's listeners expect it. Pure. Raises ``BadRequest`` (400).

    JSON (the Events API) is an object; a form is a slash command, unless it has a
    ``payload`` field, which is an interactivity payload (JSON).
    """
    try:
        if (content_type or "").startswith("application/json"):
            return _object(json.loads(body))
        form = dict(parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body)))
        if "payload" in form:
            return _object(json.loads(form["payload"]))
        return form
    except (ValueError, RecursionError):
        raise BadRequest(400, "malformed body") from None


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(400, "not a JSON object")
    return value


@dataclass(frozen=True)
class SignedRequest:
    """A request that passed every check: its raw text and what it says."""

    raw: str
    body: dict[str, Any]
    query: str
    headers: Mapping[str, str]

    def to_bolt(self) -> AsyncBoltRequest:
        """The Bolt request, with our parse of the body (never Bolt's)."""
        from slack_bolt.context.async_context import AsyncBoltContext
        from slack_bolt.request.async_internals import build_async_context
        from slack_bolt.request.async_request import AsyncBoltRequest

        request = AsyncBoltRequest(body="", query=self.query, headers=dict(self.headers))
        request.raw_body = self.raw  # Bolt verifies the signature again on it
        request.body = self.body
        request.context = build_async_context(AsyncBoltContext({}), self.body)
        return request


async def signed_request(request: web.Request, verifier: SignatureVerifier) -> SignedRequest:
    """The request as Slack signed it, checked in the order above; ``BadRequest``
    (401, 413 or 400) if it is not."""
    timestamp, signature = check_headers(request.headers)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BadRequest(413, "body too large") from None
    if len(raw) > MAX_BODY_BYTES:
        raise BadRequest(413, "body too large")
    verify(verifier, raw, timestamp, signature)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(400, "body is not UTF-8") from None
    return SignedRequest(
        text, parse_body(text, request.content_type), request.query_string, request.headers
    )
