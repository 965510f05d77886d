"""What Slack delivers reaches the listeners, and what Slack did not send costs little.

Signed requests over real HTTP to the running server (issues 9.1 and 17.3), and the
pure body parser on its own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import BadRequest
from bot.slack.http import MAX_BODY_BYTES, parse_body
from tests.harness import Harness, block_action, harness
from tests.peers import FakeStudio, signed_headers, slash_command


@pytest.fixture
async def h(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Harness]:
    async with harness(monkeypatch, FakeStudio()) as running:
        yield running


def command_body(text: str, h: Harness, **fields: str) -> str:
    body = dict(httpx.QueryParams(slash_command(text, response_url=f"{h.slack_url}/respond/1")))
    body.update(fields)
    return urlencode(body)


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("+16175551212 note=payload", {}),
        ("+16175551212 payload=x", {}),
        ("+16175551212 payload.kind=payload", {}),
        ("+16175551212", {"channel_name": "payload-ops"}),
        ("+16175551212", {"user_name": "payload.person"}),
    ],
)
async def test_the_word_payload_anywhere_in_a_command_is_just_a_word(
    h: Harness, text: str, fields: dict[str, str]
) -> None:
    response, _ = await h.post(command_body(text, h, **fields))
    assert response.status_code == 200
    assert "Starting" in response.json()["text"]
    (reply,) = await h.slack.wait_for_replies(1)
    assert reply["response_type"] == "in_channel"
    (create,) = h.studio.creates()
    parameters = json.loads(create["form"].get("Parameters", "{}"))
    if "payload" in text:
        assert "payload" in json.dumps(parameters)


async def test_a_button_click_still_parses_as_a_payload(h: Harness) -> None:
    await h.command("+16175551212")
    (card,) = await h.slack.wait_for_replies(1)
    actions = next(b for b in card["blocks"] if b["type"] == "actions")
    refresh = next(b for b in actions["elements"] if b["action_id"] == "engage_refresh")
    click = block_action(
        "engage_refresh", refresh["value"], response_url=f"{h.slack_url}/respond/2"
    )
    response, _ = await h.post(click)
    assert response.status_code == 200
    replies = await h.slack.wait_for_replies(2)
    assert replies[1]["replace_original"] is True


async def test_an_unsigned_body_is_refused_before_it_is_read(h: Harness) -> None:
    """Headers that announce a megabyte, and no body at all: the 401 comes anyway, so
    an unsigned body costs the bot nothing to refuse (no read, no parse)."""
    host, port = h.bot_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /slack/events HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: 1000000\r\n\r\n"
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), timeout=5)
    writer.close()
    assert status.startswith(b"HTTP/1.1 401"), status
    assert h.studio.requests == []


async def test_a_signed_body_over_the_bound_is_413(h: Harness) -> None:
    body = command_body("+16175551212", h, note="x" * MAX_BODY_BYTES)
    response, _ = await h.post(body)
    assert response.status_code == 413
    assert h.studio.requests == []


@pytest.mark.parametrize(
    "body",
    [
        "payload=%7Bnot-json",
        "payload=%5B1%2C2%5D",
        "just-a-word",
    ],
)
async def test_a_malformed_signed_body_is_400_with_one_log_line(
    h: Harness, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    response, _ = await h.post(body)
    assert response.status_code == 400
    lines = [r for r in caplog.records if "refused a signed request" in r.getMessage()]
    assert len(lines) == 1
    assert "Traceback" not in caplog.text
    assert h.studio.requests == []


async def test_a_malformed_unsigned_body_is_only_401(h: Harness) -> None:
    response, _ = await h.post(
        "payload=%7Bnot-json", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 401


async def test_json_bodies_are_parsed_after_the_signature(h: Harness) -> None:
    body = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "t"})
    headers = signed_headers(body) | {"Content-Type": "application/json"}
    response, _ = await h.post(body, headers)
    assert response.status_code == 200
    assert "c-123" in response.text


# --- the parser alone ------------------------------------------------------------


def test_parse_body_forms_and_payloads() -> None:
    form = "command=%2Fengage&text=note%3Dpayload&channel_name=payload-ops"
    assert parse_body(form, "application/x-www-form-urlencoded") == {
        "command": "/engage",
        "text": "note=payload",
        "channel_name": "payload-ops",
    }
    payload = urlencode({"payload": json.dumps({"type": "block_actions", "x": "payload"})})
    assert parse_body(payload, "application/x-www-form-urlencoded") == {
        "type": "block_actions",
        "x": "payload",
    }
    assert parse_body('{"type": "event_callback"}', "application/json") == {
        "type": "event_callback"
    }
    assert parse_body("", "application/x-www-form-urlencoded") == {}


@given(st.text(max_size=200), st.sampled_from(["application/json", "text/plain", None]))
def test_parse_body_returns_an_object_or_says_400(body: str, content_type: str | None) -> None:
    status = 0
    try:
        parsed = parse_body(body, content_type)
    except BadRequest as exc:
        status, parsed = exc.status, {}
    assert isinstance(parsed, dict)
    assert status in (0, 400)  # an object, or 400
