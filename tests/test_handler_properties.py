"""hypothesis over the whole /engage handler: arbitrary text, users and channels.

Always exactly one ack, never an exception, and never a start sent to Studio for input
the parser or the guardrails refuse (a bulk preview may read the flow; it starts nothing).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import cache
from typing import Any

import httpx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bot.app.config import Settings, load_settings
from bot.app.listeners.commands import handle_engage
from bot.app.services import Services
from bot.domain.command import Defaults, EngageCommand
from bot.domain.errors import CommandError
from bot.domain.grammar import parse
from bot.domain.policy import Access, Policy, refusal
from bot.engage.start import Engager
from bot.engage.throttle import Throttle
from bot.slack.engage import SlackEngage
from bot.studio.client import StudioClient
from tests.budget import examples
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, FLOW_SID, SENDER, SURVEY_SID, engagement_body

DEFAULTS = Defaults({"onboarding": FLOW_SID, "survey": SURVEY_SID}, FLOW_SID, SENDER, "US")
POLICY = Policy(
    everywhere=Access(users=frozenset({"U0ALLOWED", "U0OTHER"})),
    per_flow={SURVEY_SID: Access(channels=frozenset({"C0OPS"}))},
    countries=frozenset({"US", "CA"}),
)

TEXT = st.one_of(
    st.text(max_size=80),
    st.lists(
        st.sampled_from(
            [
                "+16175551212",
                "+1 617 555 1212",
                "617-555-1212",
                "+4930123456",
                "+19005551234",
                "survey",
                "onboarding",
                "help",
                "a=1",
                "b:=[1,2]",
                "c.d=x",
                '"q r"',
                "--from",
                "+16175550100",
                "--flow",
                "nope",
                "{",
                '{"k": 1}',
                "&lt;",
                "\u201c",
                "whatsapp:+16175551212",
            ]
        ),
        max_size=6,
    ).map(" ".join),
    # Mostly well-formed commands, so that the "sent" path is explored as much as the rest.
    st.tuples(
        st.sampled_from(["", "survey ", "onboarding "]),
        st.sampled_from(
            ["+16175551212", "(617) 555-1212", "+14165551234", "+4930123456", "+19005551234"]
        ),
        st.lists(
            st.from_regex(r"[a-z]{1,5}(=[a-z ]{0,5}|:=[0-9]{1,3})", fullmatch=True), max_size=3
        ),
    ).map(lambda parts: f"{parts[0]}{parts[1]} {' '.join(parts[2])}"),
)


@cache
def settings_for_tests() -> Settings:
    """Read once, inside the first test (whose environment conftest has emptied)."""
    return load_settings(
        need_slack=False,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        studio_flow_sid=FLOW_SID,
        studio_from=SENDER,
    )


USERS = st.sampled_from(["U0ALLOWED", "U0OTHER", "U0STRANGER", ""])
CHANNELS = st.sampled_from(["C0OPS", "C0GENERAL", ""])


async def run_once(
    text: str, user: str, channel: str
) -> tuple[dict[str, Any], int, list[dict[str, Any]]]:
    """The ack, how many starts reached Studio, and the replies that followed the ack."""
    requests: list[httpx.Request] = []
    replies: list[dict[str, Any]] = []

    def studio_peer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # a flow read for a preview: no start
            return httpx.Response(404, json={"code": 20404, "message": "not found"})
        requests.append(request)  # a create request: a start
        return httpx.Response(201, json=engagement_body())

    studio = StudioClient(
        base_url="https://studio.test",
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        transport=httpx.MockTransport(studio_peer),
    )
    engager = Engager(studio, policy=POLICY, throttle=Throttle(user_rate="1000/minute"))

    class Responder:
        def reply(self, url: str, *, replace: bool = False) -> Any:
            async def reply(message: dict[str, Any]) -> None:
                replies.append(message)

            return reply

    body = {
        "text": text,
        "user_id": user,
        "channel_id": channel,
        "team_id": "T1",
        "command": "/engage",
    }
    # The process's services, with this test's use-case (its rules, no flow checks: a
    # refused start must not even read a flow) and a responder that keeps the replies.
    built = Services.build(settings_for_tests(), studio)
    starts = SlackEngage(engager, tasks=built.tasks)
    services = replace(
        built,
        defaults=DEFAULTS,
        engager=engager,
        starts=starts,
        responder=Responder(),  # type: ignore[arg-type]
    )
    ack = await handle_engage(body, services)
    await services.drain(grace=5)
    await built.aclose()
    return ack, len(requests), replies


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXT, USERS, CHANNELS)
def test_every_command_gets_one_reply_and_refused_input_never_reaches_studio(
    text: str, user: str, channel: str
) -> None:
    ack, studio_requests, replies = asyncio.run(run_once(text, user, channel))
    assert ack["text"]  # the ack always says something
    try:
        command = parse(text, DEFAULTS)
    except CommandError:
        event("invalid")
        assert studio_requests == 0
        assert replies == []  # the ack was the whole answer
        return
    if not isinstance(command, EngageCommand):
        event("help, flows, status or bulk")
        assert studio_requests == 0
    elif refusal(POLICY, command, user, channel):
        event("refused")
        assert studio_requests == 0
        assert replies == []
    else:
        event("sent to Studio")
        assert studio_requests == 1
        assert "Starting" in ack["text"]
        (card,) = replies  # one card, after the ack
        assert card["response_type"] == "in_channel"
