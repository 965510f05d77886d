"""The Studio client: one pooled ``httpx.AsyncClient`` speaking Studio's REST API.

Promises:
- ``create_engagement`` sends ``POST /v1/Flows/{FlowSid}/Engagements`` at most
  once per connection that reached Twilio. It retries only what cannot have
  started an engagement: a connection that never opened, and a 429 (after
  ``Retry-After``, within a bounded number of tries and total wait).
- Every failure is a ``StudioError`` subclass carrying Twilio's ``code``,
  ``message``, ``more_info`` and the HTTP ``status`` where Twilio sent them,
  and ``outcome_unknown`` when the engagement may have started anyway.
- Credentials never appear in a repr, an error or a log line.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import platform
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bot import __version__

log = logging.getLogger(__name__)

USER_AGENT = (
    f"studio-engage/{__version__} ({platform.system()} {platform.machine()})"
    f" Python/{platform.python_version()} httpx/{httpx.__version__}"
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=10.0, pool=5.0)

_Model = TypeVar("_Model", bound=BaseModel)


def console_url(flow_sid: str, sid: str) -> str:
    """The engagement's page in the Twilio Console (Studio's execution log)."""
    frame = quote(f"/console/studio/flows/{flow_sid}/executions/{sid}", safe="")
    return f"https://console.twilio.com/us1/develop/studio/flows?frameUrl={frame}"


# --- resources ----------------------------------------------------------------


class Engagement(BaseModel):
    """A v1 Engagement, as ``studio.v1.flow.engagement`` in Twilio's spec defines it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sid: str
    account_sid: str | None = None
    flow_sid: str | None = None
    contact_sid: str | None = None
    contact_channel_address: str | None = None
    context: Any = None
    status: str | None = None
    date_created: datetime | None = None
    date_updated: datetime | None = None
    url: str | None = None
    links: dict[str, str] | None = None


# --- errors -------------------------------------------------------------------


class StudioError(Exception):
    """Any failure talking to Studio. ``str()`` is a sentence for people."""

    #: True when the request may have reached Twilio and started the flow anyway.
    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.more_info = more_info

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r},"
            f" code={self.code!r}, more_info={self.more_info!r})"
        )


class StudioAPIError(StudioError):
    """Twilio answered with an error status. A 4xx started nothing; a 5xx may have."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, more_info=more_info)
        self.outcome_unknown = status >= 500


class StudioConnectionError(StudioError):
    """The request never reached Twilio: nothing was started."""


class StudioOutcomeUnknown(StudioError):
    """The request was sent but no usable answer came back: the flow may have started."""

    outcome_unknown = True


# --- client -------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on the only retries that are safe for a POST that starts a flow."""

    connect_attempts: int = 3  # connections that never opened
    connect_backoff: float = 0.25  # seconds, doubled each time
    rate_limit_attempts: int = 3  # 429s, each after Retry-After
    rate_limit_max_wait: float = 10.0  # seconds waited in total for 429s
    rate_limit_default_wait: float = 1.0  # when a 429 has no usable Retry-After


Sleep = Callable[[float], Awaitable[None]]

# Exceptions raised before a single byte of the request left: safe to retry.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


class StudioClient:
    """Studio's REST API over one pooled connection. Use ``async with`` or ``aclose()``."""

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        password: SecretStr,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password.get_secret_value()),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"StudioClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> StudioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ---------------------------------------------------------

    def engagement_request(
        self, flow_sid: str, *, to: str, sender: str, parameters: dict[str, Any]
    ) -> httpx.Request:
        """The exact ``POST …/Engagements`` request, unsent (``--dry-run`` prints it)."""
        form = {"To": to, "From": sender}
        if parameters:
            form["Parameters"] = json.dumps(parameters, ensure_ascii=False, separators=(",", ":"))
        return self._http.build_request(
            "POST", f"/v1/Flows/{quote(flow_sid, safe='')}/Engagements", data=form
        )

    async def create_engagement(
        self, flow_sid: str, *, to: str, sender: str, parameters: dict[str, Any]
    ) -> Engagement:
        """Start ``flow_sid`` for ``to``. Never sends twice what may have reached Twilio."""
        request = self.engagement_request(flow_sid, to=to, sender=sender, parameters=parameters)
        response = await self._send(request)
        return self._parse(response, Engagement, started=True)

    async def fetch_engagement(self, flow_sid: str, sid: str) -> Engagement:
        """The engagement ``sid`` of ``flow_sid`` as it is now."""
        path = f"/v1/Flows/{quote(flow_sid, safe='')}/Engagements/{quote(sid, safe='')}"
        response = await self._send(self._http.build_request("GET", path))
        return self._parse(response, Engagement, started=False)

    # -- transport and errors ---------------------------------------------

    async def _send(self, request: httpx.Request) -> httpx.Response:
        """Send with the retry rules; raise ``StudioError`` for every failure."""
        policy = self.retry
        connect_tries = rate_tries = 0
        waited = 0.0
        while True:
            try:
                response = await self._http.send(request)
            except _NEVER_SENT as exc:
                connect_tries += 1
                if connect_tries >= policy.connect_attempts:
                    raise StudioConnectionError(
                        f"could not connect to Studio at {self.base_url} after"
                        f" {connect_tries} attempt(s) ({type(exc).__name__});"
                        " nothing was sent, nothing started"
                    ) from None
                await self._sleep(policy.connect_backoff * 2 ** (connect_tries - 1))
                continue
            except httpx.TimeoutException as exc:
                raise StudioOutcomeUnknown(
                    f"Studio did not answer in time ({type(exc).__name__}); the request"
                    " may have reached Twilio"
                ) from None
            except httpx.TransportError as exc:
                raise StudioOutcomeUnknown(
                    f"the connection to Studio broke before an answer ({type(exc).__name__});"
                    " the request may have reached Twilio"
                ) from None
            if response.status_code != 429:
                return response
            rate_tries += 1
            wait = _retry_after(response, policy.rate_limit_default_wait)
            if (
                rate_tries >= policy.rate_limit_attempts
                or waited + wait > policy.rate_limit_max_wait
            ):
                raise _api_error(response)
            log.info("studio answered 429; retrying after %.1f s", wait)
            waited += wait
            await self._sleep(wait)

    @staticmethod
    def _parse(response: httpx.Response, model: type[_Model], *, started: bool) -> _Model:
        if response.is_success:
            try:
                return model.model_validate_json(response.content)
            except ValidationError:
                message = (
                    f"Studio answered {response.status_code} with a body that is not a"
                    f" {model.__name__}"
                )
                if started:
                    raise StudioOutcomeUnknown(
                        message + "; the flow has probably started", status=response.status_code
                    ) from None
                raise StudioError(message, status=response.status_code) from None
        raise _api_error(response)


def _api_error(response: httpx.Response) -> StudioAPIError:
    """Twilio's error body ``{code, message, more_info, status}`` -> ``StudioAPIError``."""
    status = response.status_code
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        more_info = body.get("more_info")
        return StudioAPIError(
            body["message"],
            status=status,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            more_info=more_info if isinstance(more_info, str) else None,
        )
    reason = response.reason_phrase or "error"
    return StudioAPIError(
        f"Studio answered HTTP {status} {reason} without a Twilio error body", status=status
    )


def _retry_after(response: httpx.Response, default: float) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
