"""pipelines.yaml as a document: its YAML read into plain data, with where each key and item
stands, and its syntax mistakes explained in the words a creator needs.

PyYAML reports where it got lost, which is not always where the mistake is, in its own terms
("expected <block end>"). `Document` says what is probably wrong: a tab, a line indented out of
step, a value holding ': ', a quote or bracket never closed (pointing at the line that opened
it), a template left unquoted; PyYAML's own words follow in brackets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bots.errors import ConfigError, Problem

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

    def __init__(self, text: str) -> None:
        self.text = text
        self.positions: dict[Loc, At] = {}
        self.problems: list[tuple[Loc, str, At | None]] = []
        self._constructor = SafeConstructor()
        self.data = self._read()

    def position(self, loc: Loc) -> At:
        """Where `loc` stands, or the nearest enclosing key that does."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.positions:
                return self.positions[loc[:end]]
        return 1, 1

    def _read(self) -> Any:
        try:
            node = yaml.compose(self.text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as e:
            message, at = self._explain(e)
            self.problems.append(((), f"YAML syntax error: {message}", at))
            return None
        except yaml.YAMLError as e:
            self.problems.append(((), f"YAML error: {e}", None))
            return None
        return None if node is None else self._build(node, ())

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
        if depth > 64:
            self.problems.append((loc, "nesting is too deep (or an alias refers to itself)", None))
            return None
        if isinstance(node, MappingNode):
            if node.flow_style and self.text[node.start_mark.index :].startswith("{{"):
                self.problems.append((loc, UNQUOTED_TEMPLATE, _mark(node)))
                # the template as written, so no other check trips over it
                return self.text[node.start_mark.index : node.end_mark.index]
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
        return self._constructor.construct_object(node, deep=True)


def read_source(name: str) -> str:
    """A file a creator wrote, as text; ConfigError at FILE:1:1 when it cannot be read."""
    try:
        return Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError([Problem(name, 1, 1, "", f"cannot read the file: {reason}")]) from e
