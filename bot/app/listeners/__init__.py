"""Slack listeners, one module per surface, each with ``register(app, services)``.

Listeners are thin: read the payload (``origin_of``), ask a use-case, ack with what
it answers. They run before the response to Slack (``process_before_response``)
and never wait on the network: what does is a task the use-case owns.
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.app.listeners import actions, bulk, commands, forms, workflow
from bot.app.services import Services


def register(app: AsyncApp, services: Services) -> None:
    """Every listener the bot has."""
    commands.register(app, services)
    actions.register(app, services)
    bulk.register(app, services)
    forms.register(app, services)
    workflow.register(app, services)
