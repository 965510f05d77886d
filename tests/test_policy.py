from __future__ import annotations

import pytest

from bot.domain.command import EngageCommand
from bot.domain.phone import mask
from bot.domain.phone_facts import facts
from bot.domain.policy import Access, Policy, destination_refusal, refusal
from tests.peers import FLOW_SID, SURVEY_SID


def command(
    to: str = "+16175551212", flow: str = FLOW_SID, alias: str | None = None
) -> EngageCommand:
    return EngageCommand(flow, alias, to, "+16175550100", {})


def test_unset_rules_let_everyone_in() -> None:
    assert refusal(Policy(), command(), "U1", "C1") is None


@pytest.mark.parametrize(
    ("policy", "user", "channel", "rule"),
    [
        (Policy(everywhere=Access(users=frozenset({"U1"}))), "U2", "C1", "ALLOWED_SLACK_USERS"),
        (
            Policy(everywhere=Access(channels=frozenset({"C1"}))),
            "U1",
            "C2",
            "ALLOWED_SLACK_CHANNELS",
        ),
        (
            Policy(per_flow={SURVEY_SID: Access(users=frozenset({"U1"}))}),
            "U2",
            "C1",
            "STUDIO_FLOWS survey users",
        ),
        (
            Policy(per_flow={SURVEY_SID: Access(channels=frozenset({"C1"}))}),
            "U1",
            "C2",
            "STUDIO_FLOWS survey channels",
        ),
        # The flow's own list cannot widen the global one.
        (
            Policy(
                everywhere=Access(users=frozenset({"U1"})),
                per_flow={SURVEY_SID: Access(users=frozenset({"U2"}))},
            ),
            "U2",
            "C1",
            "ALLOWED_SLACK_USERS",
        ),
    ],
)
def test_who_and_from_where(policy: Policy, user: str, channel: str, rule: str) -> None:
    reason = refusal(policy, command(flow=SURVEY_SID, alias="survey"), user, channel)
    assert reason is not None
    assert rule in reason


def test_allowed_combinations_pass() -> None:
    policy = Policy(
        everywhere=Access(users=frozenset({"U1", "U2"}), channels=frozenset({"C1"})),
        per_flow={SURVEY_SID: Access(users=frozenset({"U1"}))},
    )
    assert refusal(policy, command(flow=SURVEY_SID), "U1", "C1") is None
    assert refusal(policy, command(), "U2", "C1") is None  # the narrowing is only for survey


@pytest.mark.parametrize(
    ("to", "policy", "words"),
    [
        ("+4930123456", Policy(countries=frozenset({"US", "CA"})), "numbers in DE are not allowed"),
        ("whatsapp:+4930123456", Policy(countries=frozenset({"US"})), "ALLOWED_COUNTRIES=US"),
        ("+19005551234", Policy(), "premium-rate"),
        ("+3278791234", Policy(), "shared-cost"),
        ("+33899123456", Policy(countries=frozenset({"FR"})), "premium-rate"),
    ],
)
def test_where(to: str, policy: Policy, words: str) -> None:
    reason = destination_refusal(policy, command(to))
    assert reason is not None
    assert words in reason


def test_premium_numbers_when_explicitly_allowed() -> None:
    assert destination_refusal(Policy(allow_costly=True), command("+19005551234")) is None
    assert destination_refusal(Policy(countries=frozenset({"US"})), command()) is None


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("+16175551212", "+1 617-•••-1212"),
        ("whatsapp:+16175551212", "whatsapp:+1 617-•••-1212"),
        ("+447911123456", "+44 7911 ••3456"),
        ("+4930123456", "+49 30 ••3456"),
        ("+33612345678", "+33 6 •• •• 56 78"),
    ],
)
def test_mask(address: str, masked: str) -> None:
    assert mask(address) == masked


def test_facts() -> None:
    assert facts("+16175551212").country == "US"
    assert facts("+16175551212").costly is None
    assert facts("+19005551234").costly == "a premium-rate number"
