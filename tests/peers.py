"""Loopback peers for the tests: a fake Studio, a fake Slack (Web API + response_url
sink), Stoplight Prism serving Twilio's spec, and Slack-signed requests.

Every server binds to 127.0.0.1 on a free port.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = Path(os.environ.get("TWILIO_OAI_DIR", REPO.parent / "shared" / "twilio-oai"))
PRISM_BIN = REPO / "tests" / "prism" / "node_modules" / ".bin" / "prism"

ACCOUNT_SID = "AC" + "a" * 32
AUTH_TOKEN = "tok-5ecret-auth-token-value"
FLOW_SID = "FW" + "b" * 32
SURVEY_SID = "FW" + "c" * 32
ENGAGEMENT_SID = "FN" + "d" * 32
SENDER = "+16175550100"
CONTACT = "+16175551212"
BOT_TOKEN = "xoxb-5ecret-bot-token"
APP_TOKEN = "xapp-5ecret-app-token"
SIGNING_SECRET = "5ecret-signing-secret"
API_SECRET = "api-5ecret"
REDIS_PASSWORD = "pw-5ecret"
STEP_TOKEN = "xwfp-5ecret-step-token"  # a workflow step's own token (function_executed)
METRICS_TOKEN = "m3tr1cs-5ecret-token"  # /metrics' bearer token

# Every secret any test configures. tests/conftest.py fails a test whose captured
# output or logs contain one, so the whole suite doubles as a leak check.
CONSENT_KEY = "consent-key-for-tests-" + "7" * 32  # keys the opt-out list

SECRETS = (
    CONSENT_KEY,
    AUTH_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    API_SECRET,
    REDIS_PASSWORD,
    STEP_TOKEN,
    METRICS_TOKEN,
)


def leaked_secrets(text: str) -> list[str]:
    """The configured secrets that appear in ``text``, masked for the failure message."""
    return [f"{s[:3]}…" for s in (*SECRETS, APP_TOKEN) if s in text]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run ``app`` on 127.0.0.1 and yield its base URL."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def engagement_body(
    flow_sid: str = FLOW_SID, sid: str = ENGAGEMENT_SID, to: str = CONTACT
) -> dict[str, Any]:
    base = f"https://studio.twilio.com/v1/Flows/{flow_sid}/Engagements/{sid}"
    return {
        "sid": sid,
        "account_sid": ACCOUNT_SID,
        "flow_sid": flow_sid,
        "contact_sid": "FC" + "e" * 32,
        "contact_channel_address": to,
        "context": {},
        "status": "active",
        "date_created": "2026-11-23T10:00:00Z",
        "date_updated": "2026-11-23T10:00:00Z",
        "url": base,
        "links": {"steps": base + "/Steps", "engagement_context": base + "/Context"},
    }


@dataclass
class FakeStudio:
    """Studio's runs (v1 Engagements and v2 Executions) with configurable latency and answers.

    Creating answers from ``answers`` first (status, JSON, text or bytes, headers), else 201
    with a good run, which it then keeps: fetch, Steps, Context, end (v2 POST
    Status=ended) and delete (v1) work on the runs it holds.
    """

    latency: float = 0.0
    # (status, JSON body | text | bytes[, headers]) answered to creates, in order
    answers: list[tuple[Any, ...]] = field(default_factory=list)
    # (status, JSON body[, headers]) answered to reads of a run, in order, before the run
    read_answers: list[tuple[Any, ...]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    # The Flows API: flow SID -> definition (friendly name "Flow <alias>" unless given as
    # "friendly_name" beside it); requests to it are kept apart from the runs' requests.
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    flow_requests: list[str] = field(default_factory=list)
    flow_latency: float = 0.0  # how long the Flows API takes to answer

    def app(self) -> web.Application:
        app = web.Application()
        for kind in ("v1/Flows/{flow}/Engagements", "v2/Flows/{flow}/Executions"):
            app.router.add_post(f"/{kind}", self._create)
            app.router.add_get(f"/{kind}", self._list)
            app.router.add_get(f"/{kind}/{{sid}}", self._fetch)
            app.router.add_post(f"/{kind}/{{sid}}", self._update)
            app.router.add_delete(f"/{kind}/{{sid}}", self._delete)
            app.router.add_get(f"/{kind}/{{sid}}/Steps", self._steps)
            app.router.add_get(f"/{kind}/{{sid}}/Context", self._context)
        app.router.add_get("/v2/Flows", self._list_flows)
        app.router.add_get("/v2/Flows/{sid}", self._fetch_flow)
        return app

    def flow_body(self, sid: str) -> dict[str, Any]:
        entry = self.flows[sid]
        return {
            "sid": sid,
            "account_sid": ACCOUNT_SID,
            "friendly_name": entry.get("friendly_name", f"Flow {sid[-4:]}"),
            "definition": entry.get("definition", entry),
            "status": entry.get("status", "published"),
            "revision": entry.get("revision", 1),
            "valid": True,
            "url": f"https://studio.twilio.com/v2/Flows/{sid}",
        }

    async def _list_flows(self, request: web.Request) -> web.Response:
        self.flow_requests.append(request.path)
        await asyncio.sleep(self.flow_latency)
        flows = [self.flow_body(sid) for sid in self.flows]
        return web.json_response({"flows": flows, "meta": {"next_page_url": None, "key": "flows"}})

    async def _fetch_flow(self, request: web.Request) -> web.Response:
        self.flow_requests.append(request.path)
        await asyncio.sleep(self.flow_latency)
        sid = request.match_info["sid"]
        return web.json_response(self.flow_body(sid)) if sid in self.flows else self._not_found()

    def _record(self, request: web.Request, form: Any = None) -> None:
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "flow": request.match_info.get("flow"),
                "form": {k: str(v) for k, v in (form or {}).items()},
                "authorization": request.headers.get("Authorization", ""),
                "user_agent": request.headers.get("User-Agent", ""),
            }
        )

    def creates(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["method"] == "POST" and r["path"].endswith(("Engagements", "Executions"))
        ]

    def _run(self, request: web.Request) -> dict[str, Any] | None:
        run = self.runs.get(request.match_info["sid"])
        return run if run and run["flow_sid"] == request.match_info["flow"] else None

    @staticmethod
    def _not_found() -> web.Response:
        body = {
            "code": 20404,
            "message": "The requested resource was not found",
            "more_info": "https://www.twilio.com/docs/errors/20404",
            "status": 404,
        }
        return web.json_response(body, status=404)

    async def _create(self, request: web.Request) -> web.Response:
        form = await request.post()
        self._record(request, form)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.answers:
            status, body, *more = self.answers.pop(0)
            headers = more[0] if more else None
            if isinstance(body, bytes):
                return web.Response(status=status, body=body, headers=headers)
            if isinstance(body, str):
                return web.Response(status=status, text=body, headers=headers)
            return web.json_response(body, status=status, headers=headers)
        sid = ENGAGEMENT_SID if ENGAGEMENT_SID not in self.runs else "FN" + secrets.token_hex(16)
        run = engagement_body(request.match_info["flow"], sid=sid, to=str(form.get("To", CONTACT)))
        run["context"] = {
            "flow": {
                "data": json.loads(str(form.get("Parameters", "{}"))),
                "channel": {"address": str(form.get("From", ""))},
            }
        }
        self.runs[sid] = run
        return web.json_response(run, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        self._record(request)
        key = "executions" if "/v2/" in request.path else "engagements"
        runs = [r for r in self.runs.values() if r["flow_sid"] == request.match_info["flow"]]
        if "status" in request.query:
            runs = [r for r in runs if r["status"] == request.query["status"]]
        return web.json_response({key: runs, "meta": {"next_page_url": None, "key": key}})

    async def _fetch(self, request: web.Request) -> web.Response:
        self._record(request)
        if self.read_answers:
            status, body, *more = self.read_answers.pop(0)
            return web.json_response(body, status=status, headers=more[0] if more else None)
        run = self._run(request)
        return web.json_response(run) if run else self._not_found()

    async def _update(self, request: web.Request) -> web.Response:
        form = await request.post()
        self._record(request, form)
        run = self._run(request)
        if run is None:
            return self._not_found()
        run["status"] = str(form["Status"])
        run["date_updated"] = "2026-11-23T10:05:00Z"
        return web.json_response(run)

    async def _delete(self, request: web.Request) -> web.Response:
        self._record(request)
        return (
            web.Response(status=204)
            if self.runs.pop(request.match_info["sid"], None)
            else self._not_found()
        )

    async def _steps(self, request: web.Request) -> web.Response:
        self._record(request)
        if self._run(request) is None:
            return self._not_found()
        return web.json_response(
            {"steps": self.steps, "meta": {"next_page_url": None, "key": "steps"}}
        )

    async def _context(self, request: web.Request) -> web.Response:
        self._record(request)
        run = self._run(request)
        if run is None:
            return self._not_found()
        return web.json_response({"context": run["context"], "flow_sid": run["flow_sid"]})


@dataclass
class FakeSlack:
    """Slack's Web API (``auth.test``) and a sink for ``response_url`` posts."""

    replies: list[dict[str, Any]] = field(default_factory=list)
    api_calls: list[str] = field(default_factory=list)
    arrivals: list[tuple[str, float]] = field(default_factory=list)  # (method, monotonic)
    # chat.postMessage / chat.update, as sent (with "method" and the form or JSON fields)
    posts: list[dict[str, Any]] = field(default_factory=list)
    refuse_channels: set[str] = field(default_factory=set)  # answer not_in_channel there
    down: set[str] = field(default_factory=set)  # methods answered by an edge's 503 page
    dead_response_urls: bool = False  # answer every response_url 404 used_url
    # files: what the bot may download (name -> bytes; files.info knows each as "F-<name>"),
    # and what it uploaded (files.uploadV2)
    files: dict[str, bytes] = field(default_factory=dict)
    file_urls: dict[str, str] = field(default_factory=dict)  # name -> a download URL to state
    file_sizes: dict[str, int] = field(default_factory=dict)  # name -> a size to state
    split_files: bool = False  # deliver each download in two pieces, a moment apart
    cut_files: dict[str, int] = field(default_factory=dict)  # name -> bytes sent before hang-up
    redirect_files: dict[str, str] = field(default_factory=dict)  # name -> 302 Location
    downloads: list[dict[str, str]] = field(default_factory=list)  # path, authorization
    # 429 + Retry-After: method -> how many of its next calls are answered so
    limited: dict[str, int] = field(default_factory=dict)
    retry_after: str = "1"
    limited_calls: list[str] = field(default_factory=list)
    auth_latency: float = 0.0  # how long auth.test takes to answer
    auth_answered: int = 0  # auth.test answers sent
    uploads: list[dict[str, Any]] = field(default_factory=list)
    lose_upload_answers: int = 0  # completeUploadExternal: take the file, drop the answer
    views: list[dict[str, Any]] = field(default_factory=list)  # views.open/update/publish
    # functions.completeSuccess / completeError: method, execution, outputs or error, token
    completions: list[dict[str, Any]] = field(default_factory=list)
    revoked_step_tokens: bool = False  # answer every completion token_revoked
    _pending_uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Socket Mode: envelopes to push to the bot, and the acks it sent back.
    envelopes: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/respond/{id}", self._respond)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files/{name}", self._download)
        app.router.add_post("/upload/{file_id}", self._upload)
        return app

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.api_calls.append(method)
        self.arrivals.append((method, time.monotonic()))
        if method in self.down:
            return web.Response(status=503, text="<html>no healthy upstream</html>")
        if method == "apps.connections.open":
            if request.headers.get("Authorization") != f"Bearer {APP_TOKEN}":
                return web.json_response({"ok": False, "error": "invalid_auth"})
            host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            return web.json_response({"ok": True, "url": f"ws://{host}:{port}/socket"})
        if method.startswith("functions.complete"):  # with the step's own token
            return await self._complete(method, request)
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.limited.get(method, 0) > 0:
            self.limited[method] -= 1
            self.limited_calls.append(method)
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": self.retry_after},
            )
        if method == "files.info":
            asked = {**request.query, **(await request.post())}
            name = str(asked.get("file", "")).removeprefix("F-")
            if name not in self.files:
                return web.json_response({"ok": False, "error": "file_not_found"})
            host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            url = self.file_urls.get(name, f"http://{host}:{port}/files/{name}")
            info = {
                "id": f"F-{name}",
                "name": name,
                "filetype": "csv" if name.endswith(".csv") else "text",
                "size": self.file_sizes.get(name, len(self.files[name])),
                "url_private_download": url,
            }
            return web.json_response({"ok": True, "file": info})
        if method in ("chat.postMessage", "chat.update"):
            return await self._chat(method, request)
        if method in ("views.open", "views.update", "views.publish"):
            if request.content_type == "application/json":
                sent = await request.json()
            else:
                sent = {k: str(v) for k, v in (await request.post()).items()}
            if isinstance(sent.get("view"), str):
                sent["view"] = json.loads(sent["view"])
            self.views.append({"method": method, **sent})
            self._arrived.set()
            return web.json_response({"ok": True, "view": {"id": "V1", "hash": "h1"}})
        if method == "files.getUploadURLExternal":
            asked = {**request.query, **(await request.post())}
            file_id = f"F{len(self._pending_uploads) + 1:08d}"
            self._pending_uploads[file_id] = {"filename": str(asked.get("filename", ""))}
            host, port = request.transport.get_extra_info("sockname")[:2]  # type: ignore[union-attr]
            url = f"http://{host}:{port}/upload/{file_id}"
            return web.json_response({"ok": True, "upload_url": url, "file_id": file_id})
        if method == "files.completeUploadExternal":
            sent = {**request.query, **(await request.post())}  # slack_sdk sends either
            form: dict[str, str] = {k: str(v) for k, v in sent.items()}
            for entry in json.loads(form.get("files", "[]")):
                upload = self._pending_uploads.get(entry["id"], {})
                self.uploads.append({**upload, **form, "title": entry.get("title", "")})
            self._arrived.set()
            if self.lose_upload_answers > 0:  # Slack took it; the answer never arrives
                self.lose_upload_answers -= 1
                assert request.transport is not None
                request.transport.abort()
            return web.json_response({"ok": True, "files": [{"id": "F1"}]})
        if method == "files.list":  # the files shared in a channel, newest first
            asked = {**request.query, **(await request.post())}
            channel = str(asked.get("channel", ""))
            shared = [
                {"id": f"F{i:08d}", "title": u.get("title", ""), "channels": [channel]}
                for i, u in enumerate(self.uploads)
                if u.get("channel_id", u.get("channels")) == channel
            ]
            return web.json_response({"ok": True, "files": shared[::-1]})
        if method == "conversations.open":  # the bot's DM with a person
            asked = {**request.query, **(await request.post())}
            user = str(asked.get("users", ""))
            return web.json_response({"ok": True, "channel": {"id": f"D{user}"}})
        if method == "auth.test":
            await asyncio.sleep(self.auth_latency)
            self.auth_answered += 1
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://t.slack.com/",
                    "team": "T",
                    "user": "engage",
                    "team_id": "T0001",
                    "user_id": "UBOT",
                    "bot_id": "BBOT",
                }
            )
        return web.json_response({"ok": False, "error": "unknown_method"})

    async def _complete(self, method: str, request: web.Request) -> web.Response:
        """A workflow step's end, as Slack takes it: only with a step token (``xwfp-``)."""
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token.startswith("xwfp-"):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.revoked_step_tokens:
            self._arrived.set()
            return web.json_response({"ok": False, "error": "token_revoked"})
        sent = {**request.query, **(await request.post())}
        done: dict[str, Any] = {
            "method": method,
            "execution": str(sent.get("function_execution_id", "")),
            "token": token,
        }
        if "outputs" in sent:
            done["outputs"] = json.loads(str(sent["outputs"]))
        if "error" in sent:
            done["error"] = str(sent["error"])
        self.completions.append(done)
        self._arrived.set()
        return web.json_response({"ok": True})

    async def wait_for_completions(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait_for(self.completions, count, within)

    async def _chat(self, method: str, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            body = await request.json()
        else:
            body = {k: str(v) for k, v in (await request.post()).items()}
        if isinstance(body.get("blocks"), str):
            body["blocks"] = json.loads(body["blocks"])
        channel = str(body.get("channel", ""))
        if channel in self.refuse_channels:
            return web.json_response({"ok": False, "error": "not_in_channel"})
        ts = str(body.get("ts") or f"{1700000000 + len(self.posts)}.000100")
        self.posts.append({"method": method, **body, "ts": ts})
        self._arrived.set()
        return web.json_response({"ok": True, "channel": channel, "ts": ts})

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.downloads.append(
            {"path": request.path, "authorization": request.headers.get("Authorization", "")}
        )
        if request.headers.get("Authorization") != f"Bearer {BOT_TOKEN}":
            return web.Response(status=403)
        name = request.match_info["name"]
        if name in self.redirect_files:
            raise web.HTTPFound(self.redirect_files[name])
        if name not in self.files:
            return web.Response(status=404)
        body = self.files[name]
        if not self.split_files and name not in self.cut_files:
            return web.Response(body=body)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        if name in self.cut_files:  # the connection ends early, as a broken network does
            await response.write(body[: self.cut_files[name]])
            await asyncio.sleep(0.05)
            request.transport.close()  # type: ignore[union-attr]
            return response
        half = len(body) // 2
        await response.write(body[:half])
        await asyncio.sleep(0.2)  # the rest arrives a moment later
        await response.write(body[half:])
        await response.write_eof()
        return response

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self._pending_uploads.setdefault(request.match_info["file_id"], {})
        upload["content"] = await request.read()  # as sent (raw, or one multipart part)
        return web.Response(text="OK")

    async def wait_for_views(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait_for(self.views, count, within)

    async def wait_for_posts(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait_for(self.posts, count, within)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json(
            {"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0APP"}}
        )

        async def push() -> None:
            while True:
                await ws.send_json(await self.envelopes.get())

        pusher = asyncio.create_task(push())
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    self.socket_acks.append(json.loads(message.data))
                    self._arrived.set()
        finally:
            pusher.cancel()
        return ws

    async def _respond(self, request: web.Request) -> web.Response:
        if self.dead_response_urls:
            return web.Response(status=404, text="used_url")
        self.replies.append(await request.json())
        self._arrived.set()
        return web.Response(text="ok")

    async def wait_for_replies(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait_for(self.replies, count, within)

    async def wait_for_socket_acks(self, count: int, within: float = 10.0) -> list[dict[str, Any]]:
        return await self._wait_for(self.socket_acks, count, within)

    async def _wait_for(
        self, items: list[dict[str, Any]], count: int, within: float
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while len(items) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"expected {count}, got {len(items)}: {items}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return items


def slash_command(
    text: str,
    *,
    response_url: str,
    user_id: str = "U0CALLER",
    command: str = "/engage",
    channel_id: str = "C0CHANNEL",
) -> str:
    """The form body Slack posts for a slash command."""
    return urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0001",
            "team_domain": "example",
            "channel_id": channel_id,
            "channel_name": "ops",
            "user_id": user_id,
            "user_name": "zeke",
            "command": command,
            "text": text,
            "api_app_id": "A0APP",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    )


def signed_headers(
    body: str, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Headers exactly as Slack signs a request (v0 HMAC-SHA256 over ``v0:ts:body``)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    assert signature is not None
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": signature,
    }


def bot_env(studio_url: str, slack_url: str, **extra: str) -> dict[str, str]:
    """The environment of a bot wired to the loopback peers."""
    env = {
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "STUDIO_FLOW_SID": FLOW_SID,
        "STUDIO_FLOWS": f"onboarding={FLOW_SID},survey={SURVEY_SID}",
        "STUDIO_FROM": SENDER,
        "STUDIO_BASE_URL": studio_url,
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "CONSENT_KEY": CONSENT_KEY,  # the opt-out list's key (required with REDIS_URL)
        "SLACK_API_URL": slack_url.rstrip("/") + "/api/",
        "HOST": "127.0.0.1",
        "FOLLOW_MINUTES": "0",  # cards as replies; the tests of following turn it on
        "QUIET_HOURS": "off",  # the tests of quiet hours turn it on, with a clock they control
    }
    env.update(extra)
    return env


# --- Prism ---------------------------------------------------------------------


def prism_available() -> bool:
    return PRISM_BIN.exists() and shutil.which("node") is not None


@contextmanager
def prism(spec: str) -> Iterator[str]:
    """Stoplight Prism serving ``spec`` from Twilio's OpenAPI specs; yields its URL.

    A missing Prism fails the test, naming the command that installs it: a contract
    test skipped is a contract not checked.
    """
    spec_path = SPEC_DIR / spec
    if not prism_available():
        pytest.fail(f"Prism ({PRISM_BIN}) is missing: run `bash scripts/test` (it installs it)")
    if not spec_path.exists():
        pytest.fail(f"Twilio's spec {spec_path} is missing: set TWILIO_OAI_DIR or add shared/")
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in finally, after Prism
    proc = subprocess.Popen(
        [
            str(PRISM_BIN),
            "mock",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--errors",
            str(spec_path),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"Prism exited early:\n{log.read()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("Prism did not start within 60 s")
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def json_form_parameters(form: dict[str, str]) -> Any:
    return json.loads(form["Parameters"])


# --- Redis ---------------------------------------------------------------------


@dataclass
class RedisServer:
    url: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@contextmanager
def redis_server(persist: Path | None = None, port: int | None = None) -> Iterator[RedisServer]:
    """A real redis-server (Debian's package) on 127.0.0.1, empty, not persisted; with
    ``persist``, its append-only file kept in that folder (a server started again on it
    finds what the last one wrote), on ``port`` if given.

    A missing redis-server fails the test, naming the command that installs it.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run `bash scripts/test` (it installs Debian's)")
    port = port or free_port()
    kept = ["--dir", str(persist), "--appendonly", "yes", "--appendfsync", "always"]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        + (kept if persist else ["--appendonly", "no"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(f"redis://127.0.0.1:{port}/0", proc)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("redis-server did not start")
                time.sleep(0.05)
        yield server
    finally:
        server.stop()
