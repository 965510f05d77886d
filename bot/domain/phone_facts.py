"""What libphonenumber knows of a number (country, type, cost class, time zones), read
once. Pure: no I/O.

A bulk preview reads 100,000 numbers, and libphonenumber's public calls each walk the
patterns of every region of a calling code again (``is_valid_number``, ``number_type``,
``region_code_for_number``: three walks of the 25 regions of +1). Here a number is
parsed once and walked once, with libphonenumber's own metadata and pattern test, and
the answers are exactly its public ones (``tests/test_phone_facts.py`` checks them
against every region's example numbers and random digits):

- ``quick_parse``: a number typed in canonical E.164 (``+16175551212``) read straight
  from its digits, or None when libphonenumber's full ``parse`` must read it (anything
  else, a national prefix it might strip, a leading zero);
- ``parse``: ``quick_parse``, else libphonenumber's ``parse``;
- ``facts_of``: region, type (UNKNOWN: not a valid number), cost class and zones, as
  ``NumberFacts`` shared by every number that has the same.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberType,
    phonenumberutil,
)
from phonenumbers import timezone as phone_zones

WHATSAPP = "whatsapp:"
COSTLY_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "a premium-rate number",
    PhoneNumberType.SHARED_COST: "a shared-cost number",
}
_E164 = re.compile(r"\+([1-9][0-9]{6,14})")  # ASCII digits only: nothing to normalise


@dataclass(frozen=True, slots=True)
class NumberFacts:
    """What libphonenumber knows of a valid number, for the destination rules and the
    contact's clock. Few distinct values: each is kept once (``facts_of``) and shared
    by every number that has them."""

    country: str  # ISO 3166 alpha-2 region, e.g. "US"; "001" for non-geographic; "ZZ"
    costly: str | None  # "a premium-rate number" / "a shared-cost number", else None
    kind: int = PhoneNumberType.UNKNOWN  # its type (mobile, toll-free…): UNKNOWN if invalid
    zones: tuple[str, ...] = ()  # libphonenumber's time zones for it, as it gives them


# libphonenumber's test of a national number against one region's patterns; its public
# ``number_type`` if it ever goes (slower: a second walk, same answers).
_type_in = getattr(phonenumberutil, "_number_type_helper", None)
_shared: dict[NumberFacts, NumberFacts] = {}  # bounded by libphonenumber's metadata


@functools.lru_cache(maxsize=1024)
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def quick_parse(raw: str) -> PhoneNumber | None:
    """``phonenumbers.parse(raw)`` for ``+`` and 7 to 15 ASCII digits that libphonenumber
    would read as they are; None for anything else (then ``parse`` reads it)."""
    match = _E164.fullmatch(raw)
    if match is None:
        return None
    digits = match.group(1)
    for size in (1, 2, 3):  # calling codes are prefix-free, as parse finds them
        code = int(digits[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None
    national = digits[size:]
    region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None or national.startswith("0"):
        return None  # leading zeros (Italy's) are parse's to count
    strip = metadata.national_prefix_for_parsing
    if strip and _pattern(strip).match(national):
        return None  # parse may strip or transform a national prefix: let it decide
    return PhoneNumber(country_code=code, national_number=int(national))


def parse(raw: str, region: str | None = None) -> PhoneNumber:
    """``phonenumbers.parse``, straight from the digits where ``quick_parse`` may (raises
    ``phonenumbers.NumberParseException``)."""
    return quick_parse(raw) or phonenumbers.parse(raw, region)


def _region_and_type(number: PhoneNumber) -> tuple[str | None, int]:
    """``region_code_for_number`` and ``number_type``, in one walk of the regions."""
    code = number.country_code or 0
    regions = COUNTRY_CODE_TO_REGION_CODE.get(code)
    if not regions or _type_in is None:
        region = phonenumbers.region_code_for_number(number)
        return region, phonenumbers.number_type(number) if region else PhoneNumberType.UNKNOWN
    national = phonenumbers.national_significant_number(number)
    if len(regions) == 1:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, regions[0])
        return regions[0], _type_in(national, metadata) if metadata else PhoneNumberType.UNKNOWN
    for region in regions:  # as libphonenumber's _region_code_for_number_from_list
        metadata = PhoneMetadata.metadata_for_region(region.upper(), None)
        if metadata is None:
            continue
        if metadata.leading_digits is not None:
            if _pattern(metadata.leading_digits).match(national):
                return region, _type_in(national, metadata)
            continue
        kind = _type_in(national, metadata)
        if kind != PhoneNumberType.UNKNOWN:
            return region, kind
    return None, PhoneNumberType.UNKNOWN


def facts_of(number: PhoneNumber) -> NumberFacts:
    """Country, type (UNKNOWN: not a valid number), cost class and zones of a parsed
    number."""
    region, kind = _region_and_type(number)
    if kind == PhoneNumberType.UNKNOWN:
        zones: tuple[str, ...] = ()
    elif phonenumbers.is_number_type_geographical(kind, number.country_code or 0):
        zones = tuple(phone_zones.time_zones_for_geographical_number(number))
    else:
        zones = tuple(phone_zones.time_zones_for_number(number))
    found = NumberFacts(region or "ZZ", COSTLY_TYPES.get(kind), int(kind), zones)
    return _shared.setdefault(found, found)


KNOWN = 8192  # addresses whose facts are kept (a start reads them a few times)


@functools.lru_cache(maxsize=KNOWN)
def facts(address: str) -> NumberFacts:
    """The facts of a normalised ``+E164`` or ``whatsapp:+E164`` address (raises
    ``phonenumbers.NumberParseException`` for what is none)."""
    return facts_of(parse(address.removeprefix(WHATSAPP)))
