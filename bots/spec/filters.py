"""Template filters for putting many answers together: split a plan into lines, read a bot's
JSON, vote over samples, number a list, shorten a text.

```
{{ plan | lines }}              -> ["What is X?", "Why Y?"]        (non-empty, trimmed lines)
{{ reply | from_json }}         -> {"score": 7}   (also from inside a ```json fenced block)
{{ samples | vote }}            -> the most common answer (trimmed, case-folded; ties: earliest)
{{ findings | numbered }}       -> "1. first\n2. second"
{{ question | shorten(40) }}    -> at most 40 characters, ending with "…" when cut
```
A filter given what it cannot use raises ValueError, which fails its step with the filter's
own words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from bots.errors import Unreadable
from bots.spec.reading import json_value

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n(.*?)```", re.DOTALL)


def items_of(value: Any) -> list[Any]:
    """The items of a value: a list's, a mapping's values (a parallel step's answers), or a
    text's non-empty lines."""
    if isinstance(value, str):
        return lines(value)
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, Iterable):
        return list(value)
    raise ValueError(f"expected a list, a text or a mapping, got {type(value).__name__}")


def lines(value: Any) -> list[str]:
    """The non-empty lines of a text, trimmed."""
    return [line.strip() for line in str(value).splitlines() if line.strip()]


def from_json(value: Any) -> Any:
    """A JSON object or list read from a text, or from the first fenced code block in it
    that holds one (bots often wrap JSON in ```json ... ```)."""
    text = str(value).strip()
    past: str | None = None  # JSON there was, but past the reading bounds: why
    for candidate in [text, *(block.strip() for block in _FENCE.findall(text))]:
        try:
            found = json_value(candidate)
        except Unreadable as e:
            past = past or (None if str(e).startswith("not JSON") else str(e))
            continue
        if isinstance(found, (dict, list)):
            return found
    start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
    if start >= 0 and past is None:  # a text around the JSON: read from its first bracket
        try:
            found, end = json.JSONDecoder().raw_decode(text[start:])
        except (ValueError, RecursionError):
            found = None
        if isinstance(found, (dict, list)):
            return json_value(text[start : start + end])  # within the bounds, or why not
    why = f" within the reading bounds ({past})" if past else ""
    raise ValueError(
        f"from_json found no JSON object or list{why} in the text, which starts "
        f"{shorten(text, 60)!r}"
    )


def vote(value: Any) -> str:
    """The most common answer, compared trimmed and case-folded; a tie goes to the answer
    given first. Returns that answer as first given (trimmed)."""
    answers = [str(item).strip() for item in items_of(value)]
    answers = [answer for answer in answers if answer]
    if not answers:
        raise ValueError("vote was given no answers")
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for answer in answers:
        key = " ".join(answer.casefold().split())
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, answer)
    best = max(counts.values())
    winner = next(key for key in first if counts[key] == best)  # dicts keep first-seen order
    return first[winner]


def numbered(value: Any) -> str:
    """The items as a numbered list, one a line: "1. ...", "2. ..."."""
    return "\n".join(f"{i}. {str(item).strip()}" for i, item in enumerate(items_of(value), 1))


def shorten(value: Any, width: int = 80) -> str:
    """The text on one line, cut to `width` characters with "…" when longer."""
    if width < 1:
        raise ValueError(f"shorten needs a width of 1 or more, got {width}")
    flat = " ".join(str(value).split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


FILTERS = {
    "lines": lines,
    "from_json": from_json,
    "vote": vote,
    "numbered": numbered,
    "shorten": shorten,
}
