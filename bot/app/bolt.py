"""The Bolt app: HTTP or Socket Mode as configured, with every listener registered."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import listeners
from bot.app.config import Settings
from bot.app.services import Services


def build_app(settings: Settings, services: Services) -> AsyncApp:
    """The Bolt ``AsyncApp`` with its listeners.

    Listeners run before the response to Slack (``process_before_response``) and
    never wait on the network, so the ack goes out as soon as one returns, with no
    polling. Over HTTP the signature is checked before Bolt sees a request
    (``bot.slack.http``); Bolt checks it again.
    """
    signing_secret = settings.slack_signing_secret
    identity, slack = services.identity, services.slack
    if identity is not None and slack is not None:
        # The services' pool; Bolt gives each request the token from ``authorize``
        # (a client that holds one too would only draw Bolt's warning that it is unused).
        client = AsyncWebClient(base_url=slack.base_url, session=slack.session)
    else:
        client = slack or AsyncWebClient(base_url=settings.slack_api_url)
    app = AsyncApp(
        name="studio-engage",  # else Bolt reads the caller's source to name the app (40 ms)
        signing_secret=signing_secret.get_secret_value() if signing_secret else "",
        client=client,
        # auth.test asked once at start-up (bot.slack.identity), not on the first command
        authorize=identity.authorizer() if identity is not None else None,
        request_verification_enabled=not settings.socket_mode,
        process_before_response=True,
    )
    listeners.register(app, services)
    return app
