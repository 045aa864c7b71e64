"""The judge of an eval: its prompts (templates a creator may replace) and how its verdicts read.

Pairwise, the judge sees the message (and a reference answer, if the item has one) and two
answers, A and B, and ends with `VERDICT: A`, `VERDICT: B` or `VERDICT: TIE`. Each pair is
judged in both orders, so a judge that favours the first (or second) answer cancels out: an
item is a win when both orders prefer the candidate, a loss when both prefer the baseline, and
a tie otherwise. With a rubric, the judge scores one answer from 1 to 10 (`SCORE: N`); the
candidate wins an item when it scores above the baseline.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from bots.errors import TemplateProblem, UsageError
from bots.spec.templates import Template, compile_template

PAIRWISE = """\
You are judging two answers to a user's message.

Message:
{{ message }}
{% if reference %}

A reference answer (correct, though not the only good one):
{{ reference }}
{% endif %}

[Answer A]
{{ a }}
[End of answer A]

[Answer B]
{{ b }}
[End of answer B]

Which answer serves the user better: more correct, more helpful, clearer? Neither the order
nor the length of the answers should sway you. Think briefly, then end with a line that is
exactly one of: VERDICT: A, VERDICT: B, VERDICT: TIE
"""

RUBRIC = """\
Score this answer to a user's message against the rubric.

Message:
{{ message }}

Rubric:
{{ rubric }}
{% if reference %}

A reference answer:
{{ reference }}
{% endif %}

[Answer]
{{ answer }}
[End of answer]

Think briefly, then end with a line that is exactly: SCORE: N (N a whole number, 1 to 10)
"""

PAIRWISE_VARIABLES = frozenset({"message", "reference", "rubric", "a", "b"})
RUBRIC_VARIABLES = frozenset({"message", "reference", "rubric", "answer"})
_VERDICT = re.compile(r"VERDICT\s*:\s*\**\s*(A|B|TIE)\b", re.IGNORECASE)
_SCORE = re.compile(r"SCORE\s*:\s*\**\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


@dataclass(frozen=True)
class Judge:
    """A judge bot and its two prompts."""

    bot: str
    pairwise: Template
    rubric: Template

    @property
    def signature(self) -> str:
        """The judge and its prompts, in short: verdicts are kept (and reused) under it."""
        prompts = (self.pairwise.source + "\0" + self.rubric.source).encode()
        return f"{self.bot}#{hashlib.sha256(prompts).hexdigest()[:8]}"

    @classmethod
    def of(cls, bot: str, pairwise: str | None = None, rubric: str | None = None) -> Judge:
        """The judge, with prompts read from the files named (else the defaults); raises
        UsageError naming the file and what is wrong."""
        return cls(
            bot,
            _prompt(pairwise, PAIRWISE, PAIRWISE_VARIABLES),
            _prompt(rubric, RUBRIC, RUBRIC_VARIABLES),
        )


def _prompt(path: str | None, default: str, allowed: frozenset[str]) -> Template:
    where = path or "the default judge prompt"
    try:
        source = Path(path).read_text(encoding="utf-8") if path else default
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read the judge prompt ({e})") from None
    try:
        unknown = compile_template(source).variables - allowed
    except TemplateProblem as e:
        raise UsageError(f"{where}: {e}") from None
    if unknown:
        raise UsageError(
            f"{where}: the judge prompt uses {', '.join(sorted(unknown))}; it may use "
            f"{', '.join(sorted(allowed))}"
        )
    return Template(source, where)


def verdict(text: str) -> str | None:
    """'A', 'B' or 'TIE' from the judge's last VERDICT line; None when it gave none."""
    found = _VERDICT.findall(text)
    return found[-1].upper() if found else None


def score(text: str) -> float | None:
    """The judge's last SCORE, when it is from 1 to 10; None otherwise."""
    found = _SCORE.findall(text)
    value = float(found[-1]) if found else None
    return value if value is not None and 1 <= value <= 10 else None


def item_outcome(candidate_first: str | None, candidate_second: str | None) -> float | None:
    """One item's result for the candidate from the two orders' verdicts (the candidate was
    A in the first, B in the second): 1 a win, 0 a loss, 0.5 a tie; None if either verdict is
    missing."""
    if candidate_first is None or candidate_second is None:
        return None
    points = {"A": 1.0, "B": 0.0, "TIE": 0.5}
    first = points[candidate_first]
    second = 1.0 - points[candidate_second]
    if first == second:
        return first
    return 0.5  # the orders disagree (or one tie): a tie


def scored_outcome(candidate: float | None, baseline: float | None) -> float | None:
    """One rubric item's result for the candidate: 1 above the baseline's score, 0 below, 0.5
    equal; None if either score is missing."""
    if candidate is None or baseline is None:
        return None
    return 1.0 if candidate > baseline else 0.0 if candidate < baseline else 0.5
