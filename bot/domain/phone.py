"""Phone numbers as people type and paste them, normalised by libphonenumber.

Pure: no I/O. ``parse_address`` turns what a person typed into the address
Twilio expects (``+E164`` or ``whatsapp:+E164``) or raises ``PhoneError``
saying why it is not one.
"""

from __future__ import annotations

import functools
import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType, ValidationResult

from bot.domain.errors import PhoneError
from bot.domain.phone_facts import NumberFacts, facts_of, parse

WHATSAPP = "whatsapp:"

# A Messaging Service SID: Studio's v2 API (and v1's Executions, not its Engagements)
# accepts one as ``From`` for SMS; US senders registered for A2P 10DLC usually send so.
MESSAGING_SERVICE = re.compile(r"^MG[0-9a-fA-F]{32}$")

# Slack may wrap a number it recognised as ``<tel:+16175551212|+1 617-555-1212>``.
_SLACK_TEL = re.compile(r"^<tel:(?P<number>[^|>]*)(?:\|[^>]*)?>$", re.IGNORECASE)

_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "its country code does not exist",
    ValidationResult.TOO_SHORT: "it is too short",
    ValidationResult.TOO_LONG: "it is too long",
    ValidationResult.INVALID_LENGTH: "it has the wrong number of digits for its country",
}

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "its country code does not exist",
    NumberParseException.NOT_A_NUMBER: "it is not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "it is too short",
    NumberParseException.TOO_SHORT_NSN: "it is too short",
    NumberParseException.TOO_LONG: "it is too long",
}


def unwrap_slack_tel(text: str) -> str:
    """Return the number inside Slack's ``<tel:…|…>`` wrapper, or ``text`` unchanged."""
    match = _SLACK_TEL.match(text.strip())
    return match.group("number") if match else text


def parse_address(text: str, default_region: str | None = None) -> str:
    """Normalise a contact or sender address to ``+E164`` or ``whatsapp:+E164``.

    Accepts E.164 with any spacing and punctuation, national numbers when
    ``default_region`` (ISO 3166 alpha-2) is given, ``whatsapp:`` addresses and
    Slack's ``<tel:…>`` wrapper. Raises ``PhoneError`` for anything that is not
    a *valid* number according to libphonenumber.
    """
    return read_address(text, default_region)[0]


def read_address(text: str, default_region: str | None = None) -> tuple[str, NumberFacts]:
    """``parse_address``, with what libphonenumber knows of the number, read in the same
    pass (a bulk preview reads 100,000 numbers: each is parsed and typed once)."""
    raw = unwrap_slack_tel(text).strip()
    prefix = ""
    if raw.lower().startswith(WHATSAPP):
        prefix, raw = WHATSAPP, raw[len(WHATSAPP) :].strip()
        if not raw.startswith("+"):
            raise PhoneError(f"{text!r}: a WhatsApp address needs the full number, as whatsapp:+…")
    shown = text.strip()
    if not raw:
        raise PhoneError("no phone number given")
    region = default_region.upper() if default_region else None
    if not raw.startswith("+") and region is None:
        raise PhoneError(
            f"{shown!r} has no country code: write it as +<country code><number>"
            " (or ask an admin to set PHONE_DEFAULT_REGION)"
        )
    try:
        number = parse(raw, region)
    except NumberParseException as exc:
        reason = _PARSE_REASONS.get(exc.error_type, "it is not a phone number")
        raise PhoneError(f"{shown!r} is not a phone number: {reason}") from None
    possible = phonenumbers.is_possible_number_with_reason(number)
    if possible not in (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY):
        reason = _POSSIBLE_REASONS.get(possible, "it is not a possible number")
        raise PhoneError(f"{shown!r} is not a phone number: {reason}")
    known = facts_of(number)
    if known.kind == PhoneNumberType.UNKNOWN:  # libphonenumber's is_valid_number, typed once
        country = number.country_code or 0
        where = phonenumbers.region_code_for_country_code(country)
        raise PhoneError(
            f"{shown!r} is not a valid number: no such number is assigned in +{country}"
            f" ({where}). Check the digits."
        )
    return prefix + phonenumbers.format_number(number, PhoneNumberFormat.E164), known


def normal_sid(sid: str) -> str:
    """A Twilio SID as Twilio writes it: two capitals, then lower-case hex.

    SIDs are compared and used as keys in this form, whatever was typed.
    """
    return sid[:2].upper() + sid[2:].lower()


def is_messaging_service(address: str) -> bool:
    return bool(MESSAGING_SERVICE.match(address))


