"""Consent's pure rules (issue 35): opt-out words, Twilio's 21610 in a run's context, the
keyed hash, caps, the commands' grammar and the settings; and the list and the caps on
this process's memory (the same on a real Redis: tests/test_consent_e2e.py)."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.app.config import load_settings
from bot.app.studio_flows import parse_flows
from bot.domain.command import Defaults, OptInCommand, OptOutCommand, OptOutsCommand
from bot.domain.consent import (
    DEFAULT_OPT_OUT_WORDS,
    Cap,
    Keyer,
    OptOut,
    Suppressed,
    error_codes,
    is_opt_out,
    opt_out_in,
    parse_cap,
    parse_words,
)
from bot.domain.errors import CommandError, ConfigError
from bot.domain.grammar import parse
from bot.domain.text import suppressed_text
from bot.state.admission import ConsentCheck, cap_again
from bot.state.memory import MemoryStore
from tests.budget import examples
from tests.test_config import GOOD, set_env

WORDS = frozenset(DEFAULT_OPT_OUT_WORDS)
FLOW = "FW" + "a" * 32
OTHER = "FW" + "b" * 32


# --- opt-out words --------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        "STOP",
        "stop",
        " Stop ",
        "stop all",
        "S T O P",
        "Unsubscribe\n",
        "quit",
        "End",
        "cancel",
        "STOPALL",
    ],
)
def test_twilios_standard_words_opt_out_whatever_the_case_and_spaces(answer: str) -> None:
    assert is_opt_out(answer, WORDS)


@pytest.mark.parametrize(
    "answer", ["STOP.", "stop please", "no", "", "   ", "STOPP", "unsubscribed", "yes"]
)
def test_other_answers_do_not(answer: str) -> None:
    assert not is_opt_out(answer, WORDS)


@given(
    word=st.sampled_from(DEFAULT_OPT_OUT_WORDS),
    cases=st.lists(st.booleans(), min_size=11, max_size=11),
    spaces=st.lists(st.sampled_from(["", " ", "\t", "\n"]), min_size=12, max_size=12),
)
@settings(max_examples=examples(300))
def test_any_casing_and_spacing_of_a_word_opts_out(
    word: str, cases: list[bool], spaces: list[str]
) -> None:
    typed = (
        "".join(spaces[i] + (c.lower() if cases[i] else c) for i, c in enumerate(word)) + spaces[-1]
    )
    assert is_opt_out(typed, WORDS)


@given(st.text(max_size=20))
@settings(max_examples=examples(300))
def test_only_the_words_opt_out(text: str) -> None:
    assert is_opt_out(text, WORDS) == ("".join(text.split()).upper() in WORDS)


def test_opt_out_words_may_be_changed() -> None:
    words = parse_words("stop, arrêt ,  Baja")
    assert words == frozenset({"STOP", "ARRÊT", "BAJA"})
    assert is_opt_out("arrêt", words)
    assert not is_opt_out("quit", words)
    with pytest.raises(ValueError, match="comma-separated"):
        parse_words(" , ")


# --- what an ended run says ---------------------------------------------------------


def test_an_opt_out_answer_is_found_among_the_answers() -> None:
    assert opt_out_in({"reply": "yes", "confirm": " stop "}, {}, WORDS) == ("answer", "STOP")
    assert opt_out_in({"reply": "yes"}, {}, WORDS) is None


@pytest.mark.parametrize(
    "context",
    [
        {"widgets": {"send": {"ErrorCode": 21610}}},
        {"widgets": {"send": {"outbound": {"error_code": "21610"}}}},
        {"steps": [{"errorCode": 21610}]},
    ],
)
def test_twilios_21610_in_a_runs_context_opts_out(context: object) -> None:
    assert opt_out_in({}, context, WORDS) == ("21610", "")


def test_other_codes_and_lookalikes_do_not() -> None:
    assert error_codes(
        {"a": {"ErrorCode": 30003}, "b": {"code": 21610}, "c": {"error_code": True}}
    ) == {30003}
    assert opt_out_in({}, {"flow": {"variables": {"count": 21610}}}, WORDS) is None
    deep: object = {"ErrorCode": 21610}
    for _ in range(40):  # past the depth read
        deep = {"x": deep}
    assert error_codes(deep) == set()


# --- the keyed hash ------------------------------------------------------------------


def test_the_key_is_keyed_short_and_the_same_on_every_channel() -> None:
    secret = b"s" * 32
    key = Keyer(secret).key("+16175551212")
    assert len(key) == 32
    assert int(key, 16) >= 0
    assert key == Keyer(secret).key("whatsapp:+16175551212")
    assert key != Keyer(b"t" * 32).key("+16175551212")
    assert key != Keyer(secret).key("+16175551213")
    assert "6175551212" not in key


# --- caps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cap"),
    [
        ("2/24h", Cap(2, 86400)),
        ("1/7d", Cap(1, 7 * 86400)),
        ("3/day", Cap(3, 86400)),
        ("1 per week", Cap(1, 7 * 86400)),
        (" 5 / 90m ", Cap(5, 5400)),
        ("4/2 days", Cap(4, 2 * 86400)),
    ],
)
def test_caps_read_as_written(text: str, cap: Cap) -> None:
    assert parse_cap(text) == cap


@pytest.mark.parametrize("text", ["", "2", "two/day", "0/24h", "2/30s", "2/fortnight", "-1/day"])
def test_a_cap_that_is_not_one_is_refused_without_echo(text: str) -> None:
    with pytest.raises(ValueError, match="2/24h") as raised:
        parse_cap(text)
    assert str(raised.value) in (  # fixed words: nothing typed is echoed
        "must be a cap such as 2/24h, 1/7d or 3/day",
        "must allow at least 1 start in at least a minute, e.g. 2/24h",
    )


def test_cap_again_is_when_enough_starts_leave_the_window() -> None:
    now = 10_000.0
    starts = [
        (f"{FLOW}|U1|a", now - 3000),
        (f"{OTHER}|U1|b", now - 2000),
        (f"{FLOW}|U2|c", now - 1000),
    ]
    assert cap_again(((3, 3600.0, ""),), starts, now) == now - 3000 + 3600
    assert cap_again(((2, 3600.0, ""),), starts, now) == now - 2000 + 3600
    assert cap_again(((2, 3600.0, f"{FLOW}|"),), starts, now) == now - 3000 + 3600
    assert cap_again(((3, 3600.0, f"{FLOW}|"),), starts, now) == 0.0
    assert cap_again(((1, 1500.0, ""),), starts, now) == now - 1000 + 1500
    assert cap_again((), starts, now) == 0.0


# --- commands -------------------------------------------------------------------------


DEFAULTS = Defaults(region="US", flow_sid=FLOW)


def test_the_consent_commands_parse() -> None:
    assert parse("optout +16175551212", DEFAULTS) == OptOutCommand("+16175551212")
    assert parse("optout (617) 555-1212 asked by phone", DEFAULTS) == OptOutCommand(
        "+16175551212", "asked by phone"
    )
    assert parse("OPTIN +16175551212 signed the form", DEFAULTS) == OptInCommand(
        "+16175551212", "signed the form"
    )
    assert parse("optouts", DEFAULTS) == OptOutsCommand()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("optin +16175551212", "say why"),
        ("optout", "give the contact's number"),
        ("optout bob", "not a phone number"),
        ("optouts all", "takes nothing more"),
        ("optout +16175551212 " + "x" * 201, "longer than 200"),
    ],
)
def test_a_consent_command_without_what_it_needs_says_so(text: str, problem: str) -> None:
    with pytest.raises(CommandError, match=problem):
        parse(text, DEFAULTS)


def test_the_consent_verbs_are_not_flow_aliases() -> None:
    with pytest.raises(ValueError, match="reserved"):
        parse_flows(f"optout={FLOW}")


# --- settings -----------------------------------------------------------------------


def test_a_flow_may_have_its_own_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_flows(f"survey={FLOW};cap=1/7d")["survey"].cap == Cap(1, 7 * 86400)
    with pytest.raises(ValueError, match="flow 'survey' cap: must be a cap"):
        parse_flows(f"survey={FLOW};cap=often")
    set_env(monkeypatch, GOOD | {"STUDIO_FLOWS": f"survey={FLOW};cap=1/7d", "CONTACT_CAP": "2/24h"})
    loaded = load_settings(need_slack=True)
    assert loaded.contact_cap == Cap(2, 86400)
    assert loaded.flow_caps == {FLOW: Cap(1, 7 * 86400)}


def test_consent_settings_say_what_is_wrong(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        GOOD | {"CONTACT_CAP": "lots", "OPT_OUT_WORDS": ",", "CONSENT_KEY": "short"},
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(need_slack=True)
    said = str(raised.value)
    assert "CONTACT_CAP: must be a cap such as 2/24h" in said
    assert "OPT_OUT_WORDS: must be comma-separated words" in said
    assert "CONSENT_KEY: must be at least 32 characters" in said
    assert "short" not in said


def test_redis_needs_a_consent_key(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in GOOD.items() if k != "CONSENT_KEY"}
    set_env(monkeypatch, env | {"REDIS_URL": "redis://127.0.0.1:6379/0"})
    with pytest.raises(ConfigError, match="CONSENT_KEY: required with REDIS_URL"):
        load_settings(need_slack=True)
    monkeypatch.delenv("REDIS_URL")
    loaded = load_settings(need_slack=True)  # without Redis: a key for this process
    assert loaded.consent_key is None
    assert len(loaded.consent_secret) == 32
    assert loaded.opt_out_words == WORDS
    assert loaded.contact_cap is None


def test_the_consent_key_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "k" * 40
    set_env(monkeypatch, GOOD | {"CONSENT_KEY": key})
    loaded = load_settings(need_slack=True)
    assert key not in repr(loaded)
    assert key not in str(loaded.model_dump())
    assert loaded.consent_secret == key.encode()


# --- words for people ----------------------------------------------------------------


def test_a_refusal_says_when_and_how_the_contact_opted_out() -> None:
    entry = OptOut(at=1_764_770_000.0, source="answer", contact="+1 617-•••-1212", reason="STOP")
    text = suppressed_text(Suppressed("opted_out", optout=entry), "+1 617-555-1212")
    assert "opted out 2025-12-03 13:53 UTC: replied with an opt-out word (STOP)" in text
    assert "/engage optin" in text


def test_a_capped_refusal_says_when_the_contact_may_be_reached_again() -> None:
    why = Suppressed("capped", until=1_764_777_200.0, cap="2 per 1 d across flows (CONTACT_CAP)")
    text = suppressed_text(why, "+1 617-555-1212", now=1_764_770_000.0)
    assert "(2 per 1 d across flows (CONTACT_CAP))" in text
    assert "in 2 h, from 2025-12-03 15:53 UTC" in text


# --- the memory store ------------------------------------------------------------------


def _check(
    contact: str, caps: tuple[tuple[int, float, str], ...] = (), hold: str = ""
) -> ConsentCheck:
    return ConsentCheck("optouts", contact, f"reach:{contact}" if caps else "", caps, hold)


async def test_memory_keeps_the_list_with_counts_and_latest() -> None:
    store = MemoryStore()
    entry = json.dumps({"source": "command"})
    assert await store.suppress("optouts", "k1", entry, "command", 2)
    assert not await store.suppress("optouts", "k1", json.dumps({"source": "file"}), "file", 2)
    assert await store.suppress("optouts", "k2", json.dumps({"source": "file"}), "file", 2)
    assert await store.suppress("optouts", "k3", json.dumps({"source": "file"}), "file", 2)
    assert await store.hget("optouts", "k1") == entry  # the first entry is kept
    assert await store.hgetall("optouts:sources") == {"command": "1", "file": "2"}
    assert await store.zrange("optouts:latest", 0, float("inf")) == ["k2", "k3"]
    assert await store.unsuppress("optouts", "k1") == entry
    assert await store.unsuppress("optouts", "k1") is None
    assert await store.hgetall("optouts:sources") == {"file": "2"}


async def test_memory_admits_by_the_list_and_the_caps_and_holds_once() -> None:
    store = MemoryStore()
    cap = ((1, 3600.0, ""),)
    first = await store.admit("uses:u", 10, 60, "dup:1", 60, _check("k", cap, f"{FLOW}|U1|a"))
    assert first.claimed
    assert not first.optout
    assert not first.again
    capped = await store.admit("uses:u", 10, 60, None, 60, _check("k", cap, f"{FLOW}|U1|b"))
    assert capped.again > time.time() + 3500
    assert not capped.claimed
    await store.unhold("reach:k", f"{FLOW}|U1|")
    assert (await store.admit("uses:u", 10, 60, None, 60, _check("k", cap, "x"))).claimed
    await store.suppress("optouts", "k", json.dumps({"source": "command"}), "command", 5)
    refused = await store.admit("uses:u", 10, 60, "dup:2", 60, _check("k", cap, "y"))
    assert refused.optout is not None
    assert not refused.claimed
    assert await store.get("dup:2") is None  # nothing claimed by a refused start
    listed = await store.screen("optouts", ["other", "k"], "reach:", cap)
    assert listed == {1: "o" + json.dumps({"source": "command"})}
