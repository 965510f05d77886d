"""Files of contacts from Slack: bulk runs (the preview's Start and Cancel, the progress
message's Pause, Resume and Cancel, and the message shortcut *Start flow for each row*
on a message that holds a CSV file), and an admin's *Opt out each row* that imports
such a file into the opt-out list (its preview's *Opt out N* and Cancel)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.app.listeners.origin import origin_of
from bot.app.services import Services
from bot.domain.caller import Caller
from bot.slack.messages.bulk import BULK_CANCEL, BULK_DROP, BULK_PAUSE, BULK_RESUME, BULK_START
from bot.slack.messages.consent import IMPORT_ACTION, IMPORT_DROP_ACTION
from bot.slack.reply import Reply, deliver

Listener = Callable[[AsyncAck, dict[str, Any]], Awaitable[None]]
PreviewAction = Callable[[str, Caller, Reply], Coroutine[Any, Any, None]]
CSV_SHORTCUT = "bulk_csv"  # the manifest's callback_id for "Start flow for each row"
OPTOUT_SHORTCUT = "optout_csv"  # ... for "Opt out each row" (admins)


def register(app: AsyncApp, services: Services) -> None:
    bulk, responder = services.bulk, services.responder

    def on_preview(decide: PreviewAction) -> Listener:
        """Start or Cancel on a preview: the answer replaces the preview."""

        async def listener(ack: AsyncAck, body: dict[str, Any]) -> None:
            await ack()
            origin = origin_of(body)
            replace = responder.reply(origin.response_url, replace=True)
            services.tasks.spawn(decide(origin.value, origin.caller, replace), "bulk")

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
            services.tasks.spawn(work, f"bulk:{verb}")

        return listener

    app.action(BULK_PAUSE)(control("pause"))
    app.action(BULK_RESUME)(control("resume"))
    app.action(BULK_CANCEL)(control("cancel"))

    @app.shortcut(CSV_SHORTCUT)
    async def csv_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        origin = origin_of(body)
        reply = responder.reply(origin.response_url)
        file_ids, text = shared_files(body)

        async def work() -> None:
            admission = await bulk.preview_file(file_ids, text, origin.caller, reply)
            if not admission.taken:
                await deliver(reply, admission.ack)

        services.tasks.spawn(work(), "bulk:csv")

    @app.shortcut(OPTOUT_SHORTCUT)
    async def optout_shortcut(ack: AsyncAck, body: dict[str, Any]) -> None:
        """*Opt out each row*: an admin imports a CSV file of numbers (a preview first)."""
        await ack()
        origin = origin_of(body)
        reply = responder.reply(origin.response_url)
        file_ids, _ = shared_files(body)
        answer = services.consent.import_file(file_ids, origin.caller, reply)
        services.tasks.spawn(deliver(reply, answer), "optout:csv")

    app.action(IMPORT_ACTION)(on_preview(services.consent.confirm_import))
    app.action(IMPORT_DROP_ACTION)(
        on_preview(lambda value, _caller, replace: services.consent.drop_import(value, replace))
    )


def shared_files(body: dict[str, Any]) -> tuple[list[str], str]:
    """A message shortcut's message: the IDs of its files (asked of Slack by ID, never by
    a URL from the payload) and its text."""
    message = body.get("message") or {}
    file_ids = [str(f["id"]) for f in message.get("files") or [] if f.get("id")]
    return file_ids, str(message.get("text", ""))
