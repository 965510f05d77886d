"""Consent, as the bot honours it: who opted out and how, and how often one contact may be
reached. Pure: no I/O (``bot.engage.consent`` keeps the list in the state store).

- **Opt-out words**: an answer that is one of them (``STOP``, ``Stop all``, `` quit ``:
  case and spaces do not matter) opts its contact out.
- **Keys**: the list is looked up by ``Keyer.key``, an HMAC-SHA256 of the number under
  ``CONSENT_KEY``, so a copy of the store does not list numbers in the clear. A number
  is one contact on every channel: ``whatsapp:+1…`` and ``+1…`` share a key.
- **Caps**: ``2/24h``, ``1/7d``, ``3/day``: at most so many starts Twilio accepted in so
  long (``CONTACT_CAP`` across every flow, ``;cap=`` for one).
- **Twilio's 21610** (the recipient replied STOP to that sender) found in a run's context.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.domain.durations import SPAN_UNITS, duration, parse_span
from bot.domain.record import Record

# Twilio's standard opt-out keywords for messaging (Advanced Opt-Out's defaults).
DEFAULT_OPT_OUT_WORDS: tuple[str, ...] = ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT")
UNSUBSCRIBED = 21610  # Twilio: "Attempt to send to unsubscribed recipient"
KEY_HEX = 32  # hex digits of the HMAC kept: 128 bits, no two numbers share one

Source = Literal["answer", "21610", "command", "file"]
SOURCES: tuple[Source, ...] = ("answer", "21610", "command", "file")
SOURCE_TEXT: Mapping[str, str] = {
    "answer": "replied with an opt-out word",
    "21610": "Twilio said the recipient unsubscribed (21610)",
    "command": "opted out with /engage optout",
    "file": "imported from an opt-out file",
}


class OptOut(Record):
    """One contact on the suppression list: when and how they opted out (shown masked)."""

    at: float
    source: Source
    contact: str  # masked, as the audit shows numbers
    by: str = ""  # the Slack user who added it (a command or a file)
    reason: str = ""  # as given with /engage optout, or the word answered
    flow_sid: str = ""  # the flow whose run said so (an answer, 21610)
    sid: str = ""  # that run


@dataclass(frozen=True)
class Cap:
    """At most ``amount`` starts to one contact in ``seconds``."""

    amount: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.amount} per {duration(self.seconds)}"


_CAP = re.compile(r"^\s*(\d+)\s*(?:/|\s+per\s+)\s*(.+?)\s*$", re.IGNORECASE)
_WORD_SPAN = re.compile(r"^(\d+)?\s*(second|minute|hour|day|week)s?$")
_WORD_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}


def parse_cap(text: str) -> Cap:
    """``2/24h``, ``1/7d``, ``3/day``, ``1 per week`` -> ``Cap``. Raises ValueError (which
    does not echo the text) for anything else, a cap of 0 starts, or a span under a
    minute."""
    found = _CAP.match(text)
    problem = "must be a cap such as 2/24h, 1/7d or 3/day"
    if found is None:
        raise ValueError(problem)
    amount, span = int(found.group(1)), found.group(2).lower()
    worded = _WORD_SPAN.match(span)  # "day", "2 days", "week"
    seconds = int(worded.group(1) or 1) * _WORD_UNITS[worded.group(2)] if worded else None
    if seconds is None:
        try:
            seconds = parse_span(span)
        except ValueError:
            raise ValueError(problem) from None
    if amount < 1 or seconds < SPAN_UNITS["m"]:
        raise ValueError("must allow at least 1 start in at least a minute, e.g. 2/24h")
    return Cap(amount, float(seconds))


def parse_words(text: str) -> frozenset[str]:
    """``OPT_OUT_WORDS``: comma-separated words, compared as ``normal_word`` does. Raises
    ValueError if none is given."""
    words = frozenset(normal_word(w) for w in text.split(",") if normal_word(w))
    if not words:
        raise ValueError("must be comma-separated words such as STOP,UNSUBSCRIBE")
    return words


def normal_word(text: str) -> str:
    """``" Stop all "`` -> ``STOPALL``: upper case, no spaces at all."""
    return "".join(text.split()).upper()


def is_opt_out(text: str, words: Iterable[str]) -> bool:
    """Whether ``text`` (a whole answer) is one of the opt-out ``words``."""
    return normal_word(text) in frozenset(words)


def opt_out_in(
    answers: Mapping[str, str], context: object, words: Iterable[str]
) -> tuple[Source, str] | None:
    """What an ended run says about consent: ("answer", the word) if an answer is an opt-out
    word; ("21610", "") if Twilio's 21610 is among its context's error codes; else None."""
    for answer in answers.values():
        if is_opt_out(answer, words):
            return "answer", normal_word(answer)
    if UNSUBSCRIBED in error_codes(context):
        return "21610", ""
    return None


_CODE_KEY = re.compile(r"^error_?code$", re.IGNORECASE)
_MOST_DEPTH = 32


def error_codes(context: object, depth: int = 0) -> set[int]:
    """Every Twilio error code in a run's context (``ErrorCode``, ``error_code`` or
    ``errorCode`` keys at any depth, as a number or digits)."""
    found: set[int] = set()
    if depth > _MOST_DEPTH:
        return found
    if isinstance(context, Mapping):
        for key, value in context.items():
            code = _code(value) if isinstance(key, str) and _CODE_KEY.match(key) else None
            if code is not None:
                found.add(code)
            else:
                found |= error_codes(value, depth + 1)
    elif isinstance(context, list):
        for item in context:
            found |= error_codes(item, depth + 1)
    return found


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


class Keyer:
    """The suppression list's key of a contact: an HMAC-SHA256 of its number under
    ``secret`` (``CONSENT_KEY``), the same on every channel. The key's HMAC state is made
    once and copied for each contact (a 100,000-row preview hashes every row)."""

    def __init__(self, secret: bytes) -> None:
        self._base = hmac.new(secret, digestmod=hashlib.sha256)

    def key(self, to: str) -> str:
        number = to.split(":", 1)[1] if to.startswith("whatsapp:") else to
        mac = self._base.copy()
        mac.update(number.encode())
        return mac.hexdigest()[:KEY_HEX]


@dataclass(frozen=True)
class Suppressed:
    """Why a start to one contact may not go out now: it ``opted_out`` (``optout``: when
    and how), or it is ``capped`` (``until``: when it may be reached again, epoch
    seconds; ``cap``: which cap, as written)."""

    kind: Literal["opted_out", "capped"]
    optout: OptOut | None = None
    until: float = 0.0
    cap: str = ""
