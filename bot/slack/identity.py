"""Who the bot is in Slack (``auth.test``), asked once at start-up, not on the first command.

Bolt's own single-workspace authorization calls ``auth.test`` lazily, so the first
command after every start or deploy waits for a round trip to Slack before its ack.
Bolt takes an ``authorize`` function instead: this one answers from the result asked
for in the background at start-up (``warm``). A command that arrives before that
answer is authorized with the bot token alone (what the listeners need): no command
ever waits on the network for it. A refused token is logged at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.api_errors import slack_refusal

log = logging.getLogger(__name__)

RETRY_SECONDS = 10.0  # /readyz asks Slack again at most this often while unknown
ASK_SECONDS = 1.0  # how long /readyz waits for that answer


class BotIdentity:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self._result: AuthorizeResult | None = None
        self._lock = asyncio.Lock()
        self.asked = 0  # auth.test calls made (for the tests and the bench)
        self._tried = -RETRY_SECONDS  # monotonic time of the last ``ensure`` that asked

    @property
    def known(self) -> bool:
        """Whether ``auth.test`` has answered (the bot knows who it is in Slack)."""
        return self._result is not None

    async def _get(self) -> AuthorizeResult | None:
        if self._result is not None:
            return self._result
        async with self._lock:  # one request, whoever asks first
            if self._result is None:
                self.asked += 1
                answer = await self.client.auth_test()
                self._result = AuthorizeResult.from_auth_test_response(
                    auth_test_response=answer, bot_token=self.client.token, user_token=None
                )
        return self._result

    async def ensure(self) -> bool:
        """Whether the identity is known, asking Slack again (within ``ASK_SECONDS``, at
        most every ``RETRY_SECONDS``) if the start-up ask failed: readiness must not stay
        down for ever because Slack was unreachable when the process began."""
        if self.known:
            return True
        now = time.monotonic()
        if now - self._tried >= RETRY_SECONDS:
            self._tried = now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.warm(), ASK_SECONDS)
        return self.known

    async def warm(self) -> None:
        """Ask Slack now (at start-up, in the background); a failure is logged and the
        first command asks again."""
        try:
            await self._get()
        except SlackApiError as exc:
            log.error("Slack refused the bot token at start-up: %s", slack_refusal(exc))
        except Exception as exc:  # noqa: BLE001 - the network: the first command asks again
            log.warning("auth.test failed at start-up: %s", type(exc).__name__)

    def authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's ``authorize`` (a plain function: Bolt passes arguments by their names):
        the bot's identity for every request, one workspace."""

        async def authorize(enterprise_id: str | None, team_id: str | None) -> AuthorizeResult:
            if self._result is not None:
                return self._result
            return AuthorizeResult(  # not known yet: the token is all the listeners use
                enterprise_id=enterprise_id, team_id=team_id, bot_token=self.client.token
            )

        return authorize
