"""The ``/engage`` text as tokens: words, ``--options``, ``key=value`` items and JSON
objects, with Slack's escaping, links and autocorrected quotes undone. Pure; raises
``CommandError`` naming the token at fault. ``bot.domain.grammar`` builds commands
from the tokens."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.domain import parameters
from bot.domain.errors import CommandError

START_OPTIONS_TEXT = "the options are --from, --flow, --at and --in"
OPTIONS = ("from", "flow", "since", "csv", "at", "in")
FLAGS = ("csv",)  # options that take no value


# What Slack clients (and macOS/iOS autocorrect) do to typed text.
_QUOTES = str.maketrans(
    {
        "\u201c": '"',  # “
        "\u201d": '"',  # ”
        "\u201e": '"',  # „
        "\u201f": '"',  # ‟
        "\u2018": "'",  # ‘
        "\u2019": "'",  # ’
        "\u201a": "'",  # ‚
        "\u201b": "'",  # ‛
        "\u00a0": " ",  # no-break space
    }
)


_LONG_DASH_OPTION = re.compile(r"(?:^|(?<=\s))[\u2012\u2013\u2014\u2015\u2212](?=[A-Za-z])")


# Slack wraps links it recognised: <https://x|label>, <mailto:a@b|a@b>, <tel:+1…|…>.
_SLACK_LINK = re.compile(r"^<(?P<target>(?:https?://|mailto:|tel:)[^|>]*)(?:\|[^>]*)?>$")


@dataclass(frozen=True)
class Word:
    text: str


@dataclass(frozen=True)
class Option:
    name: str
    value: str
    raw: str


@dataclass(frozen=True)
class Item:
    key: str
    value: Any
    raw: str
    is_json: bool = False


@dataclass(frozen=True)
class Object:
    value: dict[str, Any]
    raw: str


Token = Word | Option | Item | Object


def normalise(text: str) -> str:
    """Undo what Slack clients do to typed text: curly quotes, long dashes before options."""
    return _LONG_DASH_OPTION.sub("--", text.translate(_QUOTES)).strip()


def unescape(text: str) -> str:
    """Undo Slack's HTML escaping of ``&``, ``<`` and ``>``."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class Scanner:
    """Splits the command into words, options, ``key=value`` items and JSON objects."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            self._skip_space()
            if self.i >= len(self.s):
                return out
            out.append(self._token())

    def _skip_space(self) -> None:
        while self.i < len(self.s) and self.s[self.i].isspace():
            self.i += 1

    def _at_end_of_token(self) -> bool:
        return self.i >= len(self.s) or self.s[self.i].isspace()

    def _rest_of_token(self, start: int) -> str:
        end = start
        while end < len(self.s) and not self.s[end].isspace():
            end += 1
        return self.s[start:end]

    def _token(self) -> Token:
        start, ch = self.i, self.s[self.i]
        if ch == "{":
            obj = self._json(start)
            if not isinstance(obj, dict):  # pragma: no cover - JSON starting with "{" is a dict
                raise CommandError("expected a JSON object", self.s[start : self.i])
            return Object(obj, self.s[start : self.i])
        if ch in "\"'<":
            return Word(self._value(start))
        if self.s.startswith("--", start):
            return self._option(start)
        j = start
        while j < len(self.s) and not self.s[j].isspace() and self.s[j] != "=":
            j += 1
        if j >= len(self.s) or self.s[j] != "=":
            self.i = j
            return Word(unescape(self.s[start:j]))
        is_json = j > start and self.s[j - 1] == ":"
        key = unescape(self.s[start : j - 1 if is_json else j])
        self.i = j + 1
        if is_json:
            if self._at_end_of_token():
                raise CommandError(f"{key}:= needs a JSON value after :=", self.s[start : j + 1])
            value: Any = self._json(start)
        else:
            value = self._value(start)
        return Item(key, value, self.s[start : self.i], is_json)

    def _option(self, start: int) -> Option:
        j = start + 2
        while j < len(self.s) and not self.s[j].isspace() and self.s[j] != "=":
            j += 1
        name = self.s[start + 2 : j]
        if name not in OPTIONS:
            raise CommandError(
                f"unknown option --{name}: {START_OPTIONS_TEXT}",
                self._rest_of_token(start),
            )
        if name in FLAGS:
            self.i = j
            if not self._at_end_of_token():
                raise CommandError(f"--{name} takes no value", self._rest_of_token(start))
            return Option(name, "", self.s[start:j])
        if j < len(self.s) and self.s[j] == "=":
            self.i = j + 1
        else:
            self.i = j
            self._skip_space()
        if self.i >= len(self.s):
            raise CommandError(f"--{name} needs a value", f"--{name}")
        value = self._value(self.i)
        return Option(name, value, self.s[start : self.i])

    def _value(self, start: int) -> str:
        """A value at ``self.i``: quoted, a Slack ``<link>``, or up to the next space."""
        ch = self.s[self.i] if self.i < len(self.s) else " "
        if ch in "\"'":
            value = self._quoted(start)
        elif ch == "<":
            end = self.s.find(">", self.i)
            if end < 0:
                end = self.i + len(self._rest_of_token(self.i)) - 1
            raw = self.s[self.i : end + 1]
            self.i = end + 1
            link = _SLACK_LINK.match(raw)
            if link:
                target = link.group("target")
                value = unescape(target.removeprefix("mailto:").removeprefix("tel:"))
            else:
                value = unescape(raw)
        else:
            token = self._rest_of_token(self.i)
            self.i += len(token)
            return unescape(token)
        if not self._at_end_of_token():
            raise CommandError(
                "unexpected text right after a closing quote or link; put a space after it",
                self._rest_of_token(start),
            )
        return value

    def _quoted(self, start: int) -> str:
        quote = self.s[self.i]
        out: list[str] = []
        j = self.i + 1
        while j < len(self.s):
            ch = self.s[j]
            if ch == "\\" and j + 1 < len(self.s) and self.s[j + 1] in (quote, "\\"):
                out.append(self.s[j + 1])
                j += 2
                continue
            if ch == quote:
                self.i = j + 1
                return unescape("".join(out))
            out.append(ch)
            j += 1
        raise CommandError(f"unterminated quote: add the closing {quote}", self.s[start:])

    def _json(self, token_start: int) -> Any:
        """Decode the JSON value at ``self.i``; it may contain spaces, quotes, brackets."""
        try:
            _, end = json.JSONDecoder().raw_decode(self.s, self.i)
            value = parameters.loads(unescape(self.s[self.i : end]))
        except ValueError as exc:
            detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise CommandError(f"bad JSON: {detail}", self._rest_of_token(token_start)) from None
        self.i = end
        if not self._at_end_of_token():
            raise CommandError(
                "unexpected text right after the JSON value; put a space after it",
                self._rest_of_token(token_start),
            )
        return value
