"""``bot.domain.phone_facts`` answers exactly as libphonenumber's public calls do:
``quick_parse`` as ``phonenumbers.parse``, ``facts_of`` as ``region_code_for_number``,
``number_type``, ``is_valid_number`` and ``time_zones_for_number``, for every region's
example numbers of every type and for random digits."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers import timezone as phone_zones

from bot.domain.bulk_input import Row, read_csv, row_for
from bot.domain.bulk_plan import plan
from bot.domain.contact_clock import ContactClock, QuietHours, zones_for, zones_of
from bot.domain.phone import parse_address, read_address
from bot.domain.phone_facts import COSTLY_TYPES, facts, facts_of, quick_parse
from bot.domain.policy import Policy
from tests import budget

TYPES = [v for k, v in vars(PhoneNumberType).items() if k.isupper() and isinstance(v, int)]


def _examples() -> list[str]:
    """Every example number libphonenumber has: each region's of each type, and each
    non-geographic calling code's."""
    found: set[str] = set()
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.add(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.add(phonenumbers.format_number(number, PhoneNumberFormat.E164))
    return sorted(found)


EXAMPLES = _examples()


def assert_as_libphonenumber(e164: str) -> None:
    """``e164`` read here and by libphonenumber's public calls: the same answers."""
    try:
        expected = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        assert quick_parse(e164) is None
        return
    quick = quick_parse(e164)
    assert quick is None or quick == expected, e164
    known = facts_of(expected)
    valid = phonenumbers.is_valid_number(expected)
    assert (known.kind != PhoneNumberType.UNKNOWN) == valid, e164
    assert known.kind == phonenumbers.number_type(expected), e164
    assert known.country == (phonenumbers.region_code_for_number(expected) or "ZZ"), e164
    assert known.costly == COSTLY_TYPES.get(known.kind), e164
    if valid:
        assert known.zones == tuple(phone_zones.time_zones_for_number(expected)), e164


def test_there_are_examples_of_every_kind() -> None:
    assert len(EXAMPLES) > 800  # about a thousand: every region, every type it has
    assert any(quick_parse(e) is not None for e in EXAMPLES)
    assert any(quick_parse(e) is None for e in EXAMPLES)  # a national prefix, a zero


@pytest.mark.parametrize("e164", EXAMPLES[:: 1 if not budget.QUICK else 10])
def test_every_example_number_reads_as_libphonenumber_reads_it(e164: str) -> None:
    assert_as_libphonenumber(e164)


CALLING_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@settings(max_examples=budget.examples(2000), deadline=None)
@given(
    code=st.sampled_from(CALLING_CODES),
    national=st.text(alphabet="0123456789", min_size=1, max_size=13),
)
def test_random_numbers_read_as_libphonenumber_reads_them(code: int, national: str) -> None:
    assert_as_libphonenumber(f"+{code}{national}")


@settings(max_examples=budget.examples(500), deadline=None)
@given(st.text(alphabet="0123456789", min_size=1, max_size=16))
def test_any_digits_read_as_libphonenumber_reads_them(digits: str) -> None:
    assert_as_libphonenumber(f"+{digits}")


@pytest.mark.parametrize(
    "typed",
    [
        "+16175551212",  # canonical: read straight
        "+1 617 555 1212",  # punctuation: libphonenumber's parse
        "+390612345678",  # Italy: a leading zero
        "+5491123456789",  # Argentina: a mobile's 9
        "+5215512345678",  # Mexico: the old mobile 1
        "+447911123456",
        "+16175551212\u0661",  # not ASCII digits
    ],
)
def test_read_address_is_parse_address_with_its_facts(typed: str) -> None:
    try:
        expected = phonenumbers.parse(typed, None)
    except phonenumbers.NumberParseException:
        expected = None
    if expected is None or not phonenumbers.is_valid_number(expected):
        with pytest.raises(Exception):  # noqa: B017,PT011 - PhoneError, with its reason
            read_address(typed)
        return
    address, known = read_address(typed)
    assert address == parse_address(typed)
    assert address == phonenumbers.format_number(expected, PhoneNumberFormat.E164)
    assert known is facts(address)  # one shared value


def test_facts_are_shared_by_numbers_that_have_the_same() -> None:
    first, second = facts("+16175551212"), facts("+16175550199")
    assert first == second
    assert first is second


def test_a_rows_facts_are_read_with_it_and_not_kept() -> None:
    sheet = read_csv(b"phone,name\n+16175551212,Zeke\n", region="US")
    row = sheet.rows[0]
    assert row.facts is facts("+16175551212")
    kept = Row(**row.kept())
    assert kept == row
    assert kept.facts is None


def test_a_plan_judges_a_row_read_back_without_facts_the_same() -> None:
    """A run's rows read back from state carry no facts: the same rules, asked again."""
    quiet = ContactClock(QuietHours.parse("21:00-08:00"), now=lambda: 1_700_000_000.0)
    read = [
        row_for(2, "+16175551212", None, {}),
        row_for(3, "+19005550100", None, {}),  # premium rate: refused
        row_for(4, "+442079460000", None, {}),  # another country: refused
    ]
    again = [Row(**row.kept()) for row in read]
    made = [
        plan(
            rows,
            flow_sid="FW" + "a" * 32,
            flow_alias=None,
            sender="+16175550100",
            shared={},
            policy=Policy(countries=frozenset({"US"})),
            info=None,
            per_second=1.0,
            clock=quiet,
            now=1_700_000_000.0,
        )
        for rows in (read, again)
    ]
    first, second = made
    assert [r.number for r in first.valid] == [r.number for r in second.valid]
    assert [(r.number, why) for r, why in first.refused] == [
        (r.number, why) for r, why in second.refused
    ]
    assert [(r.number, at) for r, at in first.waiting] == [
        (r.number, at) for r, at in second.waiting
    ]
    assert len(first.refused) == 2


def test_zones_from_facts_are_the_zones_of_the_address() -> None:
    for e164 in ("+16175551212", "+18085551234", "+351912345678", "+447911123456"):
        assert zones_for(facts(e164), "UTC") == zones_of(e164, "UTC")
