"""Bounded reading: every file, request body, answer or metadata the project reads as YAML or
JSON goes through here, so hostile input is refused with a reason that names the bound, never
a hang, a traceback or unbounded memory.

The bounds, the same for every reader (`BOUNDS`):

- size: a file at most 16 MiB, a request body 64 MiB (`Bounds.bytes` per reader);
- nesting: 64 levels of lists and mappings (a pipeline needs about ten);
- values: 250,000 after YAML's aliases and merge keys are expanded (a "billion laughs" file
  is refused as soon as its expansion passes this, before it is built);
- integers: at most 100 digits (Python's own limit is 4,300, and a huge one overflows as soon
  as it meets a float);
- floats: finite only: YAML's `.inf` and `.nan`, and JSON's `NaN`, `Infinity` or `1e999`, are
  no number a pipeline or a request can use.

YAML's own mistakes (an unknown tag, an impossible date, `!!int abc`) are reported where they
stand by `document`; JSON that is not JSON says where (line and column) it stops being JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bots.errors import ConfigError, Problem, Unreadable

MiB = 1024 * 1024


@dataclass(frozen=True)
class Bounds:
    """What one reader accepts."""

    bytes: int = 16 * MiB
    depth: int = 64
    values: int = 250_000
    digits: int = 100

    def with_bytes(self, size: int) -> Bounds:
        return replace(self, bytes=size)


BOUNDS = Bounds()
"""The bounds of files a creator writes (pipelines, cases, answers, datasets)."""
RESULTS = BOUNDS.with_bytes(256 * MiB)
"""An eval's results file: every paid answer of an eval, kept whole."""


def read_source(name: str, bounds: Bounds = BOUNDS) -> str:
    """A file a creator wrote, as text; ConfigError at FILE:1:1 when it cannot be read or is
    larger than its bound."""
    path = Path(name)
    try:
        size = path.stat().st_size
        if size > bounds.bytes:
            raise ConfigError([Problem(name, 1, 1, "", _too_big(size, bounds))])
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError([Problem(name, 1, 1, "", f"cannot read the file: {reason}")]) from e


def _too_big(size: int, bounds: Bounds) -> str:
    return f"it is {size / MiB:.1f} MiB, over the {bounds.bytes // MiB} MiB a file may be"


def json_value(text: str | bytes, bounds: Bounds = BOUNDS) -> Any:
    """JSON text as Python values, within `bounds`; raises Unreadable saying why (with the
    line and column where it stops being JSON, when it is not JSON)."""
    if len(text) > bounds.bytes:
        raise Unreadable(f"it is over {bounds.bytes // MiB} MiB")

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > bounds.digits:
            raise Unreadable(f"a number has more than {bounds.digits} digits")
        return int(digits)

    def real(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise Unreadable(f"the number {literal[:20]} is too large to be a finite number")
        return value

    def constant(name: str) -> Any:
        raise Unreadable(f"{name} is not a JSON number (numbers must be finite)")

    try:
        value = json.loads(text, parse_int=integer, parse_float=real, parse_constant=constant)
    except Unreadable:
        raise
    except json.JSONDecodeError as e:
        raise Unreadable(f"not JSON: {e.msg}", line=e.lineno, column=e.colno) from None
    except RecursionError:
        raise Unreadable(f"it is nested deeper than {bounds.depth} levels") from None
    except ValueError as e:  # e.g. bytes that are not UTF-8
        raise Unreadable(f"not JSON: {e}") from None
    within(value, bounds)
    return value


def within(value: Any, bounds: Bounds = BOUNDS) -> None:
    """Raises Unreadable when read data nests deeper, or holds more values, than `bounds`
    allow (checked without recursion, so deep data cannot exhaust the stack here)."""
    count = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > bounds.values:
            raise Unreadable(f"it holds more than {bounds.values:,} values")
        if isinstance(item, dict | list):
            if depth > bounds.depth:
                raise Unreadable(f"it is nested deeper than {bounds.depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
