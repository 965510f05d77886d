"""The form, the shortcuts and the Home tab: Slack's own surfaces for the same starts.

- ``/engage`` with no text, the global shortcut *Start a Studio flow* and the Home
  tab's button open the form (``views.open`` with the request's ``trigger_id``, as a
  task right after the ack, within Slack's 3 s: nothing slow comes before it).
- Choosing a flow redraws the form with its parameters (``views.update``, after the
  ack: Studio may take seconds to describe the flow).

Every listener acks first; what waits on the network is a task the use-case owns.
- Submitting runs exactly what the slash command would; a bad contact, a missing
  parameter or a guardrail's refusal comes back on its field, nothing sent.
- The message shortcut *Start flow for contact* finds the numbers in the
  message: one opens the form with it filled in; several open the bulk preview.
- ``app_home_opened`` draws the Home tab (``views.publish``); so does each start by
  someone who opened it within the hour (``forms.HOME_WATCH_SECONDS``).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.app.listeners.origin import origin_of
from bot.app.services import Services
from bot.domain.caller import Caller
from bot.domain.run import CardRef
from bot.slack import messages
from bot.slack.api_errors import slack_refusal
from bot.slack.forms import Forms, numbers_in, publish_home
from bot.slack.messages.views import FLOW_SELECT, FORM, HOME_END, HOME_REFRESH, OPEN_FORM
from bot.slack.reply import Reply, deliver

log = logging.getLogger(__name__)

START_SHORTCUT = "start_flow"  # global shortcut: Start a Studio flow
CONTACT_SHORTCUT = "engage_contact"  # message shortcut: Start flow for contact


def open_form(
    services: Services,
    forms: Forms,
    client: AsyncWebClient,
    trigger_id: str,
    caller: Caller,
    contact: str = "",
) -> None:
    """``views.open`` as a task, right after the ack (the trigger lasts 3 s): the default
    flow's parameters come from what is known now; choosing a flow asks Studio."""

    async def work() -> None:
        choices = forms.choices(caller)
        view = forms.view(
            caller, forms.default_choice(choices), contact=contact, channel=caller.channel_id
        )
        try:
            await client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("views.open refused: %s", slack_refusal(exc))

    services.tasks.spawn(work(), "form:open")


def home_note(forms: Forms, client: AsyncWebClient, caller: Caller) -> Reply:
    """A ``Reply`` for the Home tab, which has no response_url: the Home redrawn with the
    message's text as a note (a refusal, a failure)."""

    async def note(message: messages.Message) -> None:
        await publish_home(forms, client, caller, str(message.get("text", "")))

    return note


def register(app: AsyncApp, services: Services) -> None:
    """The form, the shortcuts that open it, and the Home tab."""
    forms = services.forms
    _register_form(app, services, forms)
    _register_home(app, services, forms)


def _register_form(app: AsyncApp, services: Services, forms: Forms) -> None:
    tasks = services.tasks

    @app.shortcut(START_SHORTCUT)
    async def start_shortcut(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        origin = origin_of(body)
        open_form(services, forms, client, origin.trigger_id, origin.caller)

    @app.action(OPEN_FORM)
    async def from_home(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        origin = origin_of(body)
        open_form(services, forms, client, origin.trigger_id, origin.caller)

    @app.shortcut(CONTACT_SHORTCUT)
    async def contact_shortcut(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        origin = origin_of(body)
        text = str((body.get("message") or {}).get("text", ""))
        found = numbers_in(text, services.defaults.region)
        reply = services.responder.reply(origin.response_url)
        if len(found) == 1:
            open_form(services, forms, client, origin.trigger_id, origin.caller, found[0])
            return

        async def work() -> None:
            if found:
                admission = await services.bulk.preview_numbers(found, origin.caller, reply)
                await deliver(reply, admission.ack)
            else:
                await deliver(reply, messages.refused("there is no phone number in this message"))

        tasks.spawn(work(), "form:contact")

    @app.action(FLOW_SELECT)
    async def flow_chosen(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()  # Studio may be slow to describe the flow: the redraw follows
        view = body.get("view") or {}
        origin = origin_of(body)
        chosen = (body.get("actions") or [{}])[0].get("selected_option", {}).get("value")
        values: dict[str, dict[str, Any]] = view.get("state", {}).get("values", {})
        typed: dict[str, Any] = next(iter(values.get("contact", {}).values()), {})
        contact = str(typed.get("value") or "")

        async def work() -> None:
            choice = await forms.chosen(forms.choices(origin.caller), chosen)
            redrawn = forms.view(origin.caller, choice, contact=contact)
            try:
                await client.views_update(
                    view_id=view.get("id"), hash=view.get("hash"), view=redrawn
                )
            except SlackApiError as exc:
                log.info("views.update refused: %s", slack_refusal(exc))

        tasks.spawn(work(), "form:flow")

    @app.view(FORM)
    async def submitted(ack: AsyncAck, body: dict[str, Any]) -> None:
        origin = origin_of(body)
        view = body.get("view") or {}
        command, errors = forms.read(view)
        if command is None:
            await ack(response_action="errors", errors=errors)
            return
        reply = services.responder.reply(origin.response_url)
        admission = await services.starts.admit(command, origin.caller, reply)
        if not (admission.taken or admission.asked):  # refused: on its field, nothing sent
            field = "when" if command.when is not None else "contact"
            await ack(response_action="errors", errors={field: admission.ack["text"][:150]})
            return
        await ack()  # the modal closes; the ack (or the prompt) goes where the card will
        if origin.response_url:
            tasks.spawn(deliver(reply, admission.ack), "form:ack")


def _register_home(app: AsyncApp, services: Services, forms: Forms) -> None:
    tasks = services.tasks

    @app.action(HOME_REFRESH)
    async def home_refresh(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A recent run's Refresh on the Home tab: its status now, the Home redrawn."""
        await ack()
        origin = origin_of(body)
        if (ref := CardRef.decode(origin.value)) is None:
            return
        caller = origin.caller
        said = home_note(forms, client, caller)

        async def work() -> None:
            if snapshot := await services.run_actions.look(ref, caller, said):
                await forms.set_status(caller.user_id, ref.sid, snapshot.run.status or "unknown")
                await publish_home(forms, client, caller)

        services.tasks.spawn(work(), f"home:refresh:{ref.sid}")

    @app.action(HOME_END)
    async def home_end(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """A recent run's End on the Home tab: the End rule, then the Home redrawn."""
        await ack()
        origin = origin_of(body)
        if (ref := CardRef.decode(origin.value)) is None:
            return
        caller = origin.caller

        async def ended(message: messages.Message) -> None:
            await forms.set_status(caller.user_id, ref.sid, "ended")
            await publish_home(forms, client, caller, f"{ref.sid} was ended.")

        services.run_actions.end(ref, caller, ended, home_note(forms, client, caller))

    @app.event("app_home_opened")
    async def home_opened(body: dict[str, Any], client: AsyncWebClient) -> None:
        event = body.get("event") or {}
        if event.get("tab", "home") != "home":
            return
        caller = Caller(str(event.get("user", "")))

        async def work() -> None:  # Bolt answers the event when this listener returns
            await forms.opened_home(caller.user_id)
            await publish_home(forms, client, caller)

        tasks.spawn(work(), "home:opened")
