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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Bot:
    """What one process serves Slack with, in either mode: the use-case with its
    guardrails, the reply poster and the Bolt app."""

    engager: Engager
    responder: Responder
    app: AsyncApp

    @classmethod
    def build(cls, settings: Settings, studio: StudioClient) -> Bot:
        engager = Engager(
            studio,
            policy=settings.policy,
            throttle=throttle(settings),
            mask_numbers=settings.mask_numbers,
            admins=settings.admin_slack_users or frozenset(),
            aliases={spec.sid: alias for alias, spec in settings.studio_flows.items()},
        )
        responder = Responder()
        return cls(engager, responder, build_app(settings, engager, responder))

    async def aclose(self) -> None:
        """Close every connection pool (after ``engager.drain``)."""
        await self.engager.studio.aclose()
        await self.engager.throttle.aclose()
        await self.responder.aclose()


def build_web_app(settings: Settings, studio: StudioClient) -> web.Application:
    """The aiohttp application: Slack's endpoint, the health check and graceful shutdown."""
    bot = Bot.build(settings, studio)
    web_app = web.Application()
    web_app[_ENGAGER] = bot.engager
    web_app[_BOLT] = bot.app
    web_app.router.add_post(EVENTS_PATH, _slack_events)
    web_app.router.add_get(HEALTH_PATH, _health)

    async def drain(_: web.Application) -> None:
        await bot.engager.drain(settings.shutdown_grace_seconds)

    async def close(_: web.Application) -> None:
        await bot.aclose()

    web_app.on_shutdown.append(drain)
    web_app.on_cleanup.append(close)
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

    bot = Bot.build(settings, studio_client(settings))
    assert settings.slack_app_token is not None
    handler = AsyncSocketModeHandler(bot.app, settings.slack_app_token.get_secret_value())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await handler.connect_async()  # type: ignore[no-untyped-call]
    log.info("connected to Slack over Socket Mode")
    await stop.wait()
    bot.engager.accepting = False
    with suppress(Exception):
        await handler.disconnect_async()  # type: ignore[no-untyped-call]
    await bot.engager.drain(settings.shutdown_grace_seconds)
    await bot.aclose()
    with suppress(Exception):
        await handler.close_async()  # type: ignore[no-untyped-call]
    log.info("stopped")
