"""The Event Streams signature check agrees with twilio-python's RequestValidator, and the
delivery parser finds the runs (pure)."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from bot.runs.event_streams import runs_in, verify
from tests.budget import examples
from tests.peers import AUTH_TOKEN, ENGAGEMENT_SID

URLS = st.sampled_from(
    [
        "https://engage.example.com/twilio/events",
        "https://engage.example.com:443/twilio/events",
        "http://127.0.0.1:8080/twilio/events",
        "https://x.herokuapp.com/twilio/events?sink=1",
    ]
)


def with_hash(url: str, body: bytes) -> str:
    joiner = "&" if "?" in url else "?"
    return f"{url}{joiner}bodySHA256={hashlib.sha256(body).hexdigest()}"


@settings(max_examples=examples(200), deadline=None)
@given(
    URLS,
    st.binary(max_size=300).map(lambda b: b.hex().encode()),
    st.sampled_from([AUTH_TOKEN, "other"]),
)
def test_we_and_twilio_python_agree(url: str, body: bytes, signer: str) -> None:
    full = with_hash(url, body)
    signature = RequestValidator(signer).compute_signature(full, {})
    ours = verify(full, body, signature, AUTH_TOKEN)
    theirs = RequestValidator(AUTH_TOKEN).validate(full, body.decode(), signature)
    assert (ours == "body") == theirs == (signer == AUTH_TOKEN)
    assert ours in ("body", None)


@settings(max_examples=examples(200), deadline=None)
@given(
    URLS,
    st.binary(max_size=300).map(lambda b: b.hex().encode()),
    st.sampled_from([AUTH_TOKEN, "other"]),
)
def test_without_a_body_hash_we_accept_what_twilio_python_accepts_as_url_only(
    url: str, body: bytes, signer: str
) -> None:
    """Twilio's Event Streams examples validate a JSON delivery whose URL has no
    ``bodySHA256`` over the URL alone; such a delivery covers the URL, not the body."""
    signature = RequestValidator(signer).compute_signature(url, {})
    ours = verify(url, body, signature, AUTH_TOKEN)
    theirs = RequestValidator(AUTH_TOKEN).validate(url, {}, signature)
    assert (ours == "url") == theirs == (signer == AUTH_TOKEN)
    assert ours in ("url", None)


def test_a_body_that_does_not_match_its_hash_is_refused_by_both() -> None:
    body = b'[{"type": "x"}]'
    full = with_hash("https://e.example.com/twilio/events", body)
    signature = RequestValidator(AUTH_TOKEN).compute_signature(full, {})
    assert verify(full, body + b" ", signature, AUTH_TOKEN) is None
    assert not RequestValidator(AUTH_TOKEN).validate(full, (body + b" ").decode(), signature)
    assert verify("https://e.example.com/twilio/events", body, signature, AUTH_TOKEN) is None


def event(kind: str, data: object, moment: str = "2026-11-24T07:00:00Z") -> dict[str, object]:
    return {"type": kind, "id": "EZ1", "time": moment, "data": data}


@pytest.mark.parametrize(
    ("body", "runs", "stale"),
    [
        (
            [event("com.twilio.studio.flow.step.ended", {"execution_sid": ENGAGEMENT_SID})],
            [("EZ1", ENGAGEMENT_SID)],
            False,
        ),
        (
            [
                event(
                    "com.twilio.studio.flow.execution.ended",
                    {"sid": ENGAGEMENT_SID.upper().replace("FN", "FN", 1)},
                )
            ],
            [("EZ1", ENGAGEMENT_SID)],
            False,
        ),
        (
            [event("com.twilio.messaging.message.sent", {"execution_sid": ENGAGEMENT_SID})],
            [],
            False,
        ),
        ([event("com.twilio.studio.flow.step.ended", {"execution_sid": "nope"})], [], False),
        ([event("com.twilio.studio.flow.step.ended", {}, "2026-11-24T04:00:00Z")], [], True),
        ([], [], False),
    ],
)
def test_runs_in_a_delivery(body: object, runs: list[tuple[str, str]], stale: bool) -> None:
    now = 1795503600.0  # 2026-11-24T07:00:00Z
    assert runs_in(json.dumps(body).encode(), now) == (runs, stale)


@given(st.binary(max_size=200))
def test_runs_in_never_raises(body: bytes) -> None:
    found = runs_in(body, time.time())
    if found is not None:  # random bytes are nearly never a delivery; when one is, it reads
        assert isinstance(found[0], list)
