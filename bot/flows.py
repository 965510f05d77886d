"""What a flow's definition says, read before anything is sent. Pure: no I/O.

- ``rest_ready``: the Trigger widget's REST API transition (``incomingRequest``) leads
  somewhere. If not, an execution started over the REST API ends at once and reaches
  nobody.
- ``parameters_read``: every ``flow.data`` reference in the definition's Liquid
  (``{{ … }}`` output and ``{% … %}`` tags, in any widget property: message bodies,
  HTTP request bodies, Function and subflow parameters), dotted
  (``flow.data.customer.name`` → ``customer.name``) or in brackets
  (``flow.data['first-name']``). A reference is optional when it has a ``default``
  filter or sits in a tag (a condition, a loop); otherwise the flow needs it. Where
  the definition uses ``flow.data`` whole (``{{flow.data}}``) or with a key it
  computes (``flow.data[name]``), the flow may read anything: then only missing
  parameters are checked, never unknown ones.
- ``findings``: what a command's parameters lack, and what they give that the flow
  never reads (with the closest name the flow does read).

Nothing here raises, whatever JSON it is given.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# Liquid: {{ output }} and {% tag %} (with the -whitespace control forms).
_SEGMENT = re.compile(r"\{\{-?(?P<output>.*?)-?\}\}|\{%-?(?P<tag>.*?)-?%\}", re.S)
_FLOW_DATA = re.compile(r"(?<![\w.])flow\s*\.\s*data(?![\w-])")
_DOT_KEY = re.compile(r"\s*\.\s*([A-Za-z_][\w-]*)")
_BRACKET = re.compile(r"\s*\[\s*(?:'([^']*)'|\"([^\"]*)\"|(-?\d+)|([^\]]*))\s*\]")
_DEFAULT = re.compile(r"\|\s*default\b")
# Liquid's own properties of arrays and strings: the path ends before them.
_PROPERTIES = frozenset({"size", "first", "last"})


@dataclass(frozen=True)
class Parameters:
    """The ``flow.data`` keys a flow reads, as dotted paths."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    reads_anything: bool = False  # flow.data used whole, or with a computed key

    @property
    def known(self) -> frozenset[str]:
        return self.required | self.optional


@dataclass(frozen=True)
class Analysis:
    """What the bot needs to know of one flow's definition."""

    rest_ready: bool | None  # None: the definition has no Trigger widget to judge by
    parameters: Parameters = field(default_factory=Parameters)


def analyse(definition: Any) -> Analysis:
    """``rest_ready`` and ``parameters_read`` of a definition (any JSON). Something with
    no Trigger widget is not a definition to judge: nothing about it is refused."""
    ready = rest_ready(definition)
    if ready is None:
        return Analysis(None, Parameters(reads_anything=True))
    return Analysis(ready, parameters_read(definition))


def rest_ready(definition: Any) -> bool | None:
    """Whether the Trigger widget's REST API transition leads to a widget; None when the
    definition has no Trigger widget (not a definition this can judge)."""
    states = definition.get("states") if isinstance(definition, dict) else None
    triggers = [
        state
        for state in (states if isinstance(states, list) else [])
        if isinstance(state, dict) and state.get("type") == "trigger"
    ]
    if not triggers:
        return None
    for state in triggers:
        transitions = state.get("transitions")
        for transition in transitions if isinstance(transitions, list) else []:
            if isinstance(transition, dict) and transition.get("event") == "incomingRequest":
                target = transition.get("next")
                if isinstance(target, str) and target.strip():
                    return True
    return False


def _strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included; iterative (no recursion limit)."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for key, inner in node.items():
                if isinstance(key, str):
                    yield key
                stack.append(inner)
        elif isinstance(node, list):
            stack.extend(node)


