"""Bulk runs from Slack: the preview's Start and Cancel, the progress message's Pause,
Resume and Cancel, and the message shortcut *Start a flow for each row* on a message
that holds a CSV file."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import messages
from bot.audit import Caller
from bot.bulk import BulkRuns
from bot.bulk_input import TooManyRows, read_csv
from bot.listeners.origin import origin_of
from bot.messages.bulk import BULK_CANCEL, BULK_DROP, BULK_PAUSE, BULK_RESUME, BULK_START
from bot.services import Services
from bot.tasks import Reply, deliver

log = logging.getLogger(__name__)

Listener = Callable[[AsyncAck, dict[str, Any]], Awaitable[None]]
PreviewAction = Callable[[str, Caller, Reply], Coroutine[Any, Any, None]]
CSV_SHORTCUT = "bulk_csv"  # the manifest's callback_id for "Start a flow for each row"
FILE_BYTES = 5 * 1024 * 1024  # far above BULK_MAX_ROWS of any sensible CSV


def register(app: AsyncApp, services: Services) -> None:
    bulk, responder = services.bulk, services.responder
    if bulk is None:
        return

    def on_preview(decide: PreviewAction) -> Listener:
        """Start or Cancel on a preview: the answer replaces the preview."""

        async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            origin = origin_of(body)
            replace = responder.reply(origin.response_url, replace=True)
            services.engager.tasks.spawn(decide(origin.value, origin.caller, replace), "bulk")

        return listener

    app.action(BULK_START)(on_preview(bulk.start))
    app.action(BULK_DROP)(on_preview(bulk.drop))

    def control(verb: str) -> Listener:
        """Pause, Resume or Cancel (Bolt passes listeners only the arguments it knows)."""

        async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            origin = origin_of(body)
            work = bulk.control(
                origin.value, verb, origin.caller, responder.reply(origin.response_url)
            )
            services.engager.tasks.spawn(work, f"bulk:{verb}")

        return listener

    app.action(BULK_PAUSE)(control("pause"))
    app.action(BULK_RESUME)(control("resume"))
    app.action(BULK_CANCEL)(control("cancel"))

    @app.shortcut(CSV_SHORTCUT)
    async def csv_shortcut(ack: AsyncAck, body: dict[str, Any], client: Any) -> None:
        await ack()
        origin = origin_of(body)
        reply = responder.reply(origin.response_url)
        services.engager.tasks.spawn(
            from_file(services, bulk, body, client.token or "", reply), "bulk:csv"
        )


def _flow_named(text: str, services: Services) -> tuple[str | None, str | None]:
    """The flow the message names (its first word that is an alias), else the default."""
    flows = services.defaults.flows
    for word in text.split():
        for alias, sid in flows.items():
            if word.strip("*_`:,.").casefold() == alias.casefold():
                return sid, alias
    default = services.defaults.flow_sid
    if default:
        return default, next((a for a, s in flows.items() if s == default), None)
    if len(flows) == 1:
        ((alias, sid),) = flows.items()
        return sid, alias
    return None, None


async def from_file(
    services: Services, bulk: BulkRuns, body: dict[str, Any], token: str, reply: Any
) -> None:
    """The shortcut's work: read the message's CSV with the bot token, then preview."""
    origin = origin_of(body)
    message = body.get("message") or {}
    files = [
        f
        for f in message.get("files") or []
        if str(f.get("name", "")).lower().endswith(".csv") or f.get("filetype") == "csv"
    ]
    if not files:
        await deliver(reply, messages.refused("this message has no CSV file to start a flow for"))
        return
    flow_sid, alias = _flow_named(str(message.get("text", "")), services)
    if flow_sid is None:
        await deliver(
            reply,
            messages.refused(
                "which flow? Name it in the message (e.g. survey) or set STUDIO_FLOW_SID"
            ),
        )
        return
    url = str(files[0].get("url_private_download") or files[0].get("url_private") or "")
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=aiohttp.ClientTimeout(total=20),
            ) as response,
        ):
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
            raw = await response.content.read(FILE_BYTES + 1)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        log.warning("could not read the CSV file: %s", type(exc).__name__)
        await deliver(
            reply,
            messages.refused(
                "the file could not be read (the bot needs files:read and access to the file)"
            ),
        )
        return
    if len(raw) > FILE_BYTES:
        await deliver(reply, messages.refused("the file is too large to read"))
        return
    try:
        rows, problem = read_csv(
            raw.decode("utf-8", errors="replace"),
            region=services.defaults.region,
            max_rows=bulk.max_rows,
        )
    except TooManyRows as exc:
        await deliver(
            reply,
            messages.refused(
                f"the file has {exc.count} rows, more than BULK_MAX_ROWS={exc.limit}; nothing was"
                " sent. Split it, or ask an admin to raise the limit"
            ),
        )
        return
    if problem:
        await deliver(reply, messages.refused(problem))
        return
    sender = services.defaults.flow_senders.get(flow_sid) or services.defaults.sender or ""
    ack = await bulk.preview(rows, flow_sid, alias, sender, {}, origin.caller, reply)
    if "Preparing" not in str(ack.get("text", "")):
        await deliver(reply, ack)
