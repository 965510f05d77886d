"""Serving Slack: aiohttp on ``$PORT`` (``POST /slack/events``, ``GET /healthz``) or Socket Mode.

On SIGTERM or SIGINT: stop taking commands, let the engagements in flight
finish and report (at most ``SHUTDOWN_GRACE_SECONDS``), close the Studio
client, exit 0. In HTTP mode the listener stays open while that happens: a
command then is answered "restarting, try again in a minute" and ``/healthz``
says 503, instead of Slack meeting a closed port.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import signal
import time
from contextlib import suppress

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier

from bot import __version__
from bot.app.bolt import build_app
from bot.app.config import Settings
from bot.app.factories import studio_client
from bot.app.services import Services
from bot.domain.errors import BadRequest
from bot.infra import metrics
from bot.infra.logs import Repeats
from bot.runs import event_streams as events
from bot.slack.http import MAX_BODY_BYTES, signed_request

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"

_SERVICES = web.AppKey("services", Services)
_BOLT = web.AppKey("bolt", AsyncApp)
_VERIFIER = web.AppKey("verifier", SignatureVerifier)
# Forged or broken requests: one log line a minute per kind, however many arrive.
_REFUSALS = web.AppKey("refusals", Repeats)
_ONCE = web.AppKey("once", Repeats)
_METRICS_TOKEN = web.AppKey("metrics_token", str)


def build_web_app(settings: Settings, services: Services) -> web.Application:
    """The aiohttp application: Slack's endpoint, the health check and graceful shutdown."""
    assert settings.slack_signing_secret is not None  # SlackSettings requires it over HTTP
    # The larger of the two bounds; /slack/events holds its own smaller one.
    web_app = web.Application(client_max_size=max(MAX_BODY_BYTES, events.MAX_BODY_BYTES))
    web_app[_SERVICES] = services
    web_app[_BOLT] = build_app(settings, services)
    web_app[_VERIFIER] = SignatureVerifier(settings.slack_signing_secret.get_secret_value())
    web_app[_REFUSALS] = Repeats(log)
    web_app[_ONCE] = Repeats(log, window=math.inf)  # what is worth saying once a process
    web_app.router.add_post(EVENTS_PATH, _slack_events)
    web_app.router.add_post(events.EVENTS_PATH, _twilio_events)
    web_app.router.add_get(HEALTH_PATH, _health)
    web_app.router.add_get(READY_PATH, _ready)
    web_app.router.add_get(METRICS_PATH, _metrics)
    token = settings.metrics_token
    web_app[_METRICS_TOKEN] = token.get_secret_value() if token else ""

    async def start(_: web.Application) -> None:
        services.start()

    async def drain(_: web.Application) -> None:
        await services.drain(settings.shutdown_grace_seconds)

    async def close(_: web.Application) -> None:
        await services.aclose()

    web_app.on_startup.append(start)
    web_app.on_shutdown.append(drain)
    web_app.on_cleanup.append(close)
    return web_app


async def _slack_events(request: web.Request) -> web.Response:
    """Slack's requests: checked cheapest first (see ``bot.slack.http``), then Bolt;
    the time to the answer is the ack latency an operator watches."""
    started = time.perf_counter()
    try:
        return await _slack_answer(request)
    finally:
        metrics.ACK_SECONDS.observe(time.perf_counter() - started)


async def _slack_answer(request: web.Request) -> web.Response:
    try:
        signed = await signed_request(request, request.app[_VERIFIER])
    except BadRequest as exc:
        if exc.status == 400:  # signed by Slack, yet unreadable: worth one line
            request.app[_REFUSALS].warning(
                "slack:unreadable", "refused a signed request to %s: %s", request.path, exc.reason
            )
        return web.json_response({"error": exc.reason}, status=exc.status)
    bolt_response = await request.app[_BOLT].async_dispatch(signed.to_bolt())
    return await to_aiohttp_response(bolt_response)


