"""What a flow's definition says, read before anything is sent. Pure: no I/O.

- ``rest_ready``: the Trigger widget's REST API transition (``incomingRequest``) leads
  somewhere. If not, an execution started over the REST API ends at once and reaches
  nobody.
- ``parameters_read``: every ``flow.data`` reference in the definition's Liquid, read
  from python-liquid's syntax tree of each template (``{{ … }}`` output and
  ``{% … %}`` tags, in any widget property: message bodies, HTTP request bodies,
  Function and subflow parameters), dotted (``flow.data.customer.name`` →
  ``customer.name``) or in brackets (``flow.data['first-name']``), also through a
  name it was ``assign``ed to. A reference is optional when it has a ``default``
  filter, sits in a tag (a condition, a loop) or is a filter's argument; otherwise
  the flow needs it. Where the definition uses ``flow.data`` whole (``{{flow.data}}``)
  or with a key it computes (``flow.data[name]``), or in Liquid the parser cannot
  read, the flow may read anything: then only missing parameters are checked, never
  unknown ones.
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
from functools import cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from liquid.builtin.expressions import Path
    from liquid.expression import Expression


@cache
def _liquid() -> SimpleNamespace:
    """python-liquid's parser and the node classes read here: templates are parsed into
    a syntax tree, never rendered. Imported at first use: it takes a third of a second
    (Babel, pytz), which start-up need not wait for."""
    from liquid import Environment, RenderContext
    from liquid.builtin.expressions import FilteredExpression, Path
    from liquid.builtin.output import OutputNode
    from liquid.builtin.tags.assign_tag import AssignNode
    from liquid.exceptions import LiquidError

    return SimpleNamespace(
        environment=Environment(),
        RenderContext=RenderContext,
        FilteredExpression=FilteredExpression,
        Path=Path,
        OutputNode=OutputNode,
        AssignNode=AssignNode,
        LiquidError=LiquidError,
    )


# A mention of flow.data, in text Liquid could not parse.
_FLOW_DATA = re.compile(r"(?<![\w.])flow\s*\.\s*data(?![\w-])")
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
    # (widget, type) of every widget that waits for the contact's answer
    answers: tuple[tuple[str, str], ...] = ()


def analyse(definition: Any) -> Analysis:
    """``rest_ready`` and ``parameters_read`` of a definition (any JSON). Something with
    no Trigger widget is not a definition to judge: nothing about it is refused."""
    ready = rest_ready(definition)
    if ready is None:
        return Analysis(None, Parameters(reads_anything=True))
    return Analysis(ready, parameters_read(definition), answer_widgets(definition))


# Widgets that wait for the contact, and where their answer is in a run's context.
ANSWER_PATHS = {
    "send-and-wait-for-reply": (("inbound", "Body"),),
    "gather-input-on-call": (("Digits",), ("SpeechResult",)),
}
MAX_ANSWER_CHARS = 500


def answer_widgets(definition: Any) -> tuple[tuple[str, str], ...]:
    """(name, type) of every widget that waits for the contact's reply, in order."""
    states = definition.get("states") if isinstance(definition, dict) else None
    found = []
    for state in states if isinstance(states, list) else []:
        if isinstance(state, dict) and state.get("type") in ANSWER_PATHS:
            name = state.get("name")
            if isinstance(name, str) and name:
                found.append((name, str(state["type"])))
    return tuple(found)


def _at(context: Any, path: tuple[str, ...]) -> Any:
    node = context
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def collect_answers(
    context: Any, widgets: tuple[tuple[str, str], ...], paths: tuple[str, ...] = ()
) -> dict[str, str]:
    """The answers in a run's context: each waiting widget's reply (by the widget's name)
    and each configured context path (by the path), as text clipped to
    ``MAX_ANSWER_CHARS``; what the run never reached is left out. Pure."""
    found: dict[str, str] = {}
    for name, kind in widgets:
        for inner in ANSWER_PATHS.get(kind, ()):
            value = _at(context, ("widgets", name, *inner))
            if value is not None and value != "":
                found[name] = _text(value)
                break
    for path in paths:
        value = _at(context, tuple(path.split(".")))
        if value is not None and value != "":
            found[path] = _text(value)
    return found


def _text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= MAX_ANSWER_CHARS else text[: MAX_ANSWER_CHARS - 1] + "…"


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


