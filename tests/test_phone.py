from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.errors import PhoneError
from bot.domain.phone import (
    channel_mismatch,
    looks_like_phone,
    mask,
    mask_digits,
    parse_address,
    parse_sender,
    pretty,
    unwrap_slack_tel,
)


@pytest.mark.parametrize(
    ("typed", "region", "expected"),
    [
        ("+16175551212", None, "+16175551212"),
        ("+1 617 555 1212", None, "+16175551212"),
        ("+1 (617) 555-1212", None, "+16175551212"),
        ("+1.617.555.1212", None, "+16175551212"),
        ("+1 617\u2013555\u20131212", None, "+16175551212"),  # en dashes from autocorrect
        ("  +16175551212  ", None, "+16175551212"),
        ("617-555-1212", "US", "+16175551212"),
        ("(617) 555-1212", "us", "+16175551212"),
        ("617.555.1212", "US", "+16175551212"),
        ("07911 123456", "GB", "+447911123456"),
        ("+44 7911 123456", "US", "+447911123456"),  # a + number ignores the default region
        ("whatsapp:+16175551212", None, "whatsapp:+16175551212"),
        ("WhatsApp:+1 617 555 1212", None, "whatsapp:+16175551212"),
        ("<tel:+16175551212|+1 617-555-1212>", None, "+16175551212"),
        ("<tel:6175551212>", "US", "+16175551212"),
    ],
)
def test_accepts_numbers_as_people_type_them(typed: str, region: str | None, expected: str) -> None:
    assert parse_address(typed, region) == expected


@pytest.mark.parametrize(
    ("typed", "region", "reason"),
    [
        ("617-555-1212", None, "no country code"),
        ("", None, "no phone number"),
        ("+1617555", None, "too short"),
        ("+161755512121234567", None, "too long"),
        ("+999 1234 5678", None, "country code does not exist"),
        ("+18001234567", None, "not a valid number"),  # possible, but 800-1xx is never assigned
        ("+1 555 555 5555", None, "not a valid number"),
        ("zeke", "US", "not a phone number"),
        ("whatsapp:6175551212", "US", "whatsapp:+"),
        ("whatsapp:", None, "whatsapp:+"),
    ],
)
def test_refuses_what_is_not_a_valid_number_and_says_why(
    typed: str, region: str | None, reason: str
) -> None:
    with pytest.raises(PhoneError, match=reason):
        parse_address(typed, region)


def test_unwrap_slack_tel_leaves_other_text_alone() -> None:
    assert unwrap_slack_tel("<tel:+16175551212|call me>") == "+16175551212"
    assert unwrap_slack_tel("+16175551212") == "+16175551212"
    assert unwrap_slack_tel("<https://x.example>") == "<https://x.example>"


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("+1", True),
        ("617", True),
        ("(617)", True),
        ("555-1212", True),
        ("whatsapp:+1", True),
        ("zeke", False),
        ("a=1", False),
        ("--from", False),
        ("+", False),
        ("()", False),
    ],
)
def test_looks_like_phone(token: str, expected: bool) -> None:
    assert looks_like_phone(token) is expected


def test_pretty_formats_for_people() -> None:
    assert pretty("+16175551212") == "+1 617-555-1212"
    assert pretty("whatsapp:+447911123456") == "whatsapp:+44 7911 123456"


@given(st.text(max_size=60), st.sampled_from([None, "US", "GB", "DE"]))
def test_anything_typed_is_a_number_or_a_phone_error(text: str, region: str | None) -> None:
    try:
        result = parse_address(text, region)
    except PhoneError as exc:
        result = str(exc)
        assert result  # a reason, always
        return
    assert result.removeprefix("whatsapp:").startswith("+")
    assert result == parse_address(result)  # normal form is stable


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("'6175551212' has no country code", "'••••••1212' has no country code"),
        ("+1 (617) 555-1212", "+• (•••) •••-1212"),
        ("whatsapp:+16175551212", "whatsapp:+•••••••1212"),
        ("a short 12345 stays", "a short 12345 stays"),
        ("IDs U01234567 and FN0123456789abcdef stay", "IDs U01234567 and FN0123456789abcdef stay"),
    ],
)
def test_mask_digits(text: str, masked: str) -> None:
    assert mask_digits(text) == masked


