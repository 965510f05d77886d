"""httpx's transport interface over aiohttp's connection pool, for the Studio client.

httpx stays the client's API (requests, auth, timeouts, errors); aiohttp carries the
bytes. httpcore's pool looks at every idle connection on every request, which
made a busy bot spend most of its CPU choosing a connection (bench/transports.py
has the figures); aiohttp's pool does not, and already carries our Slack traffic.

Failures come back as httpx's exceptions, sorted by the one question that matters
here: can the request have left? ``ConnectError``/``ConnectTimeout`` only when it
cannot (the connection never opened, or no connection was free), so the client may
retry those; everything else (a reset, a disconnect, a read timeout, a garbled
answer) is a ``ReadError``/``ReadTimeout``/``RemoteProtocolError``: outcome unknown.
The body is read here, inside that classification, before the response is returned.
"""

from __future__ import annotations

import functools
import urllib.request

import aiohttp
import httpx


@functools.lru_cache(maxsize=64)
def env_proxy(scheme: str, host: str) -> str | None:
    """The proxy for ``scheme://host``: HTTPS_PROXY/HTTP_PROXY unless NO_PROXY covers
    the host, as httpx and slack_sdk read them; read once per scheme and host."""
    if urllib.request.proxy_bypass(host):  # NO_PROXY
        return None
    return urllib.request.getproxies().get(scheme)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One aiohttp session, opened on the first request (inside the running loop)."""

    def __init__(self, limits: httpx.Limits, *, verify: bool = True) -> None:
        self._limits = limits
        self._ssl = httpx.create_ssl_context(verify=verify)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            keepalive_timeout=self._limits.keepalive_expiry or 5.0,
            ssl=self._ssl,
        )
        # No cookies kept between requests. Proxies: see env_proxy (aiohttp's
        # trust_env would read the environment again on every request).
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = self._open()
        timeouts = request.extensions.get("timeout", {})
        pool, connect = timeouts.get("pool"), timeouts.get("connect")
        timeout = aiohttp.ClientTimeout(
            total=None,
            # aiohttp's `connect` spans waiting for a free connection and opening one.
            connect=(pool or 0) + (connect or 0) or None,
            sock_connect=connect,
            sock_read=timeouts.get("read"),
        )
        try:
            async with self._session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=request.content or None,
                proxy=env_proxy(request.url.scheme, request.url.host),
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes, as with its own transport
                timeout=timeout,
            ) as answer:
                body = await answer.read()
        except aiohttp.ClientConnectorError as exc:  # DNS, refused, TLS handshake, proxy
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ConnectionTimeoutError as exc:  # no free connection, or none opened
            raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
        except TimeoutError as exc:  # the request went out; the answer did not come
            raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except (aiohttp.ClientError, OSError) as exc:  # reset, broken pipe, bad answer
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=httpx.ByteStream(body),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
