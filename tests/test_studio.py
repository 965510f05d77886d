"""The Studio client's error and retry rules.

Against a fake Studio on loopback (real HTTP) for every answer a server can give:
Twilio's error bodies, garbled bodies, 429 with Retry-After; against respx only for
what a peer cannot produce on demand: timeouts, resets, connections that never open.
respx patches httpx's own transport, so those tests give the client that one: they
test how the client treats each httpx exception. How bot/infra/transport.py turns real
socket failures into those exceptions is tested against real sockets in
test_transport.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import respx
from pydantic import SecretStr

from bot.domain.errors import (
    StudioAPIError,
    StudioConnectionError,
    StudioError,
    StudioOutcomeUnknown,
)
from bot.studio.client import USER_AGENT, RetryPolicy, StudioClient
from tests.peers import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    CONTACT,
    FLOW_SID,
    SENDER,
    FakeStudio,
    engagement_body,
    serve,
)

BASE = "https://studio.test"
CREATE = f"{BASE}/v1/Flows/{FLOW_SID}/Engagements"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def studio(sleeps: Sleeps) -> AsyncIterator[StudioClient]:
    """A client for respx: only transport failures are mocked."""
    async with StudioClient(
        base_url=BASE,
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        sleep=sleeps,
        transport=httpx.AsyncHTTPTransport(),
    ) as client:
        yield client


@pytest.fixture
def peer() -> FakeStudio:
    return FakeStudio()


@pytest.fixture
async def real(peer: FakeStudio, sleeps: Sleeps) -> AsyncIterator[StudioClient]:
    """A client talking real HTTP to ``peer`` on loopback."""
    async with (
        serve(peer.app()) as url,
        StudioClient(
            base_url=url, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN), sleep=sleeps
        ) as client,
    ):
        yield client


async def create(studio: StudioClient, **parameters: Any) -> Any:
    return await studio.create_engagement(
        FLOW_SID, to=CONTACT, sender=SENDER, parameters=parameters
    )


async def test_create_sends_the_form_twilio_documents(real: StudioClient, peer: FakeStudio) -> None:
    engagement = await create(real, first_name="Zeke", customer={"vip": True})
    assert engagement.sid == engagement_body()["sid"]
    assert engagement.status == "active"
    assert engagement.date_created is not None
    (request,) = peer.requests
    assert request["form"] == {
        "To": CONTACT,
        "From": SENDER,
        "Parameters": '{"first_name":"Zeke","customer":{"vip":true}}',
    }
    assert request["user_agent"] == USER_AGENT
    assert USER_AGENT.startswith("studio-engage/")
    assert request["authorization"] == httpx.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)._auth_header


async def test_no_parameters_means_no_parameters_field(
    real: StudioClient, peer: FakeStudio
) -> None:
    await create(real)
    assert "Parameters" not in peer.requests[0]["form"]


async def test_fetch(real: StudioClient, peer: FakeStudio) -> None:
    created = await create(real)
    peer.runs[created.sid]["status"] = "ended"
    assert (await real.fetch_engagement(FLOW_SID, created.sid)).status == "ended"


@pytest.mark.parametrize(
    ("status", "body", "code", "more_info", "unknown"),
    [
        (
            400,
            {
                "code": 21211,
                "message": "Invalid 'To' Phone Number",
                "more_info": "https://www.twilio.com/docs/errors/21211",
                "status": 400,
            },
            21211,
            "https://www.twilio.com/docs/errors/21211",
            False,
        ),
        (
            401,
            {
                "code": 20003,
                "message": "Authenticate",
                "more_info": "https://www.twilio.com/docs/errors/20003",
                "status": 401,
            },
            20003,
            "https://www.twilio.com/docs/errors/20003",
            False,
        ),
        (
            404,
            {
                "code": 20404,
                "message": "The requested resource was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404",
                "status": 404,
            },
            20404,
            "https://www.twilio.com/docs/errors/20404",
            False,
        ),
        (
            409,
            {"code": 20409, "message": "Execution already active", "status": 409},
            20409,
            None,
            False,
        ),
        (
            500,
            {"code": 20500, "message": "Internal Server Error", "status": 500},
            20500,
            None,
            True,
        ),
        (503, {"code": "oops", "message": "Service unavailable", "more_info": 7}, None, None, True),
    ],
)
async def test_twilio_error_bodies(
    real: StudioClient,
    peer: FakeStudio,
    status: int,
    body: dict[str, Any],
    code: int | None,
    more_info: str | None,
    unknown: bool,
) -> None:
    peer.answers.append((status, body))
    with pytest.raises(StudioAPIError) as caught:
        await create(real)
    error = caught.value
    assert (error.status, error.code, error.more_info) == (status, code, more_info)
    assert error.message == body["message"]
    assert error.outcome_unknown is unknown
    assert isinstance(error, StudioOutcomeUnknown) is unknown  # caught by the class, too
    assert len(peer.creates()) == 1  # neither a 4xx nor a 5xx is ever retried


@pytest.mark.parametrize(
    ("status", "content", "unknown"),
    [
        (400, b"<html>Bad Request</html>", False),
        (502, b"Bad Gateway", True),
        (404, b"", False),
        (400, b'{"code": 1}', False),  # JSON, but not Twilio's error shape
        (400, b'["a list"]', False),
        (400, b"\xff\xfe garbage", False),
    ],
)
async def test_garbled_error_bodies_keep_the_status(
    real: StudioClient, peer: FakeStudio, status: int, content: bytes, unknown: bool
) -> None:
    peer.answers.append((status, content))
    with pytest.raises(StudioAPIError) as caught:
        await create(real)
    assert caught.value.status == status
    assert caught.value.code is None
    assert f"HTTP {status}" in caught.value.message
    assert caught.value.outcome_unknown is unknown
    assert isinstance(caught.value, StudioOutcomeUnknown) is unknown


@pytest.mark.parametrize("content", [b"not json", b"{}", b'{"sid": 5}', b"[]"])
async def test_garbled_success_body_means_it_probably_started(
    real: StudioClient, peer: FakeStudio, content: bytes
) -> None:
    peer.answers.append((201, content))
    with pytest.raises(StudioOutcomeUnknown, match="probably started") as caught:
        await create(real)
    assert caught.value.status == 201
    assert len(peer.creates()) == 1


@pytest.mark.parametrize(
    "exception",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.WriteTimeout("write timed out"),
        httpx.ReadError("connection reset"),
        httpx.WriteError("broken pipe"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
)
@respx.mock
async def test_anything_that_may_have_started_is_never_retried(
    studio: StudioClient, sleeps: Sleeps, exception: Exception
) -> None:
    route = respx.post(CREATE).mock(
        side_effect=[exception, httpx.Response(201, json=engagement_body())]
    )
    with pytest.raises(StudioOutcomeUnknown, match="may have reached Twilio") as caught:
        await create(studio)
    assert caught.value.outcome_unknown
    assert route.call_count == 1
    assert sleeps.waits == []


@pytest.mark.parametrize(
    "exception",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.PoolTimeout("pool"),
    ],
)
@respx.mock
async def test_a_connection_that_never_opened_is_retried(
    studio: StudioClient, sleeps: Sleeps, exception: Exception
) -> None:
    route = respx.post(CREATE).mock(
        side_effect=[exception, httpx.Response(201, json=engagement_body())]
    )
    engagement = await create(studio)
    assert engagement.sid
    assert route.call_count == 2
    assert sleeps.waits == [0.25]


@respx.mock
async def test_connect_retries_are_bounded(studio: StudioClient, sleeps: Sleeps) -> None:
    route = respx.post(CREATE).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(StudioConnectionError, match="nothing was sent") as caught:
        await create(studio)
    assert not caught.value.outcome_unknown
    assert route.call_count == 3
    assert sleeps.waits == [0.25, 0.5]


def too_many(retry_after: str | None) -> tuple[Any, ...]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    return (429, body, headers)


async def test_429_waits_for_retry_after(
    real: StudioClient, peer: FakeStudio, sleeps: Sleeps
) -> None:
    peer.answers += [too_many("2"), too_many(None)]
    engagement = await create(real)
    assert engagement.status == "active"
    assert len(peer.creates()) == 3
    assert sleeps.waits == [2.0, 1.0]


async def test_a_429s_retry_waits_for_the_pace_of_whoever_asked(
    real: StudioClient, peer: FakeStudio, sleeps: Sleeps
) -> None:
    """One client serves starts and the follower's reads: the hook that paces a 429's
    retry comes with each call, so a read's retry never takes a start's slot."""
    paced: list[str] = []

    async def starts() -> None:
        paced.append("STUDIO_RATE_LIMIT")

    async def reads() -> None:
        paced.append("STUDIO_READ_RATE_LIMIT")

    peer.answers.append(too_many("1"))
    run = await real.create_engagement(
        FLOW_SID, to=CONTACT, sender=SENDER, parameters={}, before_retry=starts
    )
    peer.read_answers.append(too_many("1"))
    await real.fetch_engagement(FLOW_SID, run.sid, before_retry=reads)
    peer.read_answers.append(too_many("1"))
    await real.fetch_engagement(FLOW_SID, run.sid)  # no pace given: none taken
    assert paced == ["STUDIO_RATE_LIMIT", "STUDIO_READ_RATE_LIMIT"]
    assert sleeps.waits == [1.0, 1.0, 1.0]


async def test_429_accepts_an_http_date(
    real: StudioClient, peer: FakeStudio, sleeps: Sleeps
) -> None:
    peer.answers.append(too_many("Wed, 21 Oct 2015 07:28:00 GMT"))
    await create(real)
    assert sleeps.waits == [0.0]  # a date in the past: retry at once


async def test_429_tries_are_bounded(real: StudioClient, peer: FakeStudio, sleeps: Sleeps) -> None:
    peer.answers += [too_many("1")] * 5
    with pytest.raises(StudioAPIError) as caught:
        await create(real)
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert len(peer.creates()) == 3
    assert sleeps.waits == [1.0, 1.0]


async def test_429_total_wait_is_bounded(
    real: StudioClient, peer: FakeStudio, sleeps: Sleeps
) -> None:
    peer.answers.append(too_many("60"))
    with pytest.raises(StudioAPIError, match="Too Many Requests"):
        await create(real)
    assert len(peer.creates()) == 1  # waiting a minute would outlast the budget: give up
    assert sleeps.waits == []


async def test_a_real_refused_connection_is_retried_then_reported(sleeps: Sleeps) -> None:
    from tests.peers import free_port

    port = free_port()  # nothing listens there
    async with StudioClient(
        base_url=f"http://127.0.0.1:{port}",
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        sleep=sleeps,
        retry=RetryPolicy(connect_attempts=2),
    ) as client:
        with pytest.raises(StudioConnectionError) as caught:
            await create(client)
    assert sleeps.waits == [0.25]
    assert not caught.value.outcome_unknown


async def test_no_secret_in_errors_or_reprs(real: StudioClient, peer: FakeStudio) -> None:
    errors: list[StudioError] = []
    peer.answers += [(401, {"code": 20003, "message": "Authenticate"}), (500, b"x")]
    for _ in range(2):
        with pytest.raises(StudioError) as caught:
            await create(real)
        errors.append(caught.value)
    texts = [repr(real)] + [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        assert AUTH_TOKEN not in text
        assert json.dumps(AUTH_TOKEN) not in text


async def test_a_read_that_never_connected_does_not_speak_of_starting(sleeps: Sleeps) -> None:
    from tests.peers import free_port

    async with StudioClient(
        base_url=f"http://127.0.0.1:{free_port()}",  # nothing listens there
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        sleep=sleeps,
    ) as client:
        with pytest.raises(StudioConnectionError) as read:
            await client.fetch_flow(FLOW_SID)
        with pytest.raises(StudioConnectionError) as started:
            await create(client)
    assert str(read.value).endswith("nothing was sent")
    assert str(started.value).endswith("nothing was sent, nothing started")


def test_the_error_tree_says_what_each_failure_means() -> None:
    """``except StudioOutcomeUnknown`` catches every failure that may have started a flow
    (a 5xx included), ``except StudioNotSent`` every one that certainly did not."""
    from bot.domain.errors import (
        StudioAPIError,
        StudioBusy,
        StudioConnectionError,
        StudioNotSent,
        StudioOutcomeUnknown,
        StudioServerError,
    )

    server = StudioServerError("bad gateway", status=502)
    assert isinstance(server, StudioAPIError)
    assert isinstance(server, StudioOutcomeUnknown)
    assert server.outcome_unknown
    client = StudioAPIError("bad number", status=400, code=21211)
    assert not isinstance(client, StudioOutcomeUnknown)
    assert not client.outcome_unknown
    for not_sent in (StudioBusy(), StudioConnectionError("refused")):
        assert isinstance(not_sent, StudioNotSent)
        assert not not_sent.outcome_unknown
