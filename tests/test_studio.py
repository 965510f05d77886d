"""The Studio client's error and retry rules, against respx (what a peer cannot produce)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from pydantic import SecretStr

from bot.studio import (
    USER_AGENT,
    RetryPolicy,
    StudioAPIError,
    StudioClient,
    StudioConnectionError,
    StudioError,
    StudioOutcomeUnknown,
)
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, CONTACT, FLOW_SID, SENDER, engagement_body

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
    async with StudioClient(
        base_url=BASE, username=ACCOUNT_SID, password=SecretStr(AUTH_TOKEN), sleep=sleeps
    ) as client:
        yield client


async def create(studio: StudioClient, **parameters: Any) -> Any:
    return await studio.create_engagement(
        FLOW_SID, to=CONTACT, sender=SENDER, parameters=parameters
    )


@respx.mock
async def test_create_sends_the_form_twilio_documents(studio: StudioClient) -> None:
    route = respx.post(CREATE).mock(return_value=httpx.Response(201, json=engagement_body()))
    engagement = await create(studio, first_name="Zeke", customer={"vip": True})
    assert engagement.sid == engagement_body()["sid"]
    assert engagement.status == "active"
    assert engagement.date_created is not None
    request = route.calls.last.request
    form = parse_qs(request.content.decode())
    assert form == {
        "To": [CONTACT],
        "From": [SENDER],
        "Parameters": ['{"first_name":"Zeke","customer":{"vip":true}}'],
    }
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("studio-engage/")
    expected = httpx.BasicAuth(ACCOUNT_SID, AUTH_TOKEN)._auth_header
    assert request.headers["Authorization"] == expected


@respx.mock
async def test_no_parameters_means_no_parameters_field(studio: StudioClient) -> None:
    route = respx.post(CREATE).mock(return_value=httpx.Response(201, json=engagement_body()))
    await create(studio)
    assert "Parameters" not in parse_qs(route.calls.last.request.content.decode())


@respx.mock
async def test_fetch(studio: StudioClient) -> None:
    sid = engagement_body()["sid"]
    respx.get(f"{CREATE}/{sid}").mock(
        return_value=httpx.Response(200, json={**engagement_body(), "status": "ended"})
    )
    assert (await studio.fetch_engagement(FLOW_SID, sid)).status == "ended"


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
@respx.mock
async def test_twilio_error_bodies(
    studio: StudioClient,
    status: int,
    body: dict[str, Any],
    code: int | None,
    more_info: str | None,
    unknown: bool,
) -> None:
    route = respx.post(CREATE).mock(return_value=httpx.Response(status, json=body))
    with pytest.raises(StudioAPIError) as caught:
        await create(studio)
    error = caught.value
    assert (error.status, error.code, error.more_info) == (status, code, more_info)
    assert error.message == body["message"]
    assert error.outcome_unknown is unknown
    assert route.call_count == 1  # neither a 4xx nor a 5xx is ever retried


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
@respx.mock
async def test_garbled_error_bodies_keep_the_status(
    studio: StudioClient, status: int, content: bytes, unknown: bool
) -> None:
    respx.post(CREATE).mock(return_value=httpx.Response(status, content=content))
    with pytest.raises(StudioAPIError) as caught:
        await create(studio)
    assert caught.value.status == status
    assert caught.value.code is None
    assert f"HTTP {status}" in caught.value.message
    assert caught.value.outcome_unknown is unknown


@pytest.mark.parametrize("content", [b"not json", b"{}", b'{"sid": 5}', b"[]"])
@respx.mock
async def test_garbled_success_body_means_it_probably_started(
    studio: StudioClient, content: bytes
) -> None:
    route = respx.post(CREATE).mock(return_value=httpx.Response(201, content=content))
    with pytest.raises(StudioOutcomeUnknown, match="probably started") as caught:
        await create(studio)
    assert caught.value.status == 201
    assert route.call_count == 1


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


def too_many(retry_after: str | None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    body = {
        "code": 20429,
        "message": "Too Many Requests",
        "more_info": "https://www.twilio.com/docs/errors/20429",
        "status": 429,
    }
    return httpx.Response(429, json=body, headers=headers)


@respx.mock
async def test_429_waits_for_retry_after(studio: StudioClient, sleeps: Sleeps) -> None:
    route = respx.post(CREATE).mock(
        side_effect=[too_many("2"), too_many(None), httpx.Response(201, json=engagement_body())]
    )
    engagement = await create(studio)
    assert engagement.status == "active"
    assert route.call_count == 3
    assert sleeps.waits == [2.0, 1.0]


@respx.mock
async def test_429_accepts_an_http_date(studio: StudioClient, sleeps: Sleeps) -> None:
    respx.post(CREATE).mock(
        side_effect=[
            too_many("Wed, 21 Oct 2015 07:28:00 GMT"),
            httpx.Response(201, json=engagement_body()),
        ]
    )
    await create(studio)
    assert sleeps.waits == [0.0]  # a date in the past: retry at once


@respx.mock
async def test_429_tries_are_bounded(studio: StudioClient, sleeps: Sleeps) -> None:
    route = respx.post(CREATE).mock(side_effect=lambda request: too_many("1"))
    with pytest.raises(StudioAPIError) as caught:
        await create(studio)
    assert (caught.value.status, caught.value.code) == (429, 20429)
    assert route.call_count == 3
    assert sleeps.waits == [1.0, 1.0]


@respx.mock
async def test_429_total_wait_is_bounded(studio: StudioClient, sleeps: Sleeps) -> None:
    route = respx.post(CREATE).mock(
        side_effect=[too_many("60"), httpx.Response(201, json=engagement_body())]
    )
    with pytest.raises(StudioAPIError, match="Too Many Requests"):
        await create(studio)
    assert route.call_count == 1  # waiting a minute would outlast the budget: give up at once
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


@respx.mock
async def test_no_secret_in_errors_or_reprs(studio: StudioClient) -> None:
    errors: list[StudioError] = []
    for response in [
        httpx.Response(401, json={"code": 20003, "message": "Authenticate"}),
        httpx.Response(500, content=b"x"),
    ]:
        respx.post(CREATE).mock(return_value=response)
        with pytest.raises(StudioError) as caught:
            await create(studio)
        errors.append(caught.value)
    texts = [repr(studio)] + [str(e) for e in errors] + [repr(e) for e in errors]
    for text in texts:
        assert AUTH_TOKEN not in text
        assert json.dumps(AUTH_TOKEN) not in text
