"""The Studio client against Stoplight Prism serving Twilio's own v1 spec.

Prism validates every request (auth, content type, path SIDs, required form
fields) and answers 422 to one that breaks the spec; the client turns that
into a StudioAPIError, which fails these tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr

from bot.command import Defaults, EngageCommand, parse
from bot.engage import start
from bot.studio import Engagement, StudioAPIError, StudioClient
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, FLOW_SID, SENDER, prism

pytestmark = pytest.mark.prism


@pytest.fixture(scope="module")
def prism_v1() -> Iterator[str]:
    with prism("twilio_studio_v1.yaml") as url:
        yield url


@pytest.fixture
async def studio(prism_v1: str) -> AsyncIterator[StudioClient]:
    async with StudioClient(
        base_url=prism_v1, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN)
    ) as client:
        yield client


DEFAULTS = Defaults(flow_sid=FLOW_SID, sender=SENDER, region="US")


@pytest.mark.parametrize(
    "text",
    [
        "+16175551212",
        "+16175551212 first_name=Zeke",
        '+1 617 555 1212 name="Zeke Smith" count:=3 tags:=["a", "b"] customer.vip:=true',
        "whatsapp:+16175551212 --from whatsapp:+16175550100",
    ],
)
async def test_create_engagement_satisfies_the_spec(studio: StudioClient, text: str) -> None:
    command = parse(text, DEFAULTS)
    assert isinstance(command, EngageCommand)
    engagement = await start(studio, command)
    assert isinstance(engagement, Engagement)
    assert engagement.sid.startswith("FN")
    assert engagement.status in ("active", "ended")
    assert engagement.url


async def test_fetch_engagement_satisfies_the_spec(studio: StudioClient) -> None:
    engagement = await studio.fetch_engagement(FLOW_SID, "FN" + "a" * 32)
    assert engagement.sid.startswith("FN")


async def test_prism_really_validates(prism_v1: str) -> None:
    """The peer is not a rubber stamp: a request without From is refused with 422."""
    async with httpx.AsyncClient(base_url=prism_v1, auth=(ACCOUNT_SID, AUTH_TOKEN)) as http:
        response = await http.post(f"/v1/Flows/{FLOW_SID}/Engagements", data={"To": "+16175551212"})
    assert response.status_code == 422
    async with StudioClient(
        base_url=prism_v1, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN)
    ) as client:
        with pytest.raises(StudioAPIError) as caught:
            await client.create_engagement(
                "FWnot-a-flow-sid", to="+16175551212", sender=SENDER, parameters={}
            )
    assert caught.value.status == 422
