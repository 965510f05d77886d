"""The Bolt app: every Slack listener, registered in one place, each thin.

Listeners parse, ack at once, and hand the slow part to ``Engager``; the
message builders say everything the user sees.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot import messages
from bot.command import CommandError, Defaults, HelpCommand, parse
from bot.config import Settings
from bot.engage import Engager
from bot.messages import Message

log = logging.getLogger(__name__)

# Any slash command routed to this app: the manifest names it /engage, but a
# workspace may rename it (/engage-staging) without a code change.
ANY_COMMAND = re.compile(r"^/.+")


def build_app(settings: Settings, engager: Engager) -> AsyncApp:
    """The Bolt ``AsyncApp`` with its listeners; HTTP or Socket Mode as configured."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    signing_secret = settings.slack_signing_secret
    app = AsyncApp(
        signing_secret=signing_secret.get_secret_value() if signing_secret else "",
        client=AsyncWebClient(token=token, base_url=settings.slack_api_url),  # carries the token
        request_verification_enabled=not settings.socket_mode,
        process_before_response=False,
    )
    defaults = settings.command_defaults

    @app.command(ANY_COMMAND)
    async def engage_command(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await handle_engage(ack, body, respond, defaults, engager)

    @app.action(messages.CONSOLE_ACTION)
    async def console_button(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL; acking keeps the warning icon away

    return app


async def handle_engage(
    ack: AsyncAck,
    body: dict[str, Any],
    respond: AsyncRespond,
    defaults: Defaults,
    engager: Engager,
) -> None:
    """``/engage``: an ephemeral answer in the ack; the engagement's result follows."""
    user_id = str(body.get("user_id", ""))
    try:
        command = parse(str(body.get("text", "")), defaults)
    except CommandError as exc:
        log.info("engage outcome=invalid user=%s problem=%r", user_id, exc.problem)
        await ack(**messages.invalid_command(exc))
        return
    if isinstance(command, HelpCommand):
        await ack(**messages.help_message(defaults, str(body.get("command") or "/engage")))
        return

    async def reply(message: Message) -> None:
        response = await respond(**message)
        if response.status_code != 200:
            raise RuntimeError(f"response_url answered HTTP {response.status_code}")

    if engager.submit(command, user_id, reply):
        await ack(**messages.starting(command))
    else:
        await ack(**messages.shutting_down())