def _data_path(path: Path) -> tuple[str | None, bool] | None:
    """For a Liquid path into ``flow.data``: (the dotted path it reads, or None for the
    whole object; whether a key is computed at run time). None for any other path."""
    segments = path.path
    if len(segments) < 2 or segments[0] != "flow" or segments[1] != "data":
        return None
    keys: list[str] = []
    for segment in segments[2:]:
        if isinstance(segment, str) and segment:
            if segment in _PROPERTIES and keys:
                break  # Liquid's own property of the array or string read so far
            keys.append(segment)
        elif isinstance(segment, int) and not isinstance(segment, bool) and keys:
            break  # an index into a list: the path is the list
        else:
            return None, True  # a key computed at run time (or an index into flow.data)
    return (".".join(keys) if keys else None), False


def _paths(expression: Expression) -> Iterator[Path]:
    """Every path an expression reads (filter arguments, conditions' operands…)."""
    path_type = _liquid().Path
    stack = [expression]
    while stack:
        node = stack.pop()
        if isinstance(node, path_type):
            yield node
        stack.extend(node.children())


class _Reads:
    """What one template reads of ``flow.data``, following ``assign``ed names."""

    def __init__(self) -> None:
        self.required: set[str] = set()
        self.optional: set[str] = set()
        self.anything = False
        self.aliases: dict[str, list[tuple[str | None, bool, bool]]] = {}  # name -> reads

    def _resolved(self, path: Path, *, defaulted: bool) -> list[tuple[str | None, bool, bool]]:
        """(data path, computed, defaulted) for a path, through assigned names."""
        found = _data_path(path)
        if found is not None:
            return [(*found, defaulted)]
        root = path.path[0] if path.path else None
        if isinstance(root, str) and root in self.aliases:
            return [(p, c, d or defaulted) for p, c, d in self.aliases[root]]
        return []

    def read(self, expression: Expression, *, output: bool) -> list[tuple[str | None, bool, bool]]:
        """Record what ``expression`` reads: needed when it is output whole without a
        ``default`` filter; optional in a tag (a condition, a loop) or a filter's
        argument. Returns the reads of its value (for ``assign``)."""
        value, defaulted = expression, False
        arguments: list[Expression] = []
        if isinstance(expression, _liquid().FilteredExpression):
            value = expression.left
            filters = expression.filters or []
            defaulted = any(f.name == "default" for f in filters)
            for used in filters:
                arguments.extend(arg.value for arg in used.args)
        reads = [r for path in _paths(value) for r in self._resolved(path, defaulted=defaulted)]
        optional = [
            r for arg in arguments for p in _paths(arg) for r in self._resolved(p, defaulted=True)
        ]
        for path, computed, soft in reads:
            self._note(path, computed=computed, required=output and not soft)
        for path, computed, _soft in optional:
            self._note(path, computed=computed, required=False)
        return reads

    def _note(self, path: str | None, *, computed: bool, required: bool) -> None:
        if computed or path is None:
            self.anything = True
        elif required:
            self.required.add(path)
        else:
            self.optional.add(path)


def _read_template(text: str, reads: _Reads) -> bool:
    """Add what ``text`` reads to ``reads``; False if Liquid cannot parse it."""
    liquid = _liquid()
    try:
        template = liquid.environment.from_string(text)
    except liquid.LiquidError:
        return False
    context = liquid.RenderContext(template)
    stack = list(reversed(template.nodes))
    while stack:  # in document order, so that an assign is seen before its use
        node = stack.pop()
        if isinstance(node, liquid.OutputNode):
            reads.read(node.expression, output=True)
        elif isinstance(node, liquid.AssignNode):
            reads.aliases[str(node.name)] = reads.read(node.expression, output=False)
        else:
            for expression in node.expressions():
                reads.read(expression, output=False)
        stack.extend(reversed(list(node.children(context, include_partials=False))))
    return True


def parameters_read(definition: Any) -> Parameters:
    """Every ``flow.data`` reference in the definition's Liquid (see the module)."""
    reads = _Reads()
    for text in _strings(definition):
        if "flow" not in text or ("{{" not in text and "{%" not in text):
            continue
        if not _read_template(text, reads) and _FLOW_DATA.search(text):
            reads.anything = True  # Liquid this cannot read: the flow may read anything
    required = frozenset(reads.required)
    return Parameters(required, frozenset(reads.optional - required), reads.anything)


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
