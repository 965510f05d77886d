"""The slash command (``/engage`` or whatever a workspace renamed it to)."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.listeners.forms import open_form
from bot.app.listeners.origin import origin_of
from bot.app.services import Services
from bot.domain.command import (
    BulkCommand,
    FlowsCommand,
    HelpCommand,
    OptInCommand,
    OptOutCommand,
    OptOutsCommand,
    ReportCommand,
    ScheduledCommand,
    StatusCommand,
)
from bot.domain.errors import CommandError
from bot.domain.grammar import parse
from bot.infra import audit
from bot.slack import messages

# Any slash command routed to this app: the manifest names it /engage, but a
# workspace may rename it (/engage-staging) without a code change.
ANY_COMMAND = re.compile(r"^/.+")


def register(app: AsyncApp, services: Services) -> None:
    @app.command(ANY_COMMAND)
    async def engage_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        if not str(body.get("text", "")).strip():
            await ack()  # no text: the form, for those who do not type grammar
            origin = origin_of(body)
            open_form(services, services.forms, client, origin.trigger_id, origin.caller)
            return
        await ack(**await handle_engage(body, services))


async def handle_engage(body: dict[str, Any], services: Services) -> messages.Message:
    """``/engage``: the ephemeral answer for the ack; a start's result follows."""
    origin = origin_of(body)
    reply = services.responder.reply(origin.response_url)
    try:
        command = parse(str(body.get("text", "")), services.defaults)
    except CommandError as exc:
        audit.record("invalid", origin.caller, detail=exc.problem, typed=exc.token)
        return messages.invalid_command(exc)
    name = str(body.get("command") or "/engage")
    if isinstance(command, HelpCommand):
        if command.flow_sid:
            return await services.starts.describe_flow(command, name, reply)
        return messages.help_message(services.defaults, name)
    if isinstance(command, FlowsCommand):
        return await services.starts.describe_flows(services.defaults, reply)
    if isinstance(command, StatusCommand):
        return await services.run_actions.status(command, origin.caller, reply)
    if isinstance(command, ReportCommand):
        return await services.reports.report(command, origin.caller, reply)
    if isinstance(command, ScheduledCommand):
        return services.slack_schedules.listing(origin.caller, reply)
    if isinstance(command, OptOutCommand):
        return await services.consent.opt_out(command, origin.caller)
    if isinstance(command, OptInCommand):
        return await services.consent.opt_in(command, origin.caller)
    if isinstance(command, OptOutsCommand):
        return await services.consent.listing(origin.caller)
    if isinstance(command, BulkCommand):
        return (await services.bulk.preview_command(command, origin.caller, reply)).ack
    return await services.starts.request(command, origin.caller, reply)