def parse_sender(text: str, default_region: str | None = None) -> str:
    """A sender as Studio takes it: a number (``parse_address``) or a Messaging Service SID."""
    stripped = text.strip()
    if is_messaging_service(stripped):
        return normal_sid(stripped)
    if stripped[:2].upper() == "MG":
        raise PhoneError(
            f"{stripped!r} is not a Messaging Service SID: those are MG followed by 32 hex digits"
        )
    return parse_address(text, default_region)


def channel_mismatch(to: str, sender: str) -> str | None:
    """Why ``sender`` cannot reach ``to`` (WhatsApp with SMS or the reverse), or None.

    Both are normalised addresses. A Messaging Service may hold WhatsApp senders too,
    so it is never a mismatch.
    """
    if is_messaging_service(sender):
        return None
    to_whatsapp, from_whatsapp = to.startswith(WHATSAPP), sender.startswith(WHATSAPP)
    if to_whatsapp == from_whatsapp:
        return None
    number = sender.removeprefix(WHATSAPP)
    if to_whatsapp:
        return (
            f"{to} is a WhatsApp contact but the sender {sender} is an SMS/voice number;"
            f" send from a WhatsApp sender, e.g. --from {WHATSAPP}{number}"
        )
    return (
        f"{to} is an SMS/voice contact but the sender {sender} is a WhatsApp sender;"
        f" send from a number, e.g. --from {number}, or write the contact as {WHATSAPP}{to}"
    )


def looks_like_phone(token: str) -> bool:
    """Whether a token could be (part of) a phone number as typed: digits and punctuation.

    Used by the parser to join a number typed with spaces (``+1 617 555 1212``).
    """
    stripped = token.strip()
    if stripped.lower().startswith(WHATSAPP) or _SLACK_TEL.match(stripped):
        return True
    return bool(_PHONE_CHUNK.match(stripped)) and any(ch.isdigit() for ch in stripped)


_PHONE_CHUNK = re.compile(r"^[+(]?[\d().\-\u2010-\u2015\u2212/ ]+$")


@functools.lru_cache(maxsize=4096)  # several times per start (ack, card, audit): 0.1 ms each
def pretty(address: str) -> str:
    """Format a normalised address for people: ``+1 617-555-1212``, or
    ``Messaging Service MG…`` for a Messaging Service SID."""
    if is_messaging_service(address):
        return f"Messaging Service {address}"
    prefix = WHATSAPP if address.startswith(WHATSAPP) else ""
    number = address[len(prefix) :]
    try:
        parsed = phonenumbers.parse(number, None)
    except NumberParseException:
        return address
    return prefix + phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)


def mask(address: str) -> str:
    """The address for people who need not see it whole: ``+1 617-•••-1212``.

    Keeps the country code, the first group (area code) of longer numbers and
    the last four digits; every other digit becomes •.
    """
    shown = pretty(address)
    prefix = WHATSAPP if shown.startswith(WHATSAPP) else ""
    country, _, national = shown[len(prefix) :].partition(" ")
    total = sum(ch.isdigit() for ch in national)
    first_group = re.match(r"^\d+(?=[ \-])", national)
    keep_head = len(first_group.group(0)) if first_group and total > 7 else 0
    seen, out = 0, []
    for ch in national:
        if ch.isdigit():
            seen += 1
            ch = ch if seen <= keep_head or seen > total - 4 else "\u2022"
        out.append(ch)
    return f"{prefix}{country} {''.join(out)}"


# Digits with the punctuation people type between them (underscores too), not inside a
# word (a SID, an ID).
_DIGIT_RUN = re.compile(r"(?<!\w)\d(?:[\s().\-\u2010-\u2015\u2212/_]*\d)+(?!\w)")


def mask_typed(typed: str) -> str:
    """What a person typed where a number was expected, with every digit but the last four
    hidden when it holds six or more (``+1_617_555_1212``, ``+16175551212abc``)."""
    total = sum(ch.isdigit() for ch in typed)
    if total < 6:
        return typed
    seen, out = 0, []
    for ch in typed:
        if ch.isdigit():
            seen += 1
            ch = ch if seen > total - 4 else "\u2022"
        out.append(ch)
    return "".join(out)


def mask_digits(text: str) -> str:
    """``text`` with every number of six digits or more (a phone number, as typed) masked
    but for its last four digits: for free text that may quote what a person typed."""

    def hide(match: re.Match[str]) -> str:
        return mask_typed(match.group(0))

    return _DIGIT_RUN.sub(hide, text)