async def _twilio_events(request: web.Request) -> web.Response:
    """Event Streams deliveries: verified as Twilio signs them, then each Studio event
    nudges the follower (in the background: Twilio waits at most 5 s)."""
    services = request.app[_SERVICES]
    follower, url, token = services.follower, services.events_url, services.auth_token
    if not url or not token:
        return web.json_response({"error": "Event Streams are not configured"}, status=404)
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        metrics.DELIVERIES.labels("refused", "unsigned").inc()
        return web.json_response({"error": "unsigned"}, status=401)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        metrics.DELIVERIES.labels("refused", "too_large").inc()
        return web.json_response({"error": "body too large"}, status=413)
    covers = events.verify(events.signed_url(url, request.query_string), raw, signature, token)
    if covers is None:
        refusals = request.app[_REFUSALS]
        refusals.warning("events:signature", "refused an Event Streams delivery: bad signature")
        metrics.DELIVERIES.labels("refused", "signature").inc()
        return web.json_response({"error": "bad signature"}, status=401)
    if covers == "url":
        request.app[_ONCE].warning(
            "events:unhashed",
            "Event Streams deliveries arrive without bodySHA256: their signature covers the"
            " URL only, so each is taken as a hint and the runs are read from Studio",
        )
    found = events.events_in(raw, time.time())
    if found is None:
        request.app[_REFUSALS].warning(
            "events:malformed", "refused a signed Event Streams delivery: not a CloudEvents batch"
        )
        metrics.DELIVERIES.labels("refused", "malformed").inc()
        return web.json_response({"error": "malformed body"}, status=400)
    studio_events, stale = found
    if stale:
        request.app[_REFUSALS].warning("events:stale", "refused a stale Event Streams delivery")
        metrics.DELIVERIES.labels("refused", "stale").inc()
        return web.json_response({"error": "stale"}, status=401)
    metrics.DELIVERIES.labels("accepted", "hint" if covers == "url" else "signed").inc()

    async def nudge() -> None:
        for event in studio_events:
            await follower.nudge(event.id, event.sid)
        if covers == "url":  # the body is not vouched for: read each run once instead
            for sid in dict.fromkeys(event.sid for event in studio_events):
                await services.tracker.hint(sid)
            return
        for event in studio_events:
            await services.tracker.event(
                event.kind, event.sid, widget=event.widget, failed=event.failed, when=event.when
            )

    services.tasks.spawn(nudge(), "events")
    return web.json_response({"ok": True, "events": len(studio_events)})


async def _health(request: web.Request) -> web.Response:
    """Alive: the process answers (a liveness check restarts it when this fails)."""
    tasks = request.app[_SERVICES].tasks
    body = {"ok": True, "version": __version__, "in_flight": len(tasks)}
    return web.json_response(body)


async def _ready(request: web.Request) -> web.Response:
    """Ready to take commands: not draining after SIGTERM, Slack's identity known, Redis
    answering when configured (a readiness check sends traffic elsewhere when not)."""
    services = request.app[_SERVICES]
    checks = await services.readiness()
    ready = all(checks.values())
    body = {"ok": ready, "checks": checks, "in_flight": len(services.tasks)}
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus' text format; with METRICS_TOKEN, only for ``Bearer <token>``."""
    if not metrics.enabled:
        return web.json_response({"error": "metrics are off (METRICS_ENABLED)"}, status=404)
    token = request.app[_METRICS_TOKEN]
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return web.json_response({"error": "unauthorized"}, status=401)
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    if settings.socket_mode:
        asyncio.run(_run_socket_mode(settings))
        return 0
    return asyncio.run(_run_http(settings))


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM (a PaaS restart) or SIGINT (Ctrl-C)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_http(settings: Settings) -> int:
    services = Services.build(settings, studio_client(settings))
    runner = web.AppRunner(build_web_app(settings, services), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        await runner.cleanup()
        return 1
    log.info("listening on http://%s:%d%s", settings.host, settings.port, EVENTS_PATH)
    await _stop_on_signals().wait()
    # Still listening: what arrives now is told to retry, and /healthz says 503.
    await services.drain(settings.shutdown_grace_seconds)
    await runner.cleanup()  # closes the listener, then every connection pool
    log.info("stopped")
    return 0


async def _run_socket_mode(settings: Settings) -> None:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    services = Services.build(settings, studio_client(settings))
    assert settings.slack_app_token is not None
    app = build_app(settings, services)
    handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
    stop = _stop_on_signals()
    await handler.connect_async()  # type: ignore[no-untyped-call]
    services.start()
    log.info("connected to Slack over Socket Mode")
    await stop.wait()
    services.tasks.accepting = False
    with suppress(Exception):
        await handler.disconnect_async()  # type: ignore[no-untyped-call]
    await services.drain(settings.shutdown_grace_seconds)
    await services.aclose()
    with suppress(Exception):
        await handler.close_async()  # type: ignore[no-untyped-call]
    log.info("stopped")
