"""``python -m bot`` as a PaaS runs it: a real process on $PORT, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

import httpx

from tests.peers import (
    APP_TOKEN,
    BOT_TOKEN,
    FLOW_SID,
    FakeSlack,
    FakeStudio,
    bot_env,
    free_port,
    redis_server,
    serve,
    signed_headers,
    slash_command,
)


async def wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"the bot exited with {proc.returncode}")
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the bot did not become healthy")


async def start_bot(env: dict[str, str], merge_stderr: bool = True) -> asyncio.subprocess.Process:
    """``python -m bot`` with ``env`` and none of this machine's bot settings."""
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "STUDIO_", "SLACK_"))
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
    )


@asynccontextmanager
async def running_bot(env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """The bot as a process; killed if a test leaves it running."""
    proc = await start_bot(env)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def sigterm(proc: asyncio.subprocess.Process) -> str:
    """Send SIGTERM as a PaaS does; return everything the process printed."""
    proc.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return output.decode()


async def test_sigterm_lets_engagements_in_flight_finish_and_report() -> None:
    studio, slack = FakeStudio(latency=2.0), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        port = free_port()
        env = bot_env(studio_url, slack_url, PORT=str(port), SHUTDOWN_GRACE_SECONDS="15")
        url = f"http://127.0.0.1:{port}"
        async with running_bot(env) as proc:
            await wait_healthy(url, proc)
            async with httpx.AsyncClient() as http:
                for i in range(3):
                    body = slash_command(f"+1617555121{i}", response_url=f"{slack_url}/respond/{i}")
                    ack = await http.post(
                        f"{url}/slack/events", content=body, headers=signed_headers(body)
                    )
                    assert ack.status_code == 200
                    assert "Starting" in ack.json()["text"]
            assert len(slack.replies) == 0
            log = await sigterm(proc)
        assert proc.returncode == 0, log
        assert len(slack.replies) == 3, log
        assert all(r["response_type"] == "in_channel" for r in slack.replies)
        assert len(studio.requests) == 3
        assert "waiting up to" in log
        assert BOT_TOKEN not in log


async def test_missing_configuration_stops_start_up_with_status_2() -> None:
    proc = await start_bot({"SLACK_BOT_TOKEN": BOT_TOKEN}, merge_stderr=False)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    text = err.decode()
    for name in ["TWILIO_ACCOUNT_SID", "SLACK_SIGNING_SECRET", "STUDIO_FROM", ".env.example"]:
        assert name in text
    assert "Traceback" not in text
    assert BOT_TOKEN not in text + out.decode()


async def test_socket_mode_answers_a_command_and_stops_on_sigterm() -> None:
    studio, slack = FakeStudio(), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        env = bot_env(studio_url, slack_url, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="")
        async with running_bot(env) as proc:
            payload = dict(
                parse_qsl(
                    slash_command(
                        "+16175551212 first_name=Zeke note=payload",
                        response_url=f"{slack_url}/respond/1",
                    )
                )
            )
            await slack.envelopes.put(
                {
                    "envelope_id": "env-1",
                    "type": "slash_commands",
                    "accepts_response_payload": True,
                    "payload": payload,
                }
            )
            (ack,) = await slack.wait_for_socket_acks(1, within=30)
            assert ack["envelope_id"] == "env-1"
            assert "Starting" in ack["payload"]["text"]
            (reply,) = await slack.wait_for_replies(1)
            assert reply["response_type"] == "in_channel"
            assert studio.requests[0]["form"]["To"] == "+16175551212"
            assert '"note":"payload"' in studio.requests[0]["form"]["Parameters"]
            assert "apps.connections.open" in slack.api_calls
            log = await sigterm(proc)
        assert proc.returncode == 0, log
        assert APP_TOKEN not in log


async def test_a_port_in_use_is_a_clear_error() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = bot_env("http://127.0.0.1:9", "http://127.0.0.1:9", PORT=str(port))
        proc = await start_bot(env)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in out.decode()
    assert "Traceback" not in out.decode()


async def test_two_bot_processes_share_limits_and_the_duplicate_window_in_redis() -> None:
    studio, slack = FakeStudio(), FakeSlack()
    with redis_server() as redis:
        async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
            ports = [free_port(), free_port()]
            envs = [
                bot_env(
                    studio_url,
                    slack_url,
                    PORT=str(port),
                    REDIS_URL=redis.url,
                    USER_RATE_LIMIT="3/minute",
                )
                for port in ports
            ]
            async with running_bot(envs[0]) as a, running_bot(envs[1]) as b:
                urls = [f"http://127.0.0.1:{port}" for port in ports]
                await wait_healthy(urls[0], a)
                await wait_healthy(urls[1], b)

                async def command(url: str, text: str) -> str:
                    body = slash_command(text, response_url=f"{slack_url}/respond/1")
                    async with httpx.AsyncClient() as http:
                        response = await http.post(
                            f"{url}/slack/events", content=body, headers=signed_headers(body)
                        )
                    return str(response.json()["text"])

                assert "Starting" in await command(urls[0], "+16175551210")
                assert "Start it again?" in await command(urls[1], "+16175551210")
                assert "Starting" in await command(urls[1], "+16175551211")
                assert "USER_RATE_LIMIT" in await command(urls[0], "+16175551212")
                await slack.wait_for_replies(2)
                await sigterm(a)
                await sigterm(b)
    assert len(studio.requests) == 2


async def test_during_the_drain_the_listener_stays_open_and_says_so() -> None:
    """SIGTERM with a slow engagement in flight: while it finishes, a new command is told
    to retry (not refused at the socket), /readyz answers 503 and /healthz (alive) 200."""
    studio, slack = FakeStudio(latency=3.0), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        port = free_port()
        env = bot_env(studio_url, slack_url, PORT=str(port), SHUTDOWN_GRACE_SECONDS="15")
        url = f"http://127.0.0.1:{port}"
        async with running_bot(env) as proc, httpx.AsyncClient() as http:
            await wait_healthy(url, proc)
            body = slash_command("+16175551212", response_url=f"{slack_url}/respond/1")
            ack = await http.post(f"{url}/slack/events", content=body, headers=signed_headers(body))
            assert "Starting" in ack.json()["text"]
            proc.send_signal(signal.SIGTERM)
            health = await http.get(f"{url}/readyz")
            while health.status_code == 200:  # until the signal is handled
                health = await http.get(f"{url}/readyz")
            alive = await http.get(f"{url}/healthz")
            late_body = slash_command("+16175551213", response_url=f"{slack_url}/respond/2")
            late = await http.post(
                f"{url}/slack/events", content=late_body, headers=signed_headers(late_body)
            )
            output, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
        assert health.status_code == 503
        assert health.json()["ok"] is False
        assert health.json()["checks"]["accepting"] is False
        assert alive.status_code == 200
        assert late.status_code == 200
        assert "restarting" in late.json()["text"]
        assert proc.returncode == 0, output.decode()
        (reply,) = slack.replies
        assert reply["response_type"] == "in_channel"  # the one in flight still reported
        assert len(studio.requests) == 1


async def test_a_redis_url_with_an_unencoded_password_exits_2_naming_it() -> None:
    env = bot_env(
        "http://127.0.0.1:9", "http://127.0.0.1:9", REDIS_URL="redis://:Zk/Qy#x@127.0.0.1:6379/0"
    )
    proc = await start_bot(env, merge_stderr=False)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2
    text = out.decode() + err.decode()
    assert "REDIS_URL" in text
    assert "URL-encoded" in text
    assert "Zk" not in text
    assert "Traceback" not in text


async def test_socket_mode_takes_the_form_and_answers_errors_on_their_field() -> None:
    """The form's submission over Socket Mode: the same answer as over HTTP."""
    studio, slack = FakeStudio(), FakeSlack()
    async with serve(studio.app()) as studio_url, serve(slack.app()) as slack_url:
        env = bot_env(studio_url, slack_url, SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET="")
        async with running_bot(env) as proc:
            values = {
                "flow": {
                    "form_flow": {"type": "static_select", "selected_option": {"value": FLOW_SID}}
                },
                "contact": {"contact": {"type": "plain_text_input", "value": "12"}},
            }
            payload = {
                "type": "view_submission",
                "team": {"id": "T0001"},
                "user": {"id": "U0CALLER"},
                "view": {
                    "type": "modal",
                    "callback_id": "engage_form",
                    "state": {"values": values},
                },
            }
            await slack.envelopes.put(
                {
                    "envelope_id": "env-form",
                    "type": "interactive",
                    "accepts_response_payload": True,
                    "payload": payload,
                }
            )
            (ack,) = await slack.wait_for_socket_acks(1, within=30)
            await sigterm(proc)
    assert ack["envelope_id"] == "env-form"
    assert ack["payload"]["response_action"] == "errors"
    assert "country code" in ack["payload"]["errors"]["contact"]
    assert studio.creates() == []
