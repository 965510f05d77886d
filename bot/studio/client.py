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
from datetime import UTC
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from bot import __version__
from bot.domain.errors import (
    StudioAPIError,
    StudioBadAnswer,
    StudioConnectionError,
    StudioNotSent,
    StudioOutcomeUnknown,
    StudioServerError,
)
from bot.domain.run import Api, Engagement, Step
from bot.infra import metrics
from bot.infra.transport import AiohttpTransport

log = logging.getLogger(__name__)

USER_AGENT = (
    f"studio-engage/{__version__} ({platform.system()} {platform.machine()})"
    f" Python/{platform.python_version()} httpx/{httpx.__version__}"
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=20.0, write=10.0, pool=5.0)
# Enough connections for a burst of engagements in flight at once: a request waiting
# for a connection is an ack that reports late.
POOL_LIMITS = httpx.Limits(max_connections=256)

_Model = TypeVar("_Model", bound=BaseModel)


# --- resources ----------------------------------------------------------------


class Context(BaseModel):
    """A run's flow context (``…/Context``): what the widgets saw, ``flow.data`` included."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    context: Any = None


class Flow(BaseModel):
    """A Studio flow (``studio.v2.flow``): its name, status, revision and definition."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    sid: str
    friendly_name: str | None = None
    status: str | None = None  # draft | published
    revision: int = 0
    definition: Any = None
    valid: bool | None = None


class _Meta(BaseModel):
    next_page_url: str | None = None


class _StepPage(BaseModel):
    steps: list[Step]
    meta: _Meta = _Meta()


class _FlowPage(BaseModel):
    flows: list[Flow]
    meta: _Meta = _Meta()


