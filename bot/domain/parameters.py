"""One home for the parameters a flow is started with (``flow.data``), whoever gives them:
the command's ``key=value`` items, the form's fields and its *More parameters* box, a
CSV file's columns (and the coming workflow step). Pure: no I/O.

The rules, the same everywhere:

- a key is one or more segments of letters, digits, ``_`` and ``-``, joined by dots
  to nest (``customer.name`` → ``{"customer": {"name": …}}``);
- a key set twice, or set and nested into, is a conflict;
- at most ``MAX_DEPTH`` levels of nesting, dotted keys and JSON containers together
  (counted without recursion, so no input can exhaust the stack);
- JSON numbers are finite, and ``NaN``/``Infinity`` are not JSON.

Each broken rule raises ``ParameterError`` naming the key (``.token``: the part of the
input at fault), which each surface shows its own way.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from bot.domain.errors import ParameterError

MAX_DEPTH = 32  # levels of nesting in the parameters (dotted keys plus JSON containers)
MAX_KEY_CHARS = 1000  # a key longer than this is no parameter name anyone typed
_SEGMENT = re.compile(r"^[\w-]+$")


def _shown(raw: str) -> str:
    return raw if len(raw) <= 200 else raw[:199] + "…"


def key_path(key: str, raw: str | None = None) -> tuple[str, ...]:
    """The segments of a dotted ``key``; raises ``ParameterError`` unless it follows the
    rules (``raw``: how it was given, for the message)."""
    raw = _shown(raw if raw is not None else key)
    segments = tuple(key.split("."))
    check_depth(len(segments), raw)
    if len(key) > MAX_KEY_CHARS:
        raise ParameterError(f"the key is too long ({len(key)} characters)", raw)
    if any(not s for s in segments):
        raise ParameterError(f"empty key in {raw!r}", raw)
    if any(not _SEGMENT.match(s) for s in segments):
        raise ParameterError(
            f"bad key {_shown(key)!r}: use letters, digits, _ and -, with dots to nest", raw
        )
    return segments


def depth(value: Any) -> int:
    """How many JSON containers deep ``value`` is (0 for a scalar); no recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = (
            node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        )
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(levels: int, raw: str) -> None:
    if levels > MAX_DEPTH:
        raise ParameterError(
            f"the parameters are nested too deeply ({levels} levels; at most {MAX_DEPTH})",
            _shown(raw),
        )


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large a number for JSON")
    return value


def loads(text: str) -> Any:
    """JSON as the parameters take it: finite numbers, no ``NaN``. Raises ValueError
    (``json.JSONDecodeError`` for syntax)."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested too deeply (at most {MAX_DEPTH} levels)") from None


class Builder:
    """Parameters assembled key by key under the rules above."""

    def __init__(self) -> None:
        self.value: dict[str, Any] = {}
        self._explicit: set[tuple[str, ...]] = set()

    def set(self, key: str, value: Any, raw: str | None = None) -> None:
        """Set the dotted ``key`` to ``value``; raises ``ParameterError``."""
        raw = raw if raw is not None else key
        path = key_path(key, raw)
        check_depth(len(path) + depth(value), raw)
        self._assign(path, value, raw)

    def merge(self, obj: Mapping[str, Any], raw: str) -> None:
        """A JSON object's top-level keys, each set as given (not split on dots)."""
        check_depth(depth(dict(obj)), raw)
        for key, value in obj.items():
            if not key:
                raise ParameterError("empty key in the JSON object", _shown(raw))
            self._assign((key,), value, raw)

    def _assign(self, path: tuple[str, ...], value: Any, raw: str) -> None:
        node = self.value
        for level, segment in enumerate(path[:-1], start=1):
            prefix = path[:level]
            child = node.setdefault(segment, {})
            if prefix in self._explicit or not isinstance(child, dict):
                raise ParameterError(
                    f"conflicting keys: {'.'.join(prefix)!r} is already set", _shown(raw)
                )
            node = child
        if path in self._explicit or path[-1] in node:
            raise ParameterError(f"conflicting keys: {'.'.join(path)!r} is set twice", _shown(raw))
        node[path[-1]] = value
        self._explicit.add(path)


def nest(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Flat ``(dotted key, value)`` pairs as nested parameters; raises ``ParameterError``."""
    built = Builder()
    for key, value in items:
        built.set(key, value)
    return built.value


def parse_lines(text: str, into: Builder | None = None) -> dict[str, Any]:
    """``key=value`` one a line (blank lines skipped), as the form's *More parameters*
    box takes them; a value is text, or JSON after ``key:=``. Set in ``into`` when given
    (beside what it holds, under the same conflict rules). Raises ``ParameterError``."""
    built = into if into is not None else Builder()
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, given = line.partition("=")
        if not sep or not key.strip():
            raise ParameterError(
                f"write one key=value a line ({_shown(line.strip())[:40]!r} is not)", line
            )
        key = key.strip()
        if key.endswith(":"):
            try:
                value: Any = loads(given.strip())
            except ValueError as exc:
                detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise ParameterError(f"bad JSON for {key[:-1]!r}: {detail}", line) from None
            built.set(key[:-1].strip(), value, line.strip())
        else:
            built.set(key, given.strip(), line.strip())
    return built.value