@given(st.text(max_size=60))
def test_mask_digits_leaves_no_long_typed_number(text: str) -> None:
    import re

    out = mask_digits(text)
    for run in re.finditer(r"(?<!\w)\d(?:[\s().\-]*\d)+(?!\w)", out):
        assert sum(c.isdigit() for c in run.group(0)) < 6


def test_senders() -> None:
    mg = "MG" + "ab" * 16
    assert parse_sender(mg.upper().replace("MG", "MG")) == mg
    assert parse_sender("+1 617 555 0100") == "+16175550100"
    assert pretty(mg) == f"Messaging Service {mg}"
    with pytest.raises(PhoneError, match="Messaging Service SID"):
        parse_sender("MG12")
    assert channel_mismatch("whatsapp:+16175551212", mg) is None
    assert channel_mismatch("+16175551212", "+16175550100") is None
    assert channel_mismatch("+16175551212", "whatsapp:+16175550100")


@pytest.mark.parametrize(
    ("text", "region", "says"),
    [
        (
            "whatsapp:6175551212",
            None,
            "'whatsapp:6175551212': a WhatsApp address needs the full number, as whatsapp:+…",
        ),
        ("", None, "no phone number given"),
        ("   ", None, "no phone number given"),
        (
            "abc",
            None,
            "'abc' has no country code: write it as +<country code><number> (or ask an admin to set PHONE_DEFAULT_REGION)",
        ),
        ("+", None, "'+' is not a phone number: it is not a phone number"),
        (
            "+999 1234567",
            None,
            "'+999 1234567' is not a phone number: its country code does not exist",
        ),
        ("+44 1", None, "'+44 1' is not a phone number: it is too short"),
        ("+1 617 555 12", None, "'+1 617 555 12' is not a phone number: it is too short"),
        (
            "+49 30 1234567890123456",
            None,
            "'+49 30 1234567890123456' is not a phone number: it is too long",
        ),
        (
            "+1 (200) 555-1212",
            None,
            "'+1 (200) 555-1212' is not a valid number: no such number is assigned in +1 (US). Check the digits.",
        ),
    ],
)
def test_parse_address_says_exactly_why(text: str, region: str | None, says: str) -> None:
    with pytest.raises(PhoneError) as refused:
        parse_address(text, region)
    assert str(refused.value) == says


@pytest.mark.parametrize(
    ("text", "region", "address"),
    [
        ("WhatsApp: +1 617 555 1212", None, "whatsapp:+16175551212"),
        ("617 555 1212", "us", "+16175551212"),  # the region in any case
        ("<tel:+16175551212|+1 617 555 1212>", None, "+16175551212"),
        ("  +44 20 7946 0958 ", None, "+442079460958"),
    ],
)
def test_parse_address_normalises(text: str, region: str | None, address: str) -> None:
    assert parse_address(text, region) == address


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("+16175551212", "+1 617-•••-1212"),  # the area code and the last four
        ("whatsapp:+16175551212", "whatsapp:+1 617-•••-1212"),
        ("+442079460958", "+44 20 •••• 0958"),
        ("+4915112345678", "+49 1511 •••5678"),
        ("+33612345678", "+33 6 •• •• 56 78"),
        ("+6421234567", "+64 21 ••4 567"),
        ("+12125551", "+1 •••5551"),  # seven digits or fewer: only the last four
    ],
)
def test_mask_keeps_the_country_the_first_group_and_the_last_four(
    address: str, masked: str
) -> None:
    assert mask(address) == masked
