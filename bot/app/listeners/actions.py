"""Buttons: Start again, End it and start again, Cancel, Refresh, End, Open in Console;
in quiet hours, Schedule for then and (admins) Start now anyway; a schedule's Cancel.

Each acks at once; the work (and its answer through the click's ``response_url``)
is a task the use-case owns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.listeners.forms import home_note
from bot.app.listeners.origin import origin_of
from bot.app.services import Services
from bot.domain.caller import Caller
from bot.domain.run import CardRef
from bot.slack import messages
from bot.slack.messages.consent import OVER_CAP_ACTION
from bot.slack.messages.schedules import NOW_ANYWAY_ACTION, SCHEDULE_ACTION, UNSCHEDULE_ACTION
from bot.slack.reply import Reply

CardAction = Callable[[CardRef, Caller, Reply, Reply], None]
Listener = Callable[[AsyncAck, dict[str, Any]], Awaitable[None]]


def register(app: AsyncApp, services: Services) -> None:
    starts, runs, responder = services.starts, services.run_actions, services.responder

    @app.action(messages.AGAIN_ACTION)
    @app.action(messages.ANYWAY_ACTION)
    @app.action(messages.RESTART_ACTION)
    @app.action(SCHEDULE_ACTION)
    @app.action(NOW_ANYWAY_ACTION)
    @app.action(OVER_CAP_ACTION)
    async def start_again(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        origin = origin_of(body)
        url = origin.response_url
        starts.confirm(
            origin.value,
            origin.caller,
            responder.reply(url, replace=True),
            responder.reply(url),
            now=origin.action_id == NOW_ANYWAY_ACTION,
            over_cap=origin.action_id == OVER_CAP_ACTION,
        )

    @app.action(UNSCHEDULE_ACTION)
    async def unschedule(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A schedule's Cancel: from a message (answered there) or the Home tab (redrawn
        with the answer)."""
        await ack()
        origin = origin_of(body)
        reply: Reply
        if origin.response_url:
            reply = responder.reply(origin.response_url)
        else:
            reply = home_note(services.forms, client, origin.caller)
        services.slack_schedules.cancel(origin.value, origin.caller, reply)

    @app.action(messages.CANCEL_ACTION)
    async def cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        origin = origin_of(body)
        starts.cancel(origin.value, responder.reply(origin.response_url, replace=True))

    def card_button(action: CardAction) -> Listener:
        """A card's button: the run it names, who clicked, the card to replace, and a
        private line for refusals; a value that names no run is ignored."""

        async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            origin = origin_of(body)
            if ref := CardRef.decode(origin.value):
                url = origin.response_url
                action(ref, origin.caller, responder.reply(url, replace=True), responder.reply(url))

        return listener

    app.action(messages.REFRESH_ACTION)(card_button(runs.refresh))
    app.action(messages.END_ACTION)(card_button(runs.end))

    @app.action(messages.CONSOLE_ACTION)
    async def console_button(ack: AsyncAck) -> None:
        await ack()  # a link button: Slack opens the URL; acking keeps the warning icon away
