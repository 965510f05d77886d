"""Serving Slack: aiohttp on ``$PORT`` (``POST /slack/events``, ``GET /healthz``) or Socket Mode.

On SIGTERM or SIGINT: stop taking commands, let the engagements in flight
finish and report (at most ``SHUTDOWN_GRACE_SECONDS``), close the Studio
client, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

from bot import __version__
from bot.config import Settings
from bot.engage import Engager, studio_client, throttle
from bot.slack_app import Responder, build_app
from bot.studio import StudioClient

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"

_ENGAGER = web.AppKey("engager", Engager)
_BOLT = web.AppKey("bolt", AsyncApp)


def build_engager(settings: Settings, studio: StudioClient) -> Engager:
    """The use-case with the configured guardrails."""
    return Engager(
        studio,
        policy=settings.policy,
        throttle=throttle(settings),
        mask_numbers=settings.mask_numbers,
        admins=settings.admin_slack_users or frozenset(),
        aliases={spec.sid: alias for alias, spec in settings.studio_flows.items()},
    )


def build_web_app(settings: Settings, studio: StudioClient) -> web.Application:
    """The aiohttp application: Slack's endpoint, the health check and graceful shutdown."""
    engager = build_engager(settings, studio)
    responder = Responder()
    web_app = web.Application()
    web_app[_ENGAGER] = engager
    web_app[_BOLT] = build_app(settings, engager, responder)
    web_app.router.add_post(EVENTS_PATH, _slack_events)
    web_app.router.add_get(HEALTH_PATH, _health)

    async def drain(_: web.Application) -> None:
        await engager.drain(settings.shutdown_grace_seconds)

    async def close_studio(_: web.Application) -> None:
        await studio.aclose()
        await engager.throttle.aclose()
        await responder.aclose()

    web_app.on_shutdown.append(drain)
    web_app.on_cleanup.append(close_studio)
    return web_app


async def _slack_events(request: web.Request) -> web.Response:
    bolt_response = await request.app[_BOLT].async_dispatch(await to_bolt_request(request))
    return await to_aiohttp_response(bolt_response)


async def _health(request: web.Request) -> web.Response:
    engager = request.app[_ENGAGER]
    body = {
        "ok": engager.accepting,
        "version": __version__,
        "in_flight": engager.in_flight,
    }
    return web.json_response(body, status=200 if engager.accepting else 503)


def run(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit status."""
    if settings.socket_mode:
        asyncio.run(_run_socket_mode(settings))
        return 0
    log.info("listening on http://%s:%d%s", settings.host, settings.port, EVENTS_PATH)
    try:
        web.run_app(
            build_web_app(settings, studio_client(settings)),
            host=settings.host,
            port=settings.port,
            print=None,
            shutdown_timeout=settings.shutdown_grace_seconds,
            access_log=None,
        )
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror)
        return 1
    log.info("stopped")
    return 0


async def _run_socket_mode(settings: Settings) -> None:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    studio = studio_client(settings)
    engager = build_engager(settings, studio)
    responder = Responder()
    app = build_app(settings, engager, responder)
    assert settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(app, settings.slack_app_token.get_secret_value())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("connected to Slack over Socket Mode")
    await stop.wait()
    engager.accepting = False
    with suppress(Exception):
        await handler.disconnect_async()  # type: ignore[no-untyped-call]
    await engager.drain(settings.shutdown_grace_seconds)
    await studio.aclose()
    await engager.throttle.aclose()
    await responder.aclose()
    with suppress(Exception):
        await handler.close_async()  # type: ignore[no-untyped-call]
    log.info("stopped")
