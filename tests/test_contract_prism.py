"""The Studio client against Stoplight Prism serving Twilio's own v1 and v2 specs.

Prism validates every request (auth, content type, path SIDs, required form
fields, query parameters) and answers 422 to one that breaks the spec; the
client turns that into a StudioAPIError, which fails these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from bot.domain.caller import Caller
from bot.domain.command import Defaults, EngageCommand
from bot.domain.errors import CommandError, StudioAPIError
from bot.domain.grammar import parse
from bot.domain.results import Started
from bot.domain.run import Api, Engagement
from bot.engage.start import Engager, StartRequest
from bot.studio.client import StudioClient
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, FLOW_SID, SENDER, prism

pytestmark = pytest.mark.prism

SPECS = {"v1": "twilio_studio_v1.yaml", "v2": "twilio_studio_v2.yaml"}
RUN_SID = "FN" + "a" * 32


@pytest.fixture(scope="module", params=["v1", "v2"])
def prism_api(request: pytest.FixtureRequest) -> Iterator[tuple[Api, str]]:
    api: Api = request.param
    with prism(SPECS[api]) as url:
        yield api, url


@pytest.fixture
async def studio(prism_api: tuple[Api, str]) -> AsyncIterator[StudioClient]:
    api, url = prism_api
    async with StudioClient(
        base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN), api=api
    ) as client:
        yield client


DEFAULTS = Defaults(flow_sid=FLOW_SID, sender=SENDER, region="US")


async def start(studio: StudioClient, command: EngageCommand) -> Engagement:
    """Through the use-case's one entry, as the terminal starts: Prism must accept it."""
    outcome = await Engager(studio).start(StartRequest(command, Caller("terminal", terminal=True)))
    assert isinstance(outcome, Started), outcome
    return outcome.engagement


MESSAGING_SERVICE = "MG" + "ab" * 16


async def test_a_messaging_service_sender_on_v2_and_not_on_v1(studio: StudioClient) -> None:
    """v2 declares a Messaging Service SID as From for SMS; v1 Engagements, a number only."""
    defaults = Defaults(flow_sid=FLOW_SID, sender=SENDER, api=studio.api)
    text = f"+16175551212 --from {MESSAGING_SERVICE}"
    if studio.api == "v1":
        with pytest.raises(CommandError, match="STUDIO_API=v2"):
            parse(text, defaults)
        return
    command = parse(text, defaults)
    assert isinstance(command, EngageCommand)
    assert command.sender == MESSAGING_SERVICE
    assert (await start(studio, command)).sid.startswith("FN")


@pytest.mark.parametrize(
    "text",
    [
        "+16175551212",
        "+16175551212 first_name=Zeke",
        '+1 617 555 1212 name="Zeke Smith" count:=3 tags:=["a", "b"] customer.vip:=true',
        "whatsapp:+16175551212 --from whatsapp:+16175550100",
    ],
)
async def test_create_satisfies_the_spec(studio: StudioClient, text: str) -> None:
    command = parse(text, DEFAULTS)
    assert isinstance(command, EngageCommand)
    engagement = await start(studio, command)
    assert isinstance(engagement, Engagement)
    assert engagement.sid.startswith("FN")
    assert engagement.status in ("active", "ended")
    assert engagement.url
    kind = "Engagements" if studio.api == "v1" else "Executions"
    assert f"/{studio.api}/Flows/" in engagement.url
    assert kind in engagement.url


async def test_fetch_satisfies_the_spec(studio: StudioClient) -> None:
    engagement = await studio.fetch_engagement(FLOW_SID, RUN_SID)
    assert engagement.sid.startswith("FN")


async def test_steps_context_and_listing_satisfy_the_spec(studio: StudioClient) -> None:
    steps = await studio.steps(FLOW_SID, RUN_SID)
    assert isinstance(steps, list)
    context = await studio.context(FLOW_SID, RUN_SID)
    assert context is not None
    assert (
        await studio.find_active(FLOW_SID, "+16175551212") is None
    )  # Prism's example page is empty


async def test_end_satisfies_the_spec(studio: StudioClient) -> None:
    ended = await studio.end_engagement(FLOW_SID, RUN_SID)
    if studio.api == "v2":
        assert ended is not None
        assert ended.sid.startswith("FN")
    else:
        assert ended is None  # v1: deleted (204)


async def test_prism_really_validates(prism_api: tuple[Api, str]) -> None:
    """The peer is not a rubber stamp: a request without From is refused with 422."""
    api, url = prism_api
    kind = "Engagements" if api == "v1" else "Executions"
    async with httpx.AsyncClient(base_url=url, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = await http.post(f"/{api}/Flows/{FLOW_SID}/{kind}", data={"To": "+16175551212"})
    assert response.status_code == 422
    async with StudioClient(
        base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN), api=api
    ) as client:
        with pytest.raises(StudioAPIError) as caught:
            await client.create_engagement(
                "FWnot-a-flow-sid", to="+16175551212", sender=SENDER, parameters={}
            )
    assert caught.value.status == 422
