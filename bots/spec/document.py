"""pipelines.yaml as a document: its YAML read into plain data, with where each key and item
stands, and its syntax mistakes explained in the words a creator needs.

PyYAML reports where it got lost, which is not always where the mistake is, in its own terms
("expected <block end>"). `Document` says what is probably wrong: a tab, a line indented out of
step, a value holding ': ', a quote or bracket never closed (pointing at the line that opened
it), a template left unquoted; PyYAML's own words follow in brackets.

It reads within `reading`'s bounds: the text's size, its nesting, the values it expands to
(aliases and merge keys are counted as they expand, so a "billion laughs" is refused before it
is built), integers' digits and finite floats; a value YAML cannot make (an unknown tag, an
impossible date, `!!int abc`) is a problem where it stands.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bots.spec.reading import BOUNDS, Bounds, MiB

Loc = tuple[str | int, ...]
At = tuple[int, int]  # line and column, 1-based

UNQUOTED_TEMPLATE = "a template that starts with '{{' must be quoted, e.g. text: \"{{ message }}\""
_HINTS = [
    # (what PyYAML says, what is probably wrong)
    ("'\\t'", "a tab character: YAML indents with spaces only, so replace it with spaces"),
    (
        "expected <block end>",
        "this line's indentation does not match the lines above it: the keys of one mapping, "
        "and the items of one list, start in the same column",
    ),
    (
        "could not find expected ':'",
        "a line without 'key: value' in a mapping: a missing ':', or a text of several lines "
        "that needs '|' after its key",
    ),
    ("scanning a quoted scalar", "a quote is opened and never closed"),
    ("expected ',' or '}'", "a '{' is not closed, or two of its entries lack a ',' between them"),
    ("expected ',' or ']'", "a '[' is not closed, or two of its items lack a ',' between them"),
    ("that cannot start any token", "a value starts with a character YAML reserves: quote it"),
]
_OPENS_QUOTE = re.compile(r"""(?:^\s*-\s+|:\s+)(["'])""")  # a value that starts with a quote


def dotted(loc: Loc) -> str:
    """('bots', 'x', 'steps', 0, 'bot') -> 'bots.x.steps[0].bot'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _mark(node: Node) -> At:
    return node.start_mark.line + 1, node.start_mark.column + 1


class Document:
    """YAML text as plain data (`data`), where each key and item stands (`positions`), and
    the problems found reading it (`problems`: where, what)."""

    def __init__(self, text: str, bounds: Bounds = BOUNDS) -> None:
        self.text = text
        self.bounds = bounds
        self.positions: dict[Loc, At] = {}
        self.problems: list[tuple[Loc, str, At | None]] = []
        self._constructor = SafeConstructor()
        self._values = 0  # values built so far, aliases expanded
        self._merged: dict[int, int] = {}  # a mapping node's entries once merged, by id
        self.data = self._read()

    def position(self, loc: Loc) -> At:
        """Where `loc` stands, or the nearest enclosing key that does."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.positions:
                return self.positions[loc[:end]]
        return 1, 1

    def _read(self) -> Any:
        if len(self.text) > self.bounds.bytes:
            size, limit = len(self.text) / MiB, self.bounds.bytes // MiB
            self.problems.append(
                ((), f"it is {size:.1f} MiB, over the {limit} MiB a file may be", None)
            )
            return None
        try:
            node = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except RecursionError:
            message = f"lists and mappings are nested deeper than {self.bounds.depth} levels"
            self.problems.append(((), message, None))
            return None
        except yaml.MarkedYAMLError as e:
            message, at = self._explain(e)
            self.problems.append(((), f"YAML syntax error: {message}", at))
            return None
        except yaml.YAMLError as e:
            self.problems.append(((), f"YAML error: {e}", None))
            return None
        if node is None:
            return None
        try:
            return self._build(node, ())
        except _Refused as refused:
            self.problems.append((refused.loc, str(refused), refused.at))
            return None

    def _explain(self, e: yaml.MarkedYAMLError) -> tuple[str, At]:
        """What is probably wrong, then PyYAML's words; and the place to point at."""
        mark = e.problem_mark or e.context_mark
        context = e.context or ""
        if e.context_mark and ("quoted" in context or "flow" in context):
            mark = e.context_mark  # where the unclosed quote or bracket opened
        at = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = " ".join(filter(None, [e.context, e.problem]))
        hint = next((hint for clue, hint in _HINTS if clue in reason), None)
        if "mapping values are not allowed here" in reason:
            hint = self._colon_hint(at[0])
        if "flow mapping" in reason and "got '['" in reason:
            hint = (
                "a key holding '[' (a step's place, like steps[1]) must be quoted inside "
                '{ }, e.g. {"steps[1]": code}'
            )
        opened = self._unclosed_quote(at[0])
        if opened is not None:
            # a quote left open reads on over later lines, so PyYAML trips far below it
            hint = f"a quote opened here is never closed (YAML read on to line {at[0]})"
            at = opened
        return (f"{hint} (the YAML parser says: {reason})" if hint else reason), at

    def _colon_hint(self, line: int) -> str:
        text = self._line(line)
        value = text.split(": ", 1)[1] if ": " in text else ""
        if ": " in value:
            return "a value holds ': ', so it needs quotes, e.g. prompt: \"Answer: this\""
        return "a ':' where none was expected: this line is indented deeper than the key above it"

    def _unclosed_quote(self, upto: int) -> At | None:
        """The line at or before `upto` whose value opens a quote it does not close, when
        closing it there mends the error here (a quoted text may run over lines, so PyYAML
        only trips where the quotes stop pairing up)."""
        lines = self.text.splitlines()
        for number in range(min(upto, len(lines)), max(0, upto - 200), -1):
            line = lines[number - 1]
            found = _OPENS_QUOTE.search(line)
            if found is None:
                continue
            quote, rest = found.group(1), line[found.end() :]
            if quote == '"':
                rest = rest.replace("\\\\", "").replace('\\"', "")
            if quote in rest.replace(quote * 2, ""):
                continue
            mended = [*lines[: number - 1], line + quote, *lines[number:]]
            try:
                yaml.compose("\n".join(mended), Loader=yaml.SafeLoader)
            except yaml.MarkedYAMLError as e:
                mark = e.problem_mark or e.context_mark
                if mark is None or mark.line + 1 <= upto:
                    continue  # closing it does not get past the error: not the cause
            return number, found.start(1) + 1
        return None

    def _line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""

    def _build(self, node: Node, loc: Loc, depth: int = 0) -> Any:
        self.positions.setdefault(loc, _mark(node))
        self._values += 1
        if self._values > self.bounds.values:
            raise _Refused(
                self._expanded("aliases and merge keys count each time they are used"),
                loc,
                _mark(node),
            )
        if depth > self.bounds.depth:
            why = f"nested deeper than {self.bounds.depth} levels (or an alias refers to itself)"
            self.problems.append((loc, why, None))
            return None
        if isinstance(node, MappingNode):
            if node.flow_style and self.text[node.start_mark.index :].startswith("{{"):
                self.problems.append((loc, UNQUOTED_TEMPLATE, _mark(node)))
                # the template as written, so no other check trips over it
                return self.text[node.start_mark.index : node.end_mark.index]
            if self._merged_size(node) + self._values > self.bounds.values:
                why = "merge keys '<<' copy a mapping each time they are used"
                raise _Refused(self._expanded(why), loc, _mark(node))
            self._constructor.flatten_mapping(node)
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    self.problems.append((loc, "a key must be plain text", _mark(key_node)))
                    continue
                key = str(key_node.value)
                if key in result:
                    first = self.positions[(*loc, key)]
                    message = (
                        f"duplicate key {key!r} (first at line {first[0]}); each key may "
                        "appear once"
                    )
                    self.problems.append(((*loc, key), message, _mark(key_node)))
                    continue
                self.positions[(*loc, key)] = _mark(key_node)
                result[key] = self._build(value_node, (*loc, key), depth + 1)
            return result
        if isinstance(node, SequenceNode):
            return [self._build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, loc)

    def _expanded(self, why: str) -> str:
        return f"the file expands to more than {self.bounds.values:,} values ({why})"

    def _scalar(self, node: Node, loc: Loc) -> Any:
        """A scalar's value; None, with a problem where it stands, when YAML cannot make it or
        it is past the bounds on numbers."""
        text = str(node.value)
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError, TypeError) as e:
            reason = getattr(e, "problem", None) or str(e)
            why = f"cannot read {text[:40]!r} as {node.tag.rsplit(':', 1)[-1]}: {reason}"
            self.problems.append((loc, f"{why}; quote it if it is text", _mark(node)))
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            if len(str(abs(value))) > self.bounds.digits:
                why = f"a number of more than {self.bounds.digits} digits"
                self.problems.append((loc, f"{why}; quote it if it is text", _mark(node)))
                return None
        if isinstance(value, float) and not math.isfinite(value):
            why = f"{text!r} is not a finite number, and no setting takes infinity or NaN"
            self.problems.append((loc, f"{why}; quote it if it is text", _mark(node)))
            return None
        return value

    def _merged_size(self, node: MappingNode) -> int:
        """How many entries a mapping holds once its merge keys ('<<') are expanded, counted
        without expanding them."""
        known = self._merged.get(id(node))
        if known is not None:
            return known
        self._merged[id(node)] = 0  # a merge that refers back to itself adds nothing more
        size = 0
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.tag == "tag:yaml.org,2002:merge":
                sources = value.value if isinstance(value, SequenceNode) else [value]
                size += sum(self._merged_size(m) for m in sources if isinstance(m, MappingNode))
            else:
                size += 1
            if size > self.bounds.values:
                break
        self._merged[id(node)] = size
        return size


class _Refused(Exception):
    """The document is past a bound: reading stops here."""

    def __init__(self, message: str, loc: Loc, at: At) -> None:
        super().__init__(message)
        self.loc = loc
        self.at = at
