"""The Bolt app: every Slack listener, registered in one place, each thin.

Listeners parse, ask the ``Engager`` (which applies the guardrails and owns the
slow part), and ack at once with what it answers; the message builders say
everything the user sees.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import audit, messages
from bot.audit import Caller
from bot.command import CommandError, Defaults, FlowsCommand, HelpCommand, StatusCommand, parse
from bot.config import Settings
from bot.engage import Engager, Reply
from bot.messages import Message

# Any slash command routed to this app: the manifest names it /engage, but a
# workspace may rename it (/engage-staging) without a code change.
ANY_COMMAND = re.compile(r"^/.+")


class Responder:
    """Posts to ``response_url``s over one pooled aiohttp session.

    Bolt's ``respond()`` opens a new session (and connection) per call; under
    load that is the slowest part of a reply.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, message: Message) -> int:
        """Send ``message``; returns Slack's HTTP status."""
        if self._session is None:  # created on the running loop, at first use
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                connector=aiohttp.TCPConnector(limit=200),
            )
        response = await AsyncWebhookClient(url, session=self._session).send_dict(message)
        return int(response.status_code)

    def reply(self, url: str, *, replace: bool = False) -> Reply:
        """A ``Reply`` to ``url``: a new message, or with ``replace`` the one holding the
        clicked button (ephemeral or not)."""

        async def reply(message: Message) -> None:
            body = dict(message, replace_original=replace)
            if replace:
                body.pop("response_type", None)
            status = await self.post(url, body)
            if status != 200:
                raise RuntimeError(f"response_url answered HTTP {status}")

        return reply

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def build_app(settings: Settings, engager: Engager, responder: Responder) -> AsyncApp:
    """The Bolt ``AsyncApp`` with its listeners; HTTP or Socket Mode as configured.

    Listeners run before the response to Slack (``process_before_response``) and
    never wait on the network: whatever does is a task the ``Engager`` owns. So
    the ack goes out as soon as the listener returns, with no polling.
    """
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    signing_secret = settings.slack_signing_secret
    app = AsyncApp(
        signing_secret=signing_secret.get_secret_value() if signing_secret else "",
        client=AsyncWebClient(token=token, base_url=settings.slack_api_url),  # carries the token
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
    )
    defaults = settings.command_defaults

    @app.command(ANY_COMMAND)
    async def engage_command(ack: AsyncAck, body: dict[str, Any]) -> None:
        await handle_engage(ack, body, responder, defaults, engager)

    @app.action(messages.AGAIN_ACTION)
    @app.action(messages.RESTART_ACTION)
    async def start_again(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        url = str(body.get("response_url", ""))
        engager.confirm(
            button_value(body),
            caller_of(body),
            responder.reply(url, replace=True),
            responder.reply(url),
        )

    @app.action(messages.CANCEL_ACTION)
    async def cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        engager.cancel(
            button_value(body), responder.reply(str(body.get("response_url", "")), replace=True)
        )

    @app.action(messages.REFRESH_ACTION)
    async def refresh(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        url = str(body.get("response_url", ""))
        if card := messages.parse_card_value(button_value(body)):
            engager.refresh(
                *card, caller_of(body), responder.reply(url, replace=True), responder.reply(url)
            )

    @app.action(messages.END_ACTION)
    async def end(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        url = str(body.get("response_url", ""))
        if card := messages.parse_card_value(button_value(body)):
            engager.end(
                *card, caller_of(body), responder.reply(url, replace=True), responder.reply(url)
            )

    @app.action(messages.CONSOLE_ACTION)
    async def console_button(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL; acking keeps the warning icon away

    return app


def caller_of(body: dict[str, Any]) -> Caller:
    """Who sent a slash command or clicked a button, from where."""
    user = body.get("user")
    channel = body.get("channel")
    team = body.get("team")
    return Caller(
        user_id=str(body.get("user_id") or (user or {}).get("id", "")),
        channel_id=str(body.get("channel_id") or (channel or {}).get("id", "")),
        team_id=str(body.get("team_id") or (team or {}).get("id", "")),
    )


def button_value(body: dict[str, Any]) -> str:
    """The clicked button's value (a token or a card's SIDs; never trusted further)."""
    actions = body.get("actions") or [{}]
    return str(actions[0].get("value", ""))


async def handle_engage(
    ack: AsyncAck,
    body: dict[str, Any],
    responder: Responder,
    defaults: Defaults,
    engager: Engager,
) -> None:
    """``/engage``: an ephemeral answer in the ack; the engagement's result follows."""
    caller = caller_of(body)
    reply = responder.reply(str(body.get("response_url", "")))
    try:
        command = parse(str(body.get("text", "")), defaults)
    except CommandError as exc:
        audit.record("invalid", caller, detail=exc.problem)
        await ack(**messages.invalid_command(exc))
        return
    if isinstance(command, HelpCommand):
        await ack(**messages.help_message(defaults, str(body.get("command") or "/engage")))
    elif isinstance(command, FlowsCommand):
        await ack(**messages.flows_message(defaults, engager.policy))
    elif isinstance(command, StatusCommand):
        await ack(**await engager.lookup(command, caller, reply))
    else:
        await ack(**await engager.request(command, caller, reply))