def _path(text: str, start: int) -> tuple[str | None, bool]:
    """The dotted path after ``flow.data`` at ``start``: (path, computed). None: whole."""
    keys: list[str] = []
    position = start
    while True:
        if dot := _DOT_KEY.match(text, position):
            if dot.group(1) in _PROPERTIES and keys:
                break
            keys.append(dot.group(1))
            position = dot.end()
            continue
        if bracket := _BRACKET.match(text, position):
            quoted = bracket.group(1) if bracket.group(1) is not None else bracket.group(2)
            if quoted is not None and quoted:
                keys.append(quoted)
                position = bracket.end()
                continue
            if bracket.group(3) is not None and keys:
                break  # an index into a list: the path is the list
            return None, True  # a key computed at run time
        break
    return (".".join(keys) if keys else None), False


def parameters_read(definition: Any) -> Parameters:
    """Every ``flow.data`` reference in the definition's Liquid (see the module)."""
    required: set[str] = set()
    optional: set[str] = set()
    anything = False
    for text in _strings(definition):
        if "flow" not in text:
            continue
        for segment in _SEGMENT.finditer(text):
            body = segment.group("output")
            in_tag = body is None
            body = segment.group("tag") if in_tag else body
            defaulted = in_tag or bool(_DEFAULT.search(body or ""))
            for reference in _FLOW_DATA.finditer(body or ""):
                path, computed = _path(body or "", reference.end())
                if computed or path is None:
                    anything = True
                elif defaulted:
                    optional.add(path)
                else:
                    required.add(path)
    return Parameters(frozenset(required), frozenset(optional - required), anything)


def leaf_paths(parameters: Mapping[str, Any]) -> set[str]:
    """A command's parameters as dotted paths to their values (objects are descended)."""
    paths: set[str] = set()
    stack: list[tuple[str, Any]] = [(str(k), v) for k, v in parameters.items()]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict) and value:
            stack.extend((f"{path}.{k}", v) for k, v in value.items())
        else:
            paths.add(path)
    return paths


def _within(path: str, reference: str) -> bool:
    """Whether ``path`` is ``reference`` or inside it (the flow reads a whole object)."""
    return path == reference or path.startswith(reference + ".")


@dataclass(frozen=True)
class Findings:
    """What is wrong with a command's parameters for one flow; empty when nothing is."""

    missing: tuple[str, ...] = ()
    unknown: tuple[tuple[str, str | None], ...] = ()  # (given, closest name the flow reads)

    def __bool__(self) -> bool:
        return bool(self.missing or self.unknown)


def findings(read: Parameters, parameters: Mapping[str, Any]) -> Findings:
    """Required parameters the command lacks, and ones it gives that the flow never reads."""
    given = leaf_paths(parameters)
    missing = sorted(r for r in read.required if not any(_within(p, r) for p in given))
    unknown: list[tuple[str, str | None]] = []
    if not read.reads_anything:
        candidates = sorted(read.known)
        for path in sorted(given):
            # Known if the flow reads it, an object holding it, or something inside it.
            if not any(_within(path, r) or _within(r, path) for r in read.known):
                close = difflib.get_close_matches(path, candidates, n=1, cutoff=0.6)
                unknown.append((path, close[0] if close else None))
    return Findings(tuple(missing), tuple(unknown))


@dataclass(frozen=True)
class FlowInfo:
    """One flow as the bot understands it."""

    sid: str
    name: str | None  # Studio's friendly name
    status: str | None  # draft | published
    revision: int
    analysis: Analysis

    def dumps(self) -> str:
        read = self.analysis.parameters
        return json.dumps(
            {
                "sid": self.sid,
                "name": self.name,
                "status": self.status,
                "revision": self.revision,
                "rest_ready": self.analysis.rest_ready,
                "required": sorted(read.required),
                "optional": sorted(read.optional),
                "anything": read.reads_anything,
            }
        )

    @classmethod
    def loads(cls, text: str) -> FlowInfo:
        data = json.loads(text)
        read = Parameters(
            frozenset(data["required"]), frozenset(data["optional"]), bool(data["anything"])
        )
        return cls(
            data["sid"],
            data["name"],
            data["status"],
            int(data["revision"]),
            Analysis(data["rest_ready"], read),
        )
