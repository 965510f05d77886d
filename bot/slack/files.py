"""Reading a file shared in Slack, with the bot token sent only to Slack's own file host.

A message payload names its files, but anyone can craft a payload's URL; so the file
is asked of Slack by its ID (``files.info``), and its download URL is used only when
it is on Slack's file host (``files.slack.com``; for a Web API at another address, as
in tests, that address's host). The token never follows a redirect to another host.
The body is read to its end, bounded, and compared with the size Slack states: a file
that ends early is refused, never previewed short.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.bulk_input import Sheet, read_csv
from bot.domain.errors import SlackFileError
from bot.infra.transport import env_proxy
from bot.slack.api_errors import slack_refusal

log = logging.getLogger(__name__)

SLACK_FILE_HOST = "files.slack.com"
MAX_REDIRECTS = 3
TIMEOUT = aiohttp.ClientTimeout(total=30, sock_read=15)


def file_hosts(api_url: str) -> frozenset[str]:
    """Where the bot token may be sent for a download: Slack's file host, or, when the
    Web API is elsewhere (a test's fake), that host (``host:port``)."""
    where = urlsplit(api_url)
    host = (where.hostname or "").lower()
    if host == "slack.com" or host.endswith(".slack.com"):
        return frozenset({SLACK_FILE_HOST})
    return frozenset({where.netloc.lower()})


def _trusted(url: str, hosts: frozenset[str]) -> bool:
    where = urlsplit(url)
    if where.scheme not in ("https", "http"):
        return False
    if hosts == frozenset({SLACK_FILE_HOST}):
        return where.scheme == "https" and (where.hostname or "").lower() == SLACK_FILE_HOST
    return where.netloc.lower() in hosts


@dataclass(frozen=True)
class SlackFile:
    """What ``files.info`` says of a file."""

    id: str
    name: str
    filetype: str
    size: int
    url: str  # url_private_download (or url_private)

    @property
    def is_csv(self) -> bool:
        return self.name.lower().endswith(".csv") or self.filetype == "csv"


async def file_info(slack: AsyncWebClient, file_id: str) -> SlackFile:
    """The file as Slack has it. Raises ``SlackFileError``."""
    try:
        answer = await slack.files_info(file=file_id)
    except SlackApiError as exc:
        refusal = slack_refusal(exc)
        log.info("files.info refused: %s", refusal)
        raise SlackFileError(
            f"Slack would not show the file ({refusal}); the bot needs files:read"
        ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise SlackFileError(
            f"Slack did not answer about the file ({type(exc).__name__})"
        ) from None
    data = answer.get("file") or {}
    try:
        size = int(str(data.get("size")))
    except (TypeError, ValueError):
        raise SlackFileError("Slack did not say how large the file is") from None
    return SlackFile(
        id=str(data.get("id") or file_id),
        name=str(data.get("name") or ""),
        filetype=str(data.get("filetype") or ""),
        size=size,
        url=str(data.get("url_private_download") or data.get("url_private") or ""),
    )


async def download(
    session: aiohttp.ClientSession,
    file: SlackFile,
    token: str,
    *,
    hosts: frozenset[str],
    limit: int,
) -> bytes:
    """The whole file, exactly ``file.size`` bytes. Raises ``SlackFileError``: too large,
    not on Slack's file host, redirected elsewhere, or ended early."""
    if file.size > limit:
        raise SlackFileError(f"the file is too large ({file.size:,} bytes; at most {limit:,})")
    url = file.url
    for _ in range(MAX_REDIRECTS + 1):
        if not _trusted(url, hosts):
            log.warning("refused to send the bot token to a file URL off Slack's file host")
            raise SlackFileError("the file's address is not on Slack's file host")
        where = urlsplit(url)
        try:
            async with session.get(
                url,
                headers={"Authorization": f"Bearer {token}"},
                allow_redirects=False,
                timeout=TIMEOUT,
                proxy=env_proxy(where.scheme, where.hostname or ""),
            ) as response:
                if response.status in (301, 302, 303, 307, 308):
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status != 200:
                    raise SlackFileError(f"Slack answered HTTP {response.status} for the file")
                body = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    body += chunk
                    if len(body) > file.size:
                        raise SlackFileError("the file is larger than Slack said; not read")
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise SlackFileError(f"the download broke off ({type(exc).__name__})") from None
        if len(body) != file.size:
            raise SlackFileError(
                f"the file ended early ({len(body):,} of {file.size:,} bytes); nothing was"
                " read from it, try again"
            )
        return bytes(body)
    raise SlackFileError("the file's address redirected too many times")


class CsvFiles:
    """CSV files shared in Slack, read for bulk runs with the bot token."""

    def __init__(
        self, slack: AsyncWebClient, session: aiohttp.ClientSession, api_url: str, *, limit: int
    ) -> None:
        self.slack = slack
        self.session = session
        self.hosts = file_hosts(api_url)
        self.limit = limit

    async def read_csv(
        self, file_ids: list[str], region: str | None, max_rows: int
    ) -> tuple[Sheet, str]:
        """The first CSV file among ``file_ids``, read whole, and its name. Raises
        ``SlackFileError``, ``CsvError`` (``TooManyRows``)."""
        for file_id in file_ids:
            file = await file_info(self.slack, file_id)
            if file.is_csv:
                break
        else:
            raise SlackFileError("this message has no CSV file to start a flow for")
        token = self.slack.token or ""
        data = await download(self.session, file, token, hosts=self.hosts, limit=self.limit)
        # 100,000 rows take seconds of CPU: read in a thread, so that the listeners go on
        # acknowledging within Slack's 3 s meanwhile
        sheet = await asyncio.to_thread(read_csv, data, region=region, max_rows=max_rows)
        return sheet, file.name or file.id
