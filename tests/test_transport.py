"""bot/infra/transport.py against real sockets on loopback: each way a connection can fail
comes back as the httpx exception that says whether the request can have left, and
the Studio client retries only those that cannot."""

from __future__ import annotations

import asyncio
import gzip
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.domain.errors import StudioConnectionError, StudioOutcomeUnknown
from bot.infra.transport import AiohttpTransport, env_proxy
from bot.studio.client import POOL_LIMITS, StudioClient
from tests.peers import ACCOUNT_SID, AUTH_TOKEN, CONTACT, FLOW_SID, SENDER, free_port, serve

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server on 127.0.0.1 that reads each request whole, counts it, then
    does what ``behaviour`` says instead of answering properly."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.arrived = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        self.requests += 1
        self.arrived.set()
        try:
            await self.behaviour(reader, writer)
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close the connection without a word."""


async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Abort the connection: an RST, as a crashed load balancer sends."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"this is not HTTP\r\n\r\n")
    await writer.drain()


async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


async def no_sleep(seconds: float) -> None:
    return None


def client(url: str, *, read: float = 5.0) -> StudioClient:
    return StudioClient(
        base_url=url,
        username=ACCOUNT_SID,
        password=SecretStr(AUTH_TOKEN),
        timeout=httpx.Timeout(5.0, read=read),
        sleep=no_sleep,
    )


async def create(studio: StudioClient) -> object:
    return await studio.create_engagement(FLOW_SID, to=CONTACT, sender=SENDER, parameters={})


@pytest.mark.parametrize(
    ("behaviour", "read", "raised"),
    [
        (hang_up, 5.0, httpx.RemoteProtocolError),
        (reset, 5.0, httpx.ReadError),
        (garble, 5.0, httpx.ReadError),
        (never_answer, 0.2, httpx.ReadTimeout),
    ],
)
async def test_a_request_that_left_is_outcome_unknown_and_never_sent_again(
    behaviour: Behaviour, read: float, raised: type[Exception]
) -> None:
    server = RawServer(behaviour)
    async with server.running() as url:
        async with httpx.AsyncClient(
            transport=AiohttpTransport(POOL_LIMITS), timeout=httpx.Timeout(5.0, read=read)
        ) as http:
            with pytest.raises(raised) as caught:
                await http.post(f"{url}/x", content=b"To=1")
        assert not isinstance(caught.value, httpx.ConnectError | httpx.ConnectTimeout)
        async with client(url, read=read) as studio:
            with pytest.raises(StudioOutcomeUnknown, match="may have reached Twilio"):
                await create(studio)
    assert server.requests == 2  # one each: neither was retried


async def test_a_refused_connection_is_connect_error_and_retried() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with httpx.AsyncClient(transport=AiohttpTransport(POOL_LIMITS)) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post(f"{url}/x", content=b"To=1")
    async with client(url) as studio:
        with pytest.raises(StudioConnectionError, match="after 3 attempt"):
            await create(studio)


async def test_no_free_connection_is_connect_timeout_and_nothing_is_sent() -> None:
    server = RawServer(never_answer)
    transport = AiohttpTransport(httpx.Limits(max_connections=1))
    async with server.running() as url, httpx.AsyncClient(transport=transport) as http:
        busy = asyncio.create_task(http.post(f"{url}/x", content=b"To=1"))
        await server.arrived.wait()
        with pytest.raises(httpx.ConnectTimeout):
            await http.post(
                f"{url}/x", content=b"To=2", timeout=httpx.Timeout(5.0, connect=0.1, pool=0.1)
            )
        busy.cancel()
        assert server.requests == 1


async def test_answers_are_decoded_by_httpx_and_headers_go_out_as_given() -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        seen["body"] = (await request.read()).decode()
        body = gzip.compress(b'{"ok": true}')
        return web.Response(
            body=body,
            status=201,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            reason="Created",
        )

    app = web.Application()
    app.router.add_post("/x", handler)
    async with (
        serve(app) as url,
        httpx.AsyncClient(
            transport=AiohttpTransport(POOL_LIMITS), headers={"User-Agent": "ours/1"}
        ) as http,
    ):
        response = await http.post(f"{url}/x", data={"To": "+1 617"})
    assert response.status_code == 201
    assert response.reason_phrase == "Created"
    assert response.json() == {"ok": True}
    assert seen["User-Agent"] == "ours/1"
    assert seen["body"] == "To=%2B1+617"
    assert seen["Content-Type"] == "application/x-www-form-urlencoded"


async def test_proxies_from_the_environment_are_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = RawServer(hang_up)
    async with server.running() as url:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # dead
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        env_proxy.cache_clear()  # the environment is read once per process and host
        async with httpx.AsyncClient(transport=AiohttpTransport(POOL_LIMITS)) as http:
            with pytest.raises(httpx.ConnectError):  # through the dead proxy: never sent
                await http.post(f"{url}/x", content=b"To=1")
        assert server.requests == 0
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        env_proxy.cache_clear()
        async with httpx.AsyncClient(transport=AiohttpTransport(POOL_LIMITS)) as http:
            with pytest.raises(httpx.RemoteProtocolError):  # straight to the server
                await http.post(f"{url}/x", content=b"To=1")
        assert server.requests == 1
    env_proxy.cache_clear()


async def test_aclose_closes_the_pool_and_a_later_request_opens_another() -> None:
    server = RawServer(hang_up)
    transport = AiohttpTransport(POOL_LIMITS)
    async with server.running() as url:
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(f"{url}/x", content=b"To=1")
        await transport.aclose()  # twice is harmless
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.RemoteProtocolError):
                await http.post(f"{url}/x", content=b"To=1")
    assert server.requests == 2