class _RunPage(BaseModel):
    # v1 lists "engagements", v2 "executions"
    engagements: list[Engagement] | None = None
    executions: list[Engagement] | None = None
    meta: _Meta = _Meta()

    @property
    def runs(self) -> list[Engagement]:
        return self.executions or self.engagements or []


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
Pace = Callable[[], Awaitable[object]]  # a caller's pacing, awaited before a 429's retry

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
        api: Api = "v1",
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api: Api = api
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password.get_secret_value()),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            # aiohttp's pool under httpx's API (bot/infra/transport.py says why).
            transport=transport or AiohttpTransport(POOL_LIMITS),
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"StudioClient(base_url={self.base_url!r}, api={self.api!r})"

    async def __aenter__(self) -> StudioClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- requests ---------------------------------------------------------

    def _runs(self, flow_sid: str) -> str:
        """The collection of runs: v1 Engagements or v2 Executions."""
        kind = "Engagements" if self.api == "v1" else "Executions"
        return f"/{self.api}/Flows/{quote(flow_sid, safe='')}/{kind}"

    def _run(self, flow_sid: str, sid: str) -> str:
        return f"{self._runs(flow_sid)}/{quote(sid, safe='')}"

    def engagement_request(
        self, flow_sid: str, *, to: str, sender: str, parameters: dict[str, Any]
    ) -> httpx.Request:
        """The exact create request, unsent (``--dry-run`` prints it)."""
        form = {"To": to, "From": sender}
        if parameters:
            try:
                form["Parameters"] = json.dumps(
                    parameters, ensure_ascii=False, separators=(",", ":"), allow_nan=False
                )
            except (ValueError, TypeError, RecursionError) as exc:
                raise StudioNotSent(
                    f"the parameters cannot be sent as JSON ({type(exc).__name__});"
                    " nothing was sent"
                ) from None
        return self._http.build_request("POST", self._runs(flow_sid), data=form)

    async def create_engagement(
        self,
        flow_sid: str,
        *,
        to: str,
        sender: str,
        parameters: dict[str, Any],
        before_retry: Pace | None = None,
    ) -> Engagement:
        """Start ``flow_sid`` for ``to``. Never sends twice what may have reached Twilio.
        ``before_retry``: awaited before a 429's retry goes out (after Retry-After), so
        that it takes its turn under the caller's pace instead of bursting."""
        request = self.engagement_request(flow_sid, to=to, sender=sender, parameters=parameters)
        response = await self._send(request, before_retry)
        return self._parse(response, Engagement, started=True)

    async def fetch_engagement(
        self, flow_sid: str, sid: str, *, before_retry: Pace | None = None
    ) -> Engagement:
        """The run ``sid`` of ``flow_sid`` as it is now."""
        return await self._get(self._run(flow_sid, sid), Engagement, before_retry)

    async def steps(
        self, flow_sid: str, sid: str, *, limit: int = 50, before_retry: Pace | None = None
    ) -> list[Step]:
        """The run's steps so far, oldest first (at most ``limit``)."""
        path = f"{self._run(flow_sid, sid)}/Steps?PageSize={limit}"
        page = await self._get(path, _StepPage, before_retry)
        return sorted(page.steps, key=lambda s: (s.date_created is None, s.date_created))

    async def context(self, flow_sid: str, sid: str, *, before_retry: Pace | None = None) -> Any:
        """The run's flow context (``flow.data`` holds the parameters it was started with)."""
        path = f"{self._run(flow_sid, sid)}/Context"
        return (await self._get(path, Context, before_retry)).context

    async def end_engagement(
        self, flow_sid: str, sid: str, *, before_retry: Pace | None = None
    ) -> Engagement | None:
        """End a run: v2 sets ``Status=ended`` (returns the run); v1 cannot, so it deletes
        the engagement and its steps (returns None)."""
        if self.api == "v2":
            request = self._http.build_request(
                "POST", self._run(flow_sid, sid), data={"Status": "ended"}
            )
            return self._parse(await self._send(request, before_retry), Engagement, started=False)
        delete = self._http.build_request("DELETE", self._run(flow_sid, sid))
        response = await self._send(delete, before_retry)
        if not response.is_success:
            raise _api_error(response)
        return None

    async def find_active(
        self, flow_sid: str, contact: str, *, pages: int = 5
    ) -> Engagement | None:
        """The active run of ``flow_sid`` for ``contact``, searching the newest ``pages`` pages."""
        first = f"{self._runs(flow_sid)}?PageSize=50"
        url: str | None = first + "&status=active" if self.api == "v2" else first
        for _ in range(pages):
            if url is None:
                break
            page = await self._get(url, _RunPage)
            for run in page.runs:
                if run.status == "active" and run.contact_channel_address == contact:
                    return run
            url = _relative(page.meta.next_page_url)
        return None

    # -- flows (the v2 Flows API, whichever STUDIO_API runs engagements) -------

    async def fetch_flow(self, flow_sid: str) -> Flow:
        """``GET /v2/Flows/{Sid}``: the flow with its latest definition."""
        return await self._get(f"/v2/Flows/{quote(flow_sid, safe='')}", Flow)

    async def list_flows(self, *, pages: int = 5) -> list[Flow]:
        """``GET /v2/Flows``: the account's flows (at most ``pages`` pages of 50)."""
        flows: list[Flow] = []
        url: str | None = "/v2/Flows?PageSize=50"
        for _ in range(pages):
            if url is None:
                break
            page = await self._get(url, _FlowPage)
            flows += page.flows
            url = _relative(page.meta.next_page_url)
        return flows

    async def _get(
        self, path: str, model: type[_Model], before_retry: Pace | None = None
    ) -> _Model:
        response = await self._send(self._http.build_request("GET", path), before_retry)
        return self._parse(response, model, started=False)

    # -- transport and errors ---------------------------------------------

    async def _send(
        self, request: httpx.Request, before_retry: Pace | None = None
    ) -> httpx.Response:
        """Send with the retry rules; raise ``StudioError`` for every failure."""
        policy = self.retry
        connect_tries = rate_tries = 0
        waited = 0.0
        while True:
            try:
                response = await self._timed_send(request)
            except _NEVER_SENT as exc:
                connect_tries += 1
                if connect_tries >= policy.connect_attempts:
                    raise StudioConnectionError(
                        f"could not connect to Studio at {self.base_url} after"
                        f" {connect_tries} attempt(s) ({type(exc).__name__}); nothing was sent"
                        + (", nothing started" if _is_create(request) else "")
                    ) from None
                await self._sleep(policy.connect_backoff * 2 ** (connect_tries - 1))
                metrics.STUDIO_RETRIES.labels("connect").inc()
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
            except httpx.HTTPError as exc:  # e.g. a DecodingError reading a 201's body
                raise StudioOutcomeUnknown(
                    f"Studio's answer could not be read ({type(exc).__name__});"
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
            metrics.STUDIO_RETRIES.labels("429").inc()
            if before_retry is not None:
                await before_retry()

    async def _timed_send(self, request: httpx.Request) -> httpx.Response:
        """One request, timed and counted by its answer's status (``none``: no answer)."""
        method = "create" if _is_create(request) else request.method.lower()
        sent = time.perf_counter()
        try:
            response = await self._http.send(request)
        except BaseException:
            metrics.STUDIO_ANSWERS.labels(method, "none").inc()
            raise
        finally:
            metrics.STUDIO_SECONDS.labels(method).observe(time.perf_counter() - sent)
        metrics.STUDIO_ANSWERS.labels(method, str(response.status_code)).inc()
        return response

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
                raise StudioBadAnswer(message, status=response.status_code) from None
        raise _api_error(response)


def _is_create(request: httpx.Request) -> bool:
    """A request that starts a run (POST to Engagements or Executions)."""
    return request.method == "POST" and request.url.path.endswith(("/Engagements", "/Executions"))


def _api_error(response: httpx.Response) -> StudioAPIError:
    """Twilio's error body ``{code, message, more_info, status}`` -> ``StudioAPIError``
    (``StudioServerError`` for a 5xx, which may have started the flow)."""
    status = response.status_code
    kind = StudioServerError if status >= 500 else StudioAPIError
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = body.get("code")
        more_info = body.get("more_info")
        return kind(
            body["message"],
            status=status,
            code=code if isinstance(code, int) and not isinstance(code, bool) else None,
            more_info=more_info if isinstance(more_info, str) else None,
        )
    reason = response.reason_phrase or "error"
    return kind(
        f"Studio answered HTTP {status} {reason} without a Twilio error body", status=status
    )


def _relative(url: str | None) -> str | None:
    """A next-page URL as a path on our base URL (pages name studio.twilio.com)."""
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


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
